#!/usr/bin/env bash
# QUIC bulk throughput: quinn on synack's UDP over TUN against quinn on the kernel's UDP over a
# veth pair, the same server (`synack serve --kernel --http3`) and the same client code
# (`synack get --http3`), in network namespaces of the script's own, alternating ROUNDS
# times; prints each round, the medians and the ratio TUN / veth (issue 13's target: >= 0.8).
#
#   scripts/h3-tun-bench.sh [SYNACK_BINARY] [ROUNDS] [BYTES]     (root; 100 MB by default)
#
# Build first: cargo build --release -p synack. Addresses are in 198.18.0.0/15; every process
# runs under `timeout`, and the namespaces go when the script ends.
#
# On a machine shared with other work, H3B_NICE=-15 runs the server and every client at that
# nice level (the same for all three transports), so that background load skews them less.
set -euo pipefail
bin=$(realpath "${1:-target/release/synack}")
rounds=${2:-3}
bytes=${3:-100000000}
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, TUN)" >&2; exit 2; }
prio=(nice -n "${H3B_NICE:-0}")
srv=synack-h3b-srv-$$
cli=synack-h3b-cli-$$
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$srv"
ip netns add "$cli"
ip -n "$srv" link set lo up
ip -n "$cli" link set lo up
ip link add veth-h3s-$$ netns "$srv" type veth peer name veth-h3c-$$ netns "$cli"
ip -n "$srv" addr add 198.18.1.1/24 dev veth-h3s-$$
ip -n "$cli" addr add 198.18.1.2/24 dev veth-h3c-$$
ip -n "$srv" link set veth-h3s-$$ up
ip -n "$cli" link set veth-h3c-$$ up

# The server: kernel UDP on every address of its namespace.
ip netns exec "$srv" "${prio[@]}" timeout 600 "$bin" serve --kernel --listen 0.0.0.0:4433 --http3 \
  >"$dir/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$dir/serve.log" && break; sleep 0.1; done

url_veth="https://198.18.1.1:4433/bytes/$bytes"
# synack's client in the server's namespace, over a TUN device whose kernel side is 198.18.0.1.
url_tun="https://198.18.0.1:4433/bytes/$bytes"

run() { # NAME: seconds for one fetch, as the client measured it (from the call to its last
  # byte, QUIC handshake included), so that making the TUN device and the process's start
  # are not counted against either side
  case $1 in
    veth) ip netns exec "$cli" "${prio[@]}" timeout 120 "$bin" get --kernel --http3 -k -v --no-body "$url_veth" ;;
    tun) ip netns exec "$srv" "${prio[@]}" timeout 120 "$bin" get --tun tun-h3b --ip 198.18.0.2/24 --http3 -k \
           -v --no-body "$url_tun" ;;
    # The same over a device with batches and the kernel's offloads (USO/GRO for UDP).
    tunoff) ip netns exec "$srv" "${prio[@]}" timeout 120 "$bin" get --tun tun-h3b --ip 198.18.0.2/24 \
           --tun-offload --http3 -k -v --no-body "$url_tun" ;;
  esac >/dev/null 2>"$dir/$1.err" || { cat "$dir/$1.err" >&2; return 1; }
  # "GET URL -> 200 OK (N bytes in T ms): ..."
  sed -n 's/.* bytes in \([0-9.]*\) ms).*/\1/p' "$dir/$1.err" | head -1 | awk '{ print $1 / 1000 }'
}

mbit() { awk -v n="$bytes" -v s="$1" 'BEGIN { print n * 8 / s / 1e6 }'; }

declare -a v t o
for r in $(seq "$rounds"); do
  a=$(run veth); b=$(run tun); c=$(run tunoff)
  v+=("$a"); t+=("$b"); o+=("$c")
  printf 'round %d: veth (kernel UDP) %.3f s = %.1f Mbit/s; TUN (synack UDP) %.3f s = %.1f Mbit/s; TUN --tun-offload %.3f s = %.1f Mbit/s\n' \
    "$r" "$a" "$(mbit "$a")" "$b" "$(mbit "$b")" "$c" "$(mbit "$c")"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mv=$(median "${v[@]}"); mt=$(median "${t[@]}"); mo=$(median "${o[@]}")
printf 'medians: veth %.1f Mbit/s, TUN %.1f Mbit/s, TUN --tun-offload %.1f Mbit/s; TUN / veth = %.2f, TUN --tun-offload / veth = %.2f\n' \
  "$(mbit "$mv")" "$(mbit "$mt")" "$(mbit "$mo")" \
  "$(awk -v a="$mv" -v b="$mt" 'BEGIN { print a / b }')" \
  "$(awk -v a="$mv" -v b="$mo" 'BEGIN { print a / b }')"
