#!/usr/bin/env bash
# Run google/packetdrill's own TCP suite (gtests/net/tcp) against the Linux kernel and against
# synack's packetdrill shared object, each script in a network namespace of its own, and print
# a per-directory table: scripts / kernel passes / synack passes.
#
#   scripts/packetdrill-upstream.sh PACKETDRILL_TREE [synack|kernel|both] [GLOB]
#
# PACKETDRILL_TREE is a checkout of google/packetdrill with gtests/net/packetdrill built
# (`./configure && make`; needs bison and flex). Nothing of it is copied into this project.
# Needs root (namespaces, TUN). Each script runs with the flags of the suite's run_all.py
# (IPv4, or the IPv6 set with --mtu=1520 for *v6.pkt), 20 s at most. Per-script logs go to
# $OUT (default /tmp/packetdrill-upstream). GLOB (default '*') picks scripts by path, e.g.
# 'fastopen/*'.
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
mkdir -p "$out"
[ -x "$pd" ] || { echo "no packetdrill binary at $pd: build it first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, TUN)" >&2; exit 2; }
if [ "$mode" != kernel ]; then
    (cd "$here" && cargo build --release -q -p synack-packetdrill) || exit 2
fi

v4='--ip_version=ipv4 --local_ip=192.168.0.1 --gateway_ip=192.168.0.1 --netmask_ip=255.255.0.0 --remote_ip=192.0.2.1 -D TFO_COOKIE=3021b9d889017eeb -D CODE=host_unreachable -D CMSG_LEVEL_IP=SOL_IP -D CMSG_TYPE_RECVERR=IP_RECVERR'
v6='--ip_version=ipv6 --mtu=1520 --local_ip=fd3d:0a0b:17d6::1 --gateway_ip=fd3d:0a0b:17d6:8888::1 --remote_ip=fd3d:fa7b:d17d::1 -D TFO_COOKIE=c1d1e9742a47a9bc -D CMSG_LEVEL_IP=SOL_IPV6 -D CMSG_TYPE_RECVERR=IPV6_RECVERR'

# run_one WHO SCRIPT: 0 if it passed.
run_one() {
    local who=$1 rel=$2 flags sof=()
    local lip
    case $rel in *v6.pkt) flags=$v6; lip=fd3d:0a0b:17d6::1; sof=(--so_flags="local_ip=$lip mtu=1520");;
                 *) flags=$v4; lip=192.168.0.1; sof=(--so_flags="local_ip=$lip");; esac
    # A script may set its own addresses (`--local_ip=...` lines): the object must use the same.
    local own
    own=$(sed -n 's/^--local_ip=\([^ ]*\).*/\1/p' "$suite/$rel" | head -1)
    [ -n "$own" ] && sof=(--so_flags="${sof[0]#--so_flags=} local_ip=$own")
    local log=$out/$who/${rel//\//_}.log
    mkdir -p "$out/$who"
    if [ "$who" = synack ]; then
        # packetdrill makes no tun0 when it loads a shared object, but defaults.sh configures
        # one: give it one to configure.
        (cd "$suite/$(dirname "$rel")" && timeout -k 2 20 unshare -n bash -c \
            'ip link set lo up; ip tuntap add dev tun0 mode tun; ip link set tun0 up; exec "$@"' _ \
            "$pd" $flags --send_omit_free --so_filename="$so" "${sof[@]}" "$(basename "$rel")") \
            >"$log" 2>&1
    else
        (cd "$suite/$(dirname "$rel")" && timeout -k 2 20 unshare -n bash -c \
            'ip link set lo up; exec "$@"' _ "$pd" $flags --send_omit_free "$(basename "$rel")") \
            >"$log" 2>&1
    fi
}

declare -A total kpass spass
fails=()
cd "$suite"
for rel in $(find . -name '*.pkt' | sed 's|^\./||' | sort); do
    # shellcheck disable=SC2053
    [[ $rel == $glob ]] || continue
    dir=$(dirname "$rel")
    total[$dir]=$(( ${total[$dir]:-0} + 1 ))
    k=-; s=-
    if [ "$mode" != synack ]; then
        if run_one kernel "$rel"; then k=pass; kpass[$dir]=$(( ${kpass[$dir]:-0} + 1 )); else k=FAIL; fi
    fi
    if [ "$mode" != kernel ]; then
        if run_one synack "$rel"; then s=pass; spass[$dir]=$(( ${spass[$dir]:-0} + 1 )); else s=FAIL; fi
    fi
    printf '%-60s kernel %-4s synack %s\n' "$rel" "$k" "$s" >>"$out/results.txt"
    [ "$s" = FAIL ] && fails+=("$rel")
done

printf '\n%-32s %8s %8s %8s\n' directory scripts kernel synack
T=0 K=0 S=0
for dir in $(printf '%s\n' "${!total[@]}" | sort); do
    printf '%-32s %8d %8s %8s\n' "$dir" "${total[$dir]}" "${kpass[$dir]:-0}" "${spass[$dir]:-0}"
    T=$((T + total[$dir])); K=$((K + ${kpass[$dir]:-0})); S=$((S + ${spass[$dir]:-0}))
done
printf '%-32s %8d %8d %8d\n' total "$T" "$K" "$S"
echo "per-script results: $out/results.txt; logs: $out/{kernel,synack}/"
