#!/usr/bin/env bash
# Run google/packetdrill's own TCP suite (gtests/net/tcp) against the Linux kernel and against
# synack's packetdrill shared object, each script in a network namespace of its own, and print
# a per-directory table: scripts / kernel passes / synack passes / synack among kernel passes,
# then every script the kernel passes and synack fails, with its first error.
#
#   scripts/packetdrill-upstream.sh PACKETDRILL_TREE [synack|kernel|both] [GLOB]
#
# PACKETDRILL_TREE is a checkout of google/packetdrill with gtests/net/packetdrill built
# (`./configure && make`; needs bison and flex). Nothing of it is copied into this project.
# Needs root (namespaces, TUN). Each script runs with the flags of the suite's run_all.py
# (IPv4, or the IPv6 set with --mtu=1520 for *v6.pkt), 20 s at most. Per-script logs go to
# $OUT (default /tmp/packetdrill-upstream). GLOB (default '*') picks scripts by path, e.g.
# 'fastopen/*'. Without a kernel run (mode synack), KERNEL_PASSES=FILE names the list of
# scripts the kernel passes (one path a line, `#` comments), for the last column and the list.
#
# Against synack: the object reads the namespace's TCP sysctls (`sysctl=/proc/sys` in its
# flags), as the scripts set them, and its route to the peer (metrics such as `ip route change
# ... advmss 600 mtu lock 640 initcwnd 11`, and the device's `ethtool -K` offloads), so tun0
# gets the address and route packetdrill gives it for the kernel (`ip route change ... via
# GATEWAY` needs an on-link gateway); and an LD_PRELOAD helper (crates/packetdrill/csrc/preload.c,
# built here) lets the C library's getsockopt() that packetdrill's `%{ }%` code events call
# reach the object for its own descriptors (TCP_INFO), where the kernel knows none.
set -u
tree=${1:?usage: $0 PACKETDRILL_TREE [synack|kernel|both] [GLOB]}
mode=${2:-both}
glob=${3:-*}
tree=$(cd "$tree" && pwd)
pd=$tree/gtests/net/packetdrill/packetdrill
suite=$tree/gtests/net/tcp
here=$(cd "$(dirname "$0")/.." && pwd)
so=$here/target/release/libsynack_packetdrill.so
out=${OUT:-/tmp/packetdrill-upstream}
preload=$out/synack-preload.so
mkdir -p "$out"
rm -f "$out/results.txt"
[ -x "$pd" ] || { echo "no packetdrill binary at $pd: build it first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, TUN)" >&2; exit 2; }
if ! command -v ethtool >/dev/null; then
    echo "WARNING: ethtool is not installed: scripts that run 'ethtool -K tun0 gso off tso off'" \
        "(mtu_probe/*, nagle/https_client.pkt) leave tun0's offloads as they are and may fail;" \
        "apt-get install -y ethtool" >&2
fi
if [ "$mode" != kernel ]; then
    (cd "$here" && cargo build --release -q -p synack-packetdrill) || exit 2
    cc -shared -fPIC -O2 -Wall -Werror -o "$preload" "$here/crates/packetdrill/csrc/preload.c" -ldl \
        || exit 2
fi

declare -A kernel_list
if [ -n "${KERNEL_PASSES:-}" ]; then
    while read -r line; do
        case $line in ''|'#'*) continue;; esac
        kernel_list[$line]=1
    done <"$KERNEL_PASSES"
fi

v4='--ip_version=ipv4 --local_ip=192.168.0.1 --gateway_ip=192.168.0.1 --netmask_ip=255.255.0.0 --remote_ip=192.0.2.1 -D TFO_COOKIE=3021b9d889017eeb -D CODE=host_unreachable -D CMSG_LEVEL_IP=SOL_IP -D CMSG_TYPE_RECVERR=IP_RECVERR'
v6='--ip_version=ipv6 --mtu=1520 --local_ip=fd3d:0a0b:17d6::1 --gateway_ip=fd3d:0a0b:17d6:8888::1 --remote_ip=fd3d:fa7b:d17d::1 -D TFO_COOKIE=c1d1e9742a47a9bc -D CMSG_LEVEL_IP=SOL_IPV6 -D CMSG_TYPE_RECVERR=IPV6_RECVERR'

# run_one WHO SCRIPT: 0 if it passed (124 if it timed out).
run_one() {
    local who=$1 rel=$2 flags sof
    # tun0's setup as packetdrill's for the kernel: the local address and prefix, the route to
    # the remote address through the gateway.
    local net
    case $rel in *v6.pkt) flags=$v6; sof="local_ip=fd3d:0a0b:17d6::1 mtu=1520"
                          net='ip link set tun0 mtu 1520; ip addr add "$L/48" dev tun0 nodad; ip -6 route add fd3d:fa7b:d17d::1 via fd3d:0a0b:17d6:8888::1 dev tun0';;
                 *) flags=$v4; sof="local_ip=192.168.0.1"
                    net='ip addr add "$L/16" dev tun0; ip route add 192.0.2.1 via 192.168.0.1 dev tun0';; esac
    # A script may set its own addresses (`--local_ip=...` lines): the object must use the same.
    local own
    own=$(sed -n 's/^--local_ip=\([^ ]*\).*/\1/p' "$suite/$rel" | head -1)
    [ -n "$own" ] && sof="$sof local_ip=$own"
    local lip=${own:-${sof#local_ip=}}
    lip=${lip%% *}
    sof="$sof sysctl=/proc/sys"
    local log=$out/$who/${rel//\//_}.log
    mkdir -p "$out/$who"
    if [ "$who" = synack ]; then
        # packetdrill makes no tun0 when it loads a shared object, but defaults.sh configures
        # one: give it one to configure.
        (cd "$suite/$(dirname "$rel")" && LD_PRELOAD=$preload SYNACK_PACKETDRILL_SO=$so L=$lip \
            timeout -k 2 20 unshare -n bash -c \
            "ip link set lo up; ip tuntap add dev tun0 mode tun; ip link set tun0 up; { $net; }"' >/dev/null 2>&1; exec "$@"' _ \
            "$pd" $flags --send_omit_free --so_filename="$so" --so_flags="$sof" \
            "$(basename "$rel")") >"$log" 2>&1
    else
        (cd "$suite/$(dirname "$rel")" && timeout -k 2 20 unshare -n bash -c \
            'ip link set lo up; exec "$@"' _ "$pd" $flags --send_omit_free "$(basename "$rel")") \
            >"$log" 2>&1
    fi
}

# first_error LOG RC: the first line packetdrill reported an error on (or the timeout).
first_error() {
    local log=$1 rc=$2
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "TIMEOUT (20 s): hangs"
        return
    fi
    local e
    e=$(grep -m1 -E '\.pkt:[0-9]+: |error|assert|Assertion' "$log")
    [ -n "$e" ] || e=$(grep -v '^\s*$' "$log" | tail -1)
    echo "${e:0:160}"
}

declare -A total kpass spass both
kfails=()
cd "$suite"
for rel in $(find . -name '*.pkt' | sed 's|^\./||' | sort); do
    # shellcheck disable=SC2053
    [[ $rel == $glob ]] || continue
    dir=$(dirname "$rel")
    total[$dir]=$(( ${total[$dir]:-0} + 1 ))
    k=-; s=-; err=
    if [ "$mode" != synack ]; then
        if run_one kernel "$rel"; then k=pass; else k=FAIL; fi
    elif [ -n "${KERNEL_PASSES:-}" ]; then
        if [ -n "${kernel_list[$rel]:-}" ]; then k=pass; else k=FAIL; fi
    fi
    [ "$k" = pass ] && kpass[$dir]=$(( ${kpass[$dir]:-0} + 1 ))
    if [ "$mode" != kernel ]; then
        run_one synack "$rel"; rc=$?
        if [ "$rc" = 0 ]; then
            s=pass; spass[$dir]=$(( ${spass[$dir]:-0} + 1 ))
            [ "$k" = pass ] && both[$dir]=$(( ${both[$dir]:-0} + 1 ))
        else
            s=FAIL; err=$(first_error "$out/synack/${rel//\//_}.log" "$rc")
            [ "$k" = pass ] && kfails+=("$rel: $err")
        fi
    fi
    printf '%-60s kernel %-4s synack %-4s %s\n' "$rel" "$k" "$s" "$err" >>"$out/results.txt"
done

printf '\n%-32s %8s %8s %8s %8s\n' directory scripts kernel synack both
T=0 K=0 S=0 B=0
for dir in $(printf '%s\n' "${!total[@]}" | sort); do
    printf '%-32s %8d %8s %8s %8s\n' "$dir" "${total[$dir]}" "${kpass[$dir]:-0}" \
        "${spass[$dir]:-0}" "${both[$dir]:-0}"
    T=$((T + total[$dir])); K=$((K + ${kpass[$dir]:-0}))
    S=$((S + ${spass[$dir]:-0})); B=$((B + ${both[$dir]:-0}))
done
printf '%-32s %8d %8d %8d %8d\n' total "$T" "$K" "$S" "$B"
echo "(both: synack passes among the scripts the kernel passes)"
if [ ${#kfails[@]} -gt 0 ]; then
    echo
    echo "kernel passes, synack fails (${#kfails[@]}), first error:"
    printf '  %s\n' "${kfails[@]}"
fi
echo "per-script results: $out/results.txt; logs: $out/{kernel,synack}/"
