#!/usr/bin/env bash
# HTTP requests per second, same load generator, same run, interleaved rounds:
#  (a) on kernel sockets over 127.0.0.1: `synack serve --kernel` against hyper's own server
#      (crates/http/examples/hyper_hello.rs) and nginx, with wrk (HTTP/1.1, keep-alive); then
#      `synack serve --kernel --http2` against nginx `http2` with h2load (h2c);
#  (b) as root, in network namespaces of its own (198.18.0.0/15): synack's server over TUN
#      (synack's TCP, 1 and 2 workers on a multiqueue TUN) against the same server on kernel
#      sockets reached over a veth pair, wrk in both cases on the kernel side.
# Prints each round, the medians and the ratios.
#
#   scripts/http-bench.sh [ROUNDS]     (DUR=5 seconds per wrk run, N=100000 h2load requests)
#   ONLY=h1 scripts/http-bench.sh 5    only (a)'s HTTP/1.1 comparison (ONLY=a: all of (a))
#   OFFLOAD=1 scripts/http-bench.sh    (b)'s TUN devices with --tun-offload
#
# Next to req/s, each wrk run reports the server's CPU per request: utime+stime of its
# processes (from /proc/PID/stat, the server and its children, nginx's workers) over the run,
# divided by the requests wrk counted. It is steadier than req/s on a busy machine.
#
# Build first: cargo build --release -p synack && cargo build --release -p synack-http
# --example hyper_hello. Every process runs under `timeout` and is killed by its pid on exit;
# traffic stays on loopback and inside the namespaces, which are removed on exit.
set -euo pipefail
bin=$(realpath "${BIN:-target/release/synack}")
hyper=$(realpath "${HYPER:-target/release/examples/hyper_hello}")
rounds=${1:-3}
only=${ONLY:-all}
hz=$(getconf CLK_TCK)
dur=${DUR:-5}
n=${N:-100000}
tun_flags=()
[ "${OFFLOAD:-0}" = 1 ] && tun_flags=(--tun-offload)
dir=$(mktemp -d)
ns_tun=synack-httpb-tun-$$
ns_a=synack-httpb-a-$$
ns_b=synack-httpb-b-$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "$ns_tun" "$ns_a" "$ns_b"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { # FILE TEXT
  for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no '$2' in $1:" >&2; cat "$1" >&2; exit 1
}
wait_port() { # PORT
  for _ in $(seq 200); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.1; done
  echo "nothing listens on port $1" >&2; exit 1
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# CPU clock ticks (utime + stime) of PID and its descendants.
ticks() { # PID
  local t=0 p c
  for p in "$1" $(pgrep -P "$1" || true); do
    [ "$p" = "$1" ] || { t=$((t + $(ticks "$p"))); continue; }
    c=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + c))
  done
  echo "$t"
}
# wrk against URL (inside NETNS if given): prints req/s and, with PID, the server's CPU
# microseconds per request; fails on socket errors or non-2xx.
wrk_rps() { # URL [NETNS] [PID]
  local pre=() out t0=0 t1=0 reqs
  [ -n "${2:-}" ] && pre=(ip netns exec "$2")
  [ -n "${3:-}" ] && t0=$(ticks "$3")
  out=$("${pre[@]}" timeout $((dur + 30)) wrk -t2 -c64 -d"${dur}s" "$1" 2>&1)
  [ -n "${3:-}" ] && t1=$(ticks "$3")
  if grep -qE "Socket errors|Non-2xx" <<<"$out"; then echo "$out" >&2; exit 1; fi
  reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
  awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$reqs" \
    '/^Requests\/sec:/ { printf "%s %.2f\n", $2, (n > 0 ? t * 1e6 / hz / n : 0) }' <<<"$out"
}
h2_rps() { # URL
  local out
  out=$(timeout 300 h2load -n "$n" -c 4 -m 100 "$1" 2>&1)
  grep -q "$n succeeded, 0 failed, 0 errored" <<<"$out" || { echo "$out" >&2; exit 1; }
  awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) == "req/s,") print $i }' <<<"$out"
}
# compare TOOL NAME1 URL1 NS1 PID1 NAME2 URL2 NS2 PID2 ...: rounds in rotating order; medians;
# ratio of the first to each other. With wrk and a PID, also CPU µs per request.
compare() {
  local tool=$1; shift
  local names=() urls=() nss=() spids=() k v
  while [ $# -gt 0 ]; do names+=("$1"); urls+=("$2"); nss+=("$3"); spids+=("$4"); shift 4; done
  local m=${#names[@]}
  declare -A res cpu
  for r in $(seq "$rounds"); do
    local line="round $r:"
    for j in $(seq 0 $((m - 1))); do
      k=$(( (j + r) % m ))
      if [ "$tool" = wrk ]; then
        v=$(wrk_rps "${urls[$k]}" "${nss[$k]}" "${spids[$k]}")
      else
        v="$(h2_rps "${urls[$k]}") 0"
      fi
      res[$k,$r]=${v% *}
      cpu[$k,$r]=${v#* }
    done
    for k in $(seq 0 $((m - 1))); do
      line+=$(printf '  %s %.0f' "${names[$k]}" "${res[$k,$r]}")
      [ -n "${spids[$k]}" ] && [ "$tool" = wrk ] && line+=$(printf ' (%.2f us/req)' "${cpu[$k,$r]}")
    done
    echo "$line"
  done
  local meds=() cmeds=()
  for k in $(seq 0 $((m - 1))); do
    meds[$k]=$(for r in $(seq "$rounds"); do echo "${res[$k,$r]}"; done | median)
    cmeds[$k]=$(for r in $(seq "$rounds"); do echo "${cpu[$k,$r]}"; done | median)
  done
  local line="median: "
  for k in $(seq 0 $((m - 1))); do
    line+=$(printf '  %s %.0f req/s' "${names[$k]}" "${meds[$k]}")
    [ -n "${spids[$k]}" ] && [ "$tool" = wrk ] && line+=$(printf ' %.2f us/req' "${cmeds[$k]}")
  done
  echo "$line"
  for k in $(seq 1 $((m - 1))); do
    printf 'ratio:    %s / %s = %.2f req/s' "${names[0]}" "${names[$k]}" "$(echo "${meds[0]} / ${meds[$k]}" | bc -l)"
    if [ -n "${spids[$k]}" ] && [ "$tool" = wrk ] && [ "$(echo "${cmeds[0]} > 0" | bc)" = 1 ]; then
      printf ', %.2f by CPU per request (%s / %s)' "$(echo "${cmeds[$k]} / ${cmeds[0]}" | bc -l)" "${names[$k]}" "${names[0]}"
    fi
    echo
  done
}

echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(wrk --version 2>&1 | head -1); $(nginx -v 2>&1)"

# (a) kernel sockets on loopback.
ps=$(free_port)
timeout 1800 "$bin" serve --kernel --listen "127.0.0.1:$ps" --http2 \
  --keepalive-requests 100000000 2>"$dir/synack.err" &
pids+=($!)
pid_s=$!
wait_line "$dir/synack.err" "listening on"
ph=$(free_port)
timeout 1800 "$hyper" "127.0.0.1:$ph" 2 2>"$dir/hyper.err" &
pids+=($!)
pid_h=$!
wait_line "$dir/hyper.err" "listening on"
pn=$(free_port)
pn2=$(free_port)
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
  server {
    listen 127.0.0.1:$pn;
    location / { default_type text/plain; return 200 "hello from nginx\n"; }
  }
  server {
    listen 127.0.0.1:$pn2 http2;
    location / { default_type text/plain; return 200 "hello from nginx\n"; }
  }
}
CONF
timeout 1800 nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" -e "$dir/nginx/error.log" &
pids+=($!)
pid_n=$!
wait_port "$pn"

echo "== (a) HTTP/1.1, wrk -t2 -c64 -d${dur}s, 127.0.0.1"
compare wrk synack "http://127.0.0.1:$ps/" "" "$pid_s" hyper "http://127.0.0.1:$ph/" "" "$pid_h" \
  nginx "http://127.0.0.1:$pn/" "" "$pid_n"
[ "$only" = h1 ] && exit 0
echo "== (a) HTTP/2 (h2c), h2load -n $n -c 4 -m 100, 127.0.0.1"
compare h2load synack "http://127.0.0.1:$ps/" "" "" nginx "http://127.0.0.1:$pn2/" "" ""
[ "$only" = a ] && exit 0

if [ "$(id -u)" != 0 ] || [ ! -e /dev/net/tun ]; then
  echo "skipping (b): synack over TUN against kernel sockets over veth needs root and /dev/net/tun"
  exit 0
fi
# (b) synack over TUN (in ns_tun, wrk on the kernel side of the TUN) against synack's server
# on kernel sockets in ns_b, wrk in ns_a over a veth pair.
ip netns add "$ns_tun"; ip -n "$ns_tun" link set lo up
ip netns add "$ns_a"; ip netns add "$ns_b"
ip link add httpbva netns "$ns_a" type veth peer name httpbvb netns "$ns_b"
ip -n "$ns_a" addr add 198.18.2.1/24 dev httpbva; ip -n "$ns_a" link set httpbva up; ip -n "$ns_a" link set lo up
ip -n "$ns_b" addr add 198.18.2.2/24 dev httpbvb; ip -n "$ns_b" link set httpbvb up; ip -n "$ns_b" link set lo up
ip netns exec "$ns_tun" timeout 1800 "$bin" serve --tun httpbt1 --ip 198.18.0.2/24 --port 80 \
  "${tun_flags[@]}" --keepalive-requests 100000000 2>"$dir/tun1.err" &
pids+=($!)
wait_line "$dir/tun1.err" "listening on"
ip netns exec "$ns_tun" timeout 1800 "$bin" serve --tun httpbt2 --ip 198.18.1.2/24 --port 80 \
  "${tun_flags[@]}" --workers 2 --keepalive-requests 100000000 2>"$dir/tun2.err" &
pids+=($!)
wait_line "$dir/tun2.err" "listening on"
ip netns exec "$ns_b" timeout 1800 "$bin" serve --kernel --listen 198.18.2.2:80 \
  --keepalive-requests 100000000 2>"$dir/veth.err" &
pids+=($!)
wait_line "$dir/veth.err" "listening on"
echo "== (b) HTTP/1.1, wrk -t2 -c64 -d${dur}s: synack over TUN (1, 2 workers) vs kernel sockets over veth"
compare wrk synack-tun-1w "http://198.18.0.2/" "$ns_tun" "" synack-tun-2w "http://198.18.1.2/" "$ns_tun" "" \
  kernel-veth "http://198.18.2.2/" "$ns_a" ""
