#!/usr/bin/env bash
# Retransmissions by the Linux kernel while synack downloads over TUN: `synack get` fetches a
# 64 MiB file N times from a kernel HTTP server (python3 -m http.server) in a network
# namespace this script makes and removes. synack is the receiver, so what it advertises
# decides whether the kernel overruns it; the kernel's TcpRetransSegs counts the cost.
#
#   scripts/tun-download-retrans.sh [SYNACK_BINARY] [N]      (root; addresses in 198.18.0.0/24)
set -euo pipefail
bin=${1:-target/release/synack}
n=${2:-5}
bin=$(realpath "$bin")
ns=synack-measure-$$
dir=$(mktemp -d)
cleanup() {
  [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
head -c 67108864 /dev/urandom > "$dir/big"
ip netns exec "$ns" timeout 600 python3 -m http.server 8080 --bind 0.0.0.0 -d "$dir" \
  >/dev/null 2>&1 &
srv=$!
for _ in $(seq 100); do
  ip netns exec "$ns" ss -ltnH 'sport = :8080' | grep -q . && break
  sleep 0.1
done
retrans() { ip netns exec "$ns" nstat -saz TcpRetransSegs | awk '/TcpRetransSegs/ {print $2}'; }
for i in $(seq "$n"); do
  before=$(retrans)
  start=$(date +%s.%N)
  ip netns exec "$ns" timeout 120 "$bin" get --tun "syndl$i" --ip 198.18.0.2/24 --no-body \
    --stats http://198.18.0.1:8080/big >"$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
  end=$(date +%s.%N)
  after=$(retrans)
  printf 'download %d: 64 MiB in %.2f s, kernel retransmitted %d segments\n' \
    "$i" "$(echo "$end - $start" | bc)" "$((after - before))"
done
