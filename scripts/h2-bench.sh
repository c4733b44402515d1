#!/usr/bin/env bash
# HTTP/2 requests per second: h2load -n N -c 4 -m 100 against `synack serve --kernel --http2`
# and against nginx with `listen ... http2` (h2c, the same small static response), both on
# 127.0.0.1, alternating, ROUNDS times in one run; prints each round, the medians and
# synack's ratio to nginx. As root, it then makes a network namespace of its own and
# compares synack's server over TUN (198.18.0.2, synack's TCP) with synack's kernel-socket
# server in that namespace, the same way.
#
#   scripts/h2-bench.sh [SYNACK_BINARY] [ROUNDS]       (N=100000 by default: N=... to change)
#
# Build first: cargo build --release -p synack. Every process runs under `timeout` and is
# killed by its pid on exit; traffic stays on loopback and inside the namespace.
set -euo pipefail
bin=$(realpath "${1:-target/release/synack}")
rounds=${2:-3}
n=${N:-100000}
dir=$(mktemp -d)
ns=synack-h2bench-$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { # FILE TEXT: wait (at most 20 s) until FILE contains TEXT
  for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no '$2' in $1:" >&2; cat "$1" >&2; exit 1
}
wait_port() { # PORT [NETNS]
  for _ in $(seq 200); do
    if [ -n "${2:-}" ]; then ip netns exec "$2" ss -ltnH "sport = :$1" | grep -q . && return 0
    else ss -ltnH "sport = :$1" | grep -q . && return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; exit 1
}
# h2load against URL (inside NETNS if given): prints req/s, fails on any failed request.
load() { # URL [NETNS]
  local pre=()
  [ -n "${2:-}" ] && pre=(ip netns exec "$2")
  local out
  out=$("${pre[@]}" timeout 300 h2load -n "$n" -c 4 -m 100 "$1" 2>&1)
  if ! grep -q "requests: $n total, $n started, $n done, $n succeeded, 0 failed, 0 errored" <<<"$out"; then
    echo "$out" >&2; exit 1
  fi
  awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) == "req/s,") print $i }' <<<"$out"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# Compares two URLs: NAME_A URL_A NAME_B URL_B [NETNS]
compare() {
  local ra=() rb=() a b
  for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then a=$(load "$2" "${5:-}"); b=$(load "$4" "${5:-}")
    else b=$(load "$4" "${5:-}"); a=$(load "$2" "${5:-}"); fi
    printf 'round %d: %-28s %10.0f req/s   %-28s %10.0f req/s\n' "$r" "$1" "$a" "$3" "$b"
    ra+=("$a"); rb+=("$b")
  done
  a=$(printf '%s\n' "${ra[@]}" | median); b=$(printf '%s\n' "${rb[@]}" | median)
  printf 'median:  %-28s %10.0f req/s   %-28s %10.0f req/s   ratio %.2f\n' "$1" "$a" "$3" "$b" \
    "$(echo "$a / $b" | bc -l)"
}

echo "h2load -n $n -c 4 -m 100; $(nproc) cores; $(h2load --version | head -1); $(nginx -v 2>&1)"

# synack, kernel sockets, h2c.
ps=$(free_port)
timeout 1800 "$bin" serve --kernel --listen "127.0.0.1:$ps" --http2 \
  --keepalive-requests 100000000 2>"$dir/synack.err" &
pids+=($!)
wait_line "$dir/synack.err" "listening on"

# nginx, h2c on its own port, the same kind of response.
pn=$(free_port)
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes $(nproc);
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  keepalive_requests 100000000;
  http2_max_concurrent_streams 128;
  server {
    listen 127.0.0.1:$pn http2;
    location / { default_type text/plain; return 200 "hello from nginx\n"; }
  }
}
CONF
timeout 1800 nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" -e "$dir/nginx/error.log" &
pids+=($!)
wait_port "$pn"

compare "synack --kernel --http2" "http://127.0.0.1:$ps/" "nginx listen http2" "http://127.0.0.1:$pn/"

if [ "$(id -u)" != 0 ] || [ ! -e /dev/net/tun ]; then
  echo "skipping the TUN comparison: it needs root and /dev/net/tun"
  exit 0
fi
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" timeout 1800 "$bin" serve --tun synh2bench0 --ip 198.18.0.2/24 --port 80 \
  --http2 --keepalive-requests 100000000 2>"$dir/tun.err" &
pids+=($!)
wait_line "$dir/tun.err" "listening on"
ip netns exec "$ns" timeout 1800 "$bin" serve --kernel --listen 127.0.0.1:8080 --http2 \
  --keepalive-requests 100000000 2>"$dir/kern.err" &
pids+=($!)
wait_line "$dir/kern.err" "listening on"
compare "synack over TUN" "http://198.18.0.2/" "synack --kernel (netns)" "http://127.0.0.1:8080/" "$ns"
