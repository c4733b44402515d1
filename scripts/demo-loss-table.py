#!/usr/bin/env python3
"""Lost against resent data segments in `synack demo`'s one-connection scenario.

For --loss 2% and 5% and seeds 1..8, draws every segment (--no-fold) and counts the server's
data segments marked (lost), those marked (retransmission), and the resends of a segment an
earlier copy of which had already arrived (spurious).

    scripts/demo-loss-table.py [SYNACK_BINARY] [extra demo flags...]
"""
import re
import subprocess
import sys

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/synack"
EXTRA = sys.argv[2:]
SEG = re.compile(r"server --> client : [A-Z-]+, seq=(\d+), ack=\d+, len=(\d+)")


def run(loss, seed):
    args = [BIN, "demo", "--loss", loss, "--bytes", "1MiB", "--seed", str(seed),
            "--no-fold", "--calls", "1"] + EXTRA
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    first = out.split("== scenario: calls")[0]
    arrived = {}
    lost = resent = spurious = 0
    for line in first.splitlines():
        m = SEG.search(line)
        if not m:
            continue
        seq = int(m.group(1))
        is_lost = "(lost)" in line
        if "(retransmission)" in line:
            resent += 1
            if arrived.get(seq):
                spurious += 1
        if is_lost:
            lost += 1
        else:
            arrived[seq] = True
    return lost, resent, spurious


print("loss  seed  lost  resent  spurious")
for loss in ["2%", "5%"]:
    for seed in range(1, 9):
        lost, resent, spurious = run(loss, seed)
        print(f"{loss:>4}  {seed:>4}  {lost:>4}  {resent:>6}  {spurious:>8}")
