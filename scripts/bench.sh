#!/usr/bin/env bash
# bench.sh: Causeway's end-to-end throughput, packet rate and latency against the kernel's own
# forwarding and against other userspace VPNs (wireguard-go, boringtun, strongSwan with
# kernel-libipsec), in one run; or, with --memory, the daemons' memory under load with many tunnels.
#
# Usage: bench.sh [--time SECONDS] [--peers LIST] [--pings N] [--chart PNG | --no-chart]
#        bench.sh --memory [--minutes N] [--tunnels N]
#
#   --time S       length of each iperf3 test, 1..60 s (default 10)
#   --peers LIST   comparison peers, comma-separated: wireguard-go, boringtun, strongswan; "all"
#                  (default) or "none"
#   --pings N      pings per latency test, 10..10000 (default 200, 10 ms apart)
#   --chart PNG    where the chart goes (default docs/bench.png; also target/bench/bench.png)
#   --no-chart     no chart (and no Python virtual environment)
#   --memory       the memory mode instead of the throughput run (see scripts/bench/memory.sh)
#   --minutes N    memory mode: minutes of load, 1..120 (default 10)
#   --tunnels N    memory mode: IPsec tunnels between the two daemons, 1..99 (default 30)
#
# One after the other, never in parallel:
#   1. the kernel baseline (scripts/kernel-baseline.sh --json): TCP 1 stream, TCP 4 streams,
#      UDP 64-byte datagrams (--udp64); then its latency: the same three-namespace topology built
#      again (cwb-<pid>-kp-*, scripts/bench/peers.sh), ping 10.1.0.10 -> 10.2.0.10;
#   2. Causeway, plain path ("causeway plain"): two fresh namespaces (cwb-<pid>-vnet,
#      cwb-<pid>-onprem), a generated config (an ExpressRoute gateway, SKU ErGwScale with 40 scale
#      units = 40 Gbit/s and 4 Mpps per direction, so that the SKU is not the limit; TUNs cw-vnet0 /
#      cw-er0 inside the namespaces; the lab's addressing), causewayd (release build) in the
#      background; then the latency (ping), iperf3 TCP 1 and 4 streams each way (VNet ->
#      on-premises, and on-premises -> VNet with -R) and UDP 64-byte VNet -> on-premises;
#   3. Causeway, tunnel path, twice, one after the other: two daemons joined by an IPsec tunnel
#      (ESP in UDP 4500, aes256gcm16, manual SAs with fresh random keys; each daemon's state_dir,
#      where its sequence-number lease goes, is in this run's temporary directory), each with a Vpn
#      gateway of SKU VpnGw5 (10 Gbit/s aggregate, 2.3 Gbit/s per tunnel). Namespaces
#      cwb-<pid>-vnet (daemon A's TUN cw-vnet0, 10.1.0.10/16), cwb-<pid>-gwa and cwb-<pid>-gwb (the
#      underlay: a veth pair 192.0.2.1/24 <-> 192.0.2.2/24; each daemon runs inside its own with
#      `ip netns exec`, where it binds its UDP socket), cwb-<pid>-onprem (daemon B's TUN
#      cw-onprem0, 10.3.0.10/16). Daemon A: VNet 10.1.0.0/16, tunnel prefixes 10.3.0.0/16; daemon
#      B the mirror image (its VNet 10.3.0.0/16, tunnel prefixes 10.1.0.0/16, SPIs and keys
#      swapped). The same tests, between 10.1.0.10 and 10.3.0.10:
#      a. "causeway tunnel aes256gcm16 (VpnGw5)": as configured, the SKU's rates enforced: one
#         tunnel is capped at 2.3 Gbit/s per direction by the SKU (what the SKU does to a tunnel);
#      b. "causeway tunnel aes256gcm16 (unshaped)": everything set up again (namespaces, keys,
#         daemons), the same configs plus `shaping = false` in the [[gateway]] table of both
#         daemons (the SKU's rates off, checked in `causeway status -o json`; the daemons log a
#         warning): the data plane's own capacity. This is the row the peers are compared with;
#   4. the comparison peers (scripts/bench/peers.sh), each gateway to gateway between the same
#      four namespaces (hosts 10.1.0.10 and 10.3.0.10 behind veth pairs, gateways cwb-<pid>-gwa and
#      cwb-<pid>-gwb forwarding, the same underlay), one at a time: "wireguard-go" and "boringtun"
#      (a userspace WireGuard interface in each gateway namespace, configured with `wg set`),
#      "strongswan-libipsec" (charon with kernel-libipsec in each, IKEv2 PSK, ESP aes256gcm16;
#      scripts/strongswan.sh). For each: the latency, TCP 1 stream each way, UDP 64-byte.
# Around each test of 2-4 the gateway processes' CPU time (utime + stime of /proc/PID/stat, all
# threads: causewayd, wireguard-go, boringtun-cli or charon, both ends together for a tunnel) is
# read before and after, and for Causeway its counters. Latency: N pings 10 ms apart through the
# idle path, p50 and p99 of the individual RTTs (nearest rank).
#
# Prints the machine, the table of every test (path, direction, streams, Gbit/s received, Mpps
# received for the UDP rows, ratio to the same-run kernel figure, the gateways' CPU seconds per
# Gbit carried, CPU % of one core, Causeway's CPU ns per wire packet, "SKU-capped" for a tunnel
# row within 10% of VpnGw5's 2.3 Gbit/s per-tunnel cap: the VpnGw5 rows only), then the summary
# table, one row per path (kernel, causeway plain, causeway tunnel aes256gcm16 (VpnGw5), causeway
# tunnel aes256gcm16 (unshaped), wireguard-go, boringtun, strongswan-libipsec): Gbit/s with 1 TCP
# stream each way, Mpps (UDP 64 B), ping p50 and p99 in ms, the ratios to the kernel (Gbit/s,
# Mpps), for the peers the unshaped Causeway tunnel divided by the peer (Gbit/s, Mpps) and whether
# that reaches the target of 5x, and CPU seconds per Gbit (VNet -> on-premises; none for the
# kernel: its forwarding runs in the iperf3 sender's system calls); then the 5x check (unshaped
# tunnel against every peer) in one line. Writes the same as target/bench/results.json and
# results.md, the raw iperf3 JSON, pings, logs and counters in target/bench/raw/ (the tunnel's
# under tunnel-vpngw5-* and tunnel-unshaped-*), and the chart (bars per system: Gbit/s both ways,
# for every path and for the tunnels alone with VpnGw5's cap and a line at 5x the best peer; Mpps;
# ping p50/p99) as PNG with matplotlib from target/bench/venv.
#
# --memory: two causewayd joined by --tunnels manually keyed tunnels (VpnGw5), idle 30 s, then
# --minutes of iperf3 load through rotating tunnels, then 20 s idle; VmRSS of each daemon every
# 10 s; reports idle RSS, min/max under load, the least-squares slope and whether it is flat, in
# target/bench/memory/ (memory.json, memory.md, samples.jsonl).
#
# Needs root. Installs what it needs (scripts/deps.sh; scripts/bench/install-peers.sh: the
# Debian packages wireguard-go and wireguard-tools, `cargo install boringtun-cli --locked`,
# matplotlib in target/bench/venv with pip), builds `cargo build --release -p causewayd -p
# causeway`. One run at a time (a lock). Namespaces cwb-* and WireGuard sockets
# /var/run/wireguard/cwb-*.sock left by a killed run are removed first; this run's namespaces are
# removed and its processes stopped (SIGTERM, then SIGKILL after 2 s) on every exit, including
# failure, Ctrl-C and SIGTERM. All test traffic stays inside the namespaces it creates. Every
# step is bounded by a timeout. A path that cannot be set up is reported as failed rows after the
# others (exit status 1). Do not run it while other heavy work (tests, builds) runs on the
# machine: the figures would mean little.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

time_s=10
peers_arg=all
ping_count=200
chart_path="$root/docs/bench.png"
chart=1
memory=0
minutes=10
tunnels=30
while [[ $# -gt 0 ]]; do
    case "$1" in
        --time) [[ $# -ge 2 ]] || usage; time_s="$2"; shift 2 ;;
        --time=*) time_s="${1#*=}"; shift ;;
        --peers) [[ $# -ge 2 ]] || usage; peers_arg="$2"; shift 2 ;;
        --peers=*) peers_arg="${1#*=}"; shift ;;
        --pings) [[ $# -ge 2 ]] || usage; ping_count="$2"; shift 2 ;;
        --pings=*) ping_count="${1#*=}"; shift ;;
        --chart) [[ $# -ge 2 ]] || usage; chart_path="$2"; chart=1; shift 2 ;;
        --chart=*) chart_path="${1#*=}"; chart=1; shift ;;
        --no-chart) chart=0; shift ;;
        --memory) memory=1; shift ;;
        --minutes) [[ $# -ge 2 ]] || usage; minutes="$2"; shift 2 ;;
        --minutes=*) minutes="${1#*=}"; shift ;;
        --tunnels) [[ $# -ge 2 ]] || usage; tunnels="$2"; shift 2 ;;
        --tunnels=*) tunnels="${1#*=}"; shift ;;
        -h | --help) usage 0 ;;
        *) log "unknown argument '$1'"; usage ;;
    esac
done
if ! [[ "$time_s" =~ ^[1-9][0-9]?$ ]] || ((time_s > 60)); then
    die "--time must be a whole number of seconds, 1..60 (got '$time_s')"
fi
if ! [[ "$ping_count" =~ ^[1-9][0-9]{1,4}$ ]] || ((ping_count > 10000)); then
    die "--pings must be 10..10000 (got '$ping_count')"
fi
if ! [[ "$minutes" =~ ^[1-9][0-9]{0,2}$ ]] || ((minutes > 120)); then
    die "--minutes must be 1..120 (got '$minutes')"
fi
if ! [[ "$tunnels" =~ ^[1-9][0-9]?$ ]]; then
    die "--tunnels must be 1..99 (got '$tunnels')"
fi
# The comparison peers, in the order they run.
peers=()
case "$peers_arg" in
    all) peers=(wireguard-go boringtun strongswan) ;;
    none) ;;
    *)
        IFS=, read -r -a want <<<"$peers_arg"
        for p in wireguard-go boringtun strongswan; do
            for w in "${want[@]}"; do
                [[ "$w" == "$p" ]] && peers+=("$p") && break
            done
        done
        for w in "${want[@]}"; do
            [[ "$w" =~ ^(wireguard-go|boringtun|strongswan)$ ]] \
                || die "--peers: unknown peer '$w' (wireguard-go, boringtun, strongswan, all or none)"
        done
        ;;
esac
if ((chart)); then
    [[ -n "$chart_path" && "$chart_path" == *.png ]] || die "--chart: a path ending in .png (got '$chart_path')"
    chart_path="$(realpath -m -- "$chart_path")"
    [[ -d "$(dirname "$chart_path")" ]] || die "--chart: directory $(dirname "$chart_path") does not exist"
fi

need_root
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

# One bench run at a time on this machine: the stale-namespace sweep below must never remove a
# live run's namespaces. The lock is released when this process exits.
lockdir=/run/lock
[[ -d "$lockdir" && -w "$lockdir" ]] || lockdir=/tmp
exec 8>"$lockdir/causeway-bench.lock"
flock -n 8 || die "another bench.sh run is in progress"

prefix="cwb-$$"
ns_vnet="$prefix-vnet"
ns_onprem="$prefix-onprem"
ns_gwa="$prefix-gwa"
ns_gwb="$prefix-gwb"
valid_name "$prefix-kp-onprem" || die "namespace prefix '$prefix' is too long"
# The WireGuard interfaces of the peers (15 bytes at most; their UAPI sockets are
# /var/run/wireguard/NAME.sock, one directory for all namespaces).
wg_if_a="$prefix-wa"
wg_if_b="$prefix-wb"
out="${CARGO_TARGET_DIR:-$root/target}/bench"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
tmp=""
# Every gateway process started by this run (causewayd, wireguard-go, boringtun-cli, charon;
# stopped on exit), and the background helpers (memory mode's load driver).
daemon_pids=()
bg_pids=()
child_pid=""
cleaning=0

# stop_daemons : SIGTERM to every gateway process of this run, up to 2 s for them to exit, then
# SIGKILL.
stop_daemons() {
    local pid i alive
    ((${#daemon_pids[@]})) || return 0
    for pid in "${daemon_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 20; i++)); do
        alive=0
        for pid in "${daemon_pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${daemon_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            log "warning: $(cat "/proc/$pid/comm" 2>/dev/null || echo process) (pid $pid) still running 2 s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    daemon_pids=()
}

# stop_child : ends the foreground step (a kernel-baseline run or an iperf3 client) if any.
stop_child() {
    local pid="$child_pid" i
    [[ -n "$pid" ]] || return 0
    child_pid=""
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    # kernel-baseline.sh removes its namespaces on SIGTERM; give it the time to.
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? n
    ((cleaning)) && return 0
    cleaning=1
    trap '' INT TERM HUP
    stop_child
    for n in "${bg_pids[@]}"; do
        kill -TERM "$n" 2>/dev/null || true
    done
    stop_daemons
    ns_cleanup_prefix "$prefix-"
    for n in "${bg_pids[@]}"; do
        wait "$n" 2>/dev/null || true
    done
    rm -f -- "/var/run/wireguard/$wg_if_a.sock" "/var/run/wireguard/$wg_if_b.sock"
    for n in $(ns_list_prefix "$prefix-"); do
        log "warning: namespace $n left behind"
    done
    [[ -n "$tmp" ]] && rm -rf -- "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# run_bg CMD... : runs CMD in the background and waits for it, so that a signal is handled at
# once (the trap ends it); returns CMD's status.
run_bg() {
    local rc=0
    "$@" &
    child_pid=$!
    wait "$child_pid" || rc=$?
    child_pid=""
    return "$rc"
}

# --- the machine ------------------------------------------------------------------------------
cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
[[ -n "$cpu_model" ]] || cpu_model="$(uname -m)"
ncpu="$(nproc)"
kernel="$(uname -r)"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $ncpu CPU(s), $cpu_model, Linux $kernel, load average $load_start"
if awk -v l="${load_start%% *}" -v n="$ncpu" 'BEGIN { exit !(l > n / 2) }'; then
    log "warning: load average ${load_start%% *} on $ncpu CPU(s): something else is running, the figures will be noisy"
fi

# --- dependencies and build -------------------------------------------------------------------
log "checking dependencies (scripts/deps.sh)"
run_bg timeout 900 "$here/deps.sh" >&2 8>&- || die "scripts/deps.sh failed"
need_cmd ip iperf3 jq ping timeout flock ss awk
venv="$out/venv"
if ((!memory)) && ((${#peers[@]} || chart)); then
    install_args=(--venv "$venv")
    [[ " ${peers[*]} " == *" boringtun "* ]] || install_args+=(--skip-boringtun)
    ((chart)) || install_args+=(--skip-chart)
    log "checking the comparison peers and the chart's Python (scripts/bench/install-peers.sh)"
    run_bg timeout 3600 "$here/bench/install-peers.sh" "${install_args[@]}" >&2 8>&- \
        || die "scripts/bench/install-peers.sh failed (see above)"
fi
for p in "${peers[@]}"; do
    case "$p" in
        wireguard-go) need_cmd wireguard-go wg ;;
        boringtun) need_cmd boringtun-cli wg ;;
        strongswan) need_cmd swanctl; [[ -x /usr/lib/ipsec/charon ]] || die "/usr/lib/ipsec/charon not found (scripts/deps.sh installs strongswan-charon)" ;;
    esac
done
log "building release binaries (cargo build --release -p causewayd -p causeway)"
run_bg timeout 1800 cargo build --manifest-path "$root/Cargo.toml" --release -p causewayd -p causeway \
    >&2 8>&- || die "build failed"
[[ -x "$bin/causewayd" && -x "$bin/causeway" ]] || die "no binaries in $bin"
iperf_version="$(iperf3 --version 2>/dev/null | head -1)"
((memory)) || echo "iperf3: $iperf_version; each test ${time_s}s"
((memory)) && peers=()
# Versions of the comparison peers (for the record).
peer_versions='{}'
for p in "${peers[@]}"; do
    case "$p" in
        wireguard-go) v="wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null) ($(wireguard-go --version 2>/dev/null | head -1)), wireguard-tools $(dpkg-query -W -f='${Version}' wireguard-tools 2>/dev/null)" ;;
        boringtun) v="$(boringtun-cli --version 2>/dev/null | head -1) (boringtun-cli)" ;;
        strongswan) v="$(/usr/lib/ipsec/charon --version 2>/dev/null | head -1), kernel-libipsec" ;;
    esac
    peer_versions="$(jq -c --arg k "$p" --arg v "$v" '. + {($k): $v}' <<<"$peer_versions")"
    echo "$p: $v"
done

# The chart's Python must not be removed with the results: only this mode's own outputs are.
tmp="$(mktemp -d /tmp/causeway-bench.XXXXXX)"
if ((!memory)); then
    rm -rf -- "$out/raw" "$out/results.json" "$out/results.md" "$out/bench.png"
    mkdir -p -- "$out/raw"
fi
: >"$tmp/rows.jsonl"
: >"$tmp/pings.jsonl"

# Leftovers of killed runs (the lock above says none is live): their namespaces (which ends the
# processes inside) and their WireGuard UAPI sockets.
ns_cleanup_prefix "cwb-"
rm -f -- /var/run/wireguard/cwb-*.sock

clk_tck="$(getconf CLK_TCK)"

# daemon_ticks PID : utime + stime of a daemon (all its threads), in clock ticks.
daemon_ticks() {
    local s
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # Fields after "(comm) ": state is field 3 of the line, so utime (14) and stime (15) are the
    # 12th and 13th words of the rest.
    s="${s##*) }"
    # shellcheck disable=SC2086 # splitting into words is intended
    set -- $s
    echo $((${12} + ${13}))
}

# add_row JSON : appends one result row.
add_row() {
    printf '%s\n' "$1" >>"$tmp/rows.jsonl"
}

failures=0

# The path under test (set before each section, read by the functions below).
run_path=""         # the table's "path" column
run_tag=""          # prefix of its raw files
run_pids=()         # its gateway processes (causewayd, wireguard-go, boringtun-cli, charon)
run_labels=()       # their labels in thread names and per-daemon figures ("" for a lone daemon)
run_socks=()        # causewayd's control sockets, in the same order (the first daemon's gateway 0
                    # is the one whose packets are counted); none for the comparison peers
run_client_ns=""    # the iperf3 client (the VNet host)
run_server_ns=""    # the iperf3 server (the other side's host)
run_server_addr=""
run_tuns=()         # LABEL:NAMESPACE:DEVICE of the TUNs whose drop counters are read
run_udp=()          # LABEL:NAMESPACE whose UDP counters (/proc/net/snmp) are read
run_sku_cap=null    # the SKU's per-tunnel cap in Gbit/s (tunnel rows), for the SKU-capped mark
started_pid=""

# --- the kernel baseline: one run of scripts/kernel-baseline.sh --------------------------------
kernel_run() {
    local streams="$1" mode="$2" f="$tmp/kernel-$2-$1.json" args=()
    [[ "$mode" == udp64 ]] && args+=(--udp64)
    log "kernel baseline: $mode, $streams stream(s)"
    if run_bg timeout $((time_s + 120)) "$here/kernel-baseline.sh" --json --time "$time_s" \
        --streams "$streams" --prefix "$prefix-k" --save "$out/raw/kernel-$mode-$streams" \
        "${args[@]}" >"$f" 8>&- && jq -e . "$f" >/dev/null 2>&1; then
        local offered=null raw="$out/raw/kernel-$mode-$streams/client.json"
        if [[ "$mode" == udp64 && -s "$raw" ]]; then
            offered="$(jq -r '(.end.sum_sent // .end.sum) | (.packets / .seconds / 1e6 * 1000 | round) / 1000' \
                "$raw")" || offered=null
        fi
        add_row "$(jq -c --argjson om "$offered" '{path:"kernel", direction:"vnet->onprem", mode,
            streams, seconds, gbps, mpps:(.mpps // null), offered_mpps:$om,
            loss_percent:(.loss_percent // null)}' "$f")"
    else
        log "warning: kernel baseline $mode/$streams failed"
        failures=$((failures + 1))
        add_row "$(jq -cn --arg m "$mode" --argjson s "$streams" --argjson t "$time_s" \
            '{path:"kernel", direction:"vnet->onprem", mode:$m, streams:$s, seconds:$t,
              gbps:null, mpps:null, error:"run failed"}')"
    fi
}

# start_daemon LABEL NETNS CONFIG SOCKET LOG : starts causewayd in the background (inside network
# namespace NETNS with `ip netns exec`, which execs it in place, when NETNS is not empty) and waits
# up to 10 s for it to answer on SOCKET. Its pid is in started_pid (and in daemon_pids, so that
# cleanup stops it); returns 1 with a message when it exits or does not answer.
start_daemon() {
    local label="$1" ns="$2" cfg="$3" sock="$4" logf="$5" pid i
    if [[ -n "$ns" ]]; then
        RUST_LOG="${RUST_LOG:-info}" ip netns exec "$ns" "$bin/causewayd" -c "$cfg" >"$logf" 2>&1 8>&- &
    else
        RUST_LOG="${RUST_LOG:-info}" "$bin/causewayd" -c "$cfg" >"$logf" 2>&1 8>&- &
    fi
    pid=$!
    daemon_pids+=("$pid")
    started_pid="$pid"
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "causewayd $label exited: $(tail -n 20 "$logf")"
            return 1
        fi
        if timeout 3 "$bin/causeway" --socket "$sock" status >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    log "causewayd $label did not answer on $sock within 10 s: $(tail -n 20 "$logf")"
    return 1
}

# path_ticks : daemon_ticks of each daemon of the path under test, space-separated.
path_ticks() {
    local pid t all=()
    for pid in "${run_pids[@]}"; do
        t="$(daemon_ticks "$pid")" || return 1
        all+=("$t")
    done
    echo "${all[*]}"
}

# stats_all : `causeway stats -o json` of each daemon of the path under test, as one JSON array.
stats_all() {
    local sock s json='[]'
    for sock in "${run_socks[@]}"; do
        s="$(timeout 5 "$bin/causeway" --socket "$sock" stats -o json)" || return 1
        json="$(jq -c --argjson s "$s" '. + [$s]' <<<"$json")" || return 1
    done
    printf '%s\n' "$json"
}

# counters_delta BEFORE AFTER : what the daemons counted over a test, from two stats_all arrays:
# wire packets, super-packets and IP bytes of the first daemon's first gateway (each wire packet
# of a tunnel test goes through both daemons: counted once), drops of every daemon (gateways and
# VNet side), in all and by reason (reasons that moved only).
counters_delta() {
    jq -cn --argjson a "$1" --argjson b "$2" '
        def drops: [.[] | (.gateways[] | .egress.drops, .ingress.drops), .vnet.egress.drops]
            | map(to_entries[]) | group_by(.key)
            | map({key: .[0].key, value: (map(.value) | add)}) | from_entries;
        ($a[0].gateways[0]) as $ga | ($b[0].gateways[0]) as $gb
        | ($a | drops) as $da
        | ($b | drops | with_entries(.key as $k | .value -= ($da[$k] // 0))
            | with_entries(select(.value != 0))) as $dd
        | {
            gateway_wire_packets: (($gb.egress.packets + $gb.ingress.packets)
                - ($ga.egress.packets + $ga.ingress.packets)),
            gateway_super_packets: (($gb.egress.super_packets + $gb.ingress.super_packets)
                - ($ga.egress.super_packets + $ga.ingress.super_packets)),
            gateway_egress_bytes: ($gb.egress.bytes - $ga.egress.bytes),
            gateway_ingress_bytes: ($gb.ingress.bytes - $ga.ingress.bytes),
            gateway_drops: ([$dd[]] | add // 0),
            gateway_drops_by_reason: $dd
          }'
}

# udp_snmp NS : the Udp counters of /proc/net/snmp in namespace NS, as a JSON object.
udp_snmp() {
    ip netns exec "$1" cat /proc/net/snmp | awk '
        $1 == "Udp:" && !seen { for (i = 2; i <= NF; i++) k[i] = $i; seen = 1; next }
        $1 == "Udp:" { printf "{"; for (i = 2; i <= NF; i++) printf "%s\"%s\":%s", (i > 2 ? "," : ""), k[i], $i; print "}" }'
}

# snapshot : what the kernel saw around the daemons, as one JSON object: CPU ticks of each daemon
# thread (user, system; named LABEL/THREAD when the path has several daemons), the link counters
# of the path's TUNs and the UDP counters of its namespaces.
snapshot() {
    local i t comm s entry label ns dev x tuns='{}' udp='{}'
    for entry in "${run_tuns[@]}"; do
        IFS=: read -r label ns dev <<<"$entry"
        x="$(ip -n "$ns" -s -j link show dev "$dev" | jq -c '.[0].stats64')" || return 1
        tuns="$(jq -c --arg l "$label" --argjson s "$x" '. + {($l): $s}' <<<"$tuns")" || return 1
    done
    for entry in "${run_udp[@]}"; do
        IFS=: read -r label ns <<<"$entry"
        x="$(udp_snmp "$ns")" || return 1
        udp="$(jq -c --arg l "$label" --argjson s "$x" '. + {($l): $s}' <<<"$udp")" || return 1
    done
    {
        for i in "${!run_pids[@]}"; do
            label="${run_labels[$i]}"
            for t in /proc/"${run_pids[$i]}"/task/*; do
                comm="$(cat "$t/comm" 2>/dev/null)" || continue
                s="$(cat "$t/stat" 2>/dev/null)" || continue
                s="${s##*) }"
                # shellcheck disable=SC2086 # splitting into words is intended
                set -- $s
                printf '%s%s\t%s\t%s\n' "${label:+$label/}" "$comm" "${12}" "${13}"
            done
        done
    } | jq -R -s -c --argjson tuns "$tuns" --argjson udp "$udp" '
        { threads: (split("\n") | map(select(length > 0) | split("\t")
              | {name: .[0], user: (.[1] | tonumber), system: (.[2] | tonumber)})),
          tuns: $tuns, udp: $udp }'
}

# snapshot_delta BEFORE AFTER : CPU seconds per thread name and in all (user, system), the TUN
# drop counters and the UDP buffer errors over a test, as one JSON object (kernel_drops keys:
# LABEL_tun_tx_dropped, LABEL_tun_rx_dropped, LABEL_udp_rcvbuf_errors, LABEL_udp_sndbuf_errors).
snapshot_delta() {
    jq -cn --argjson a "$1" --argjson b "$2" --argjson hz "$clk_tck" '
        def r2: (. * 100 | round) / 100;
        def bythread(s): s.threads | group_by(.name)
            | map({key: .[0].name, value: {user: (map(.user) | add), system: (map(.system) | add)}})
            | from_entries;
        (bythread($a)) as $ta | (bythread($b)) as $tb
        | {
            daemon_threads_cpu_seconds: ($tb | with_entries(.value = (((.value.user + .value.system)
                - (($ta[.key].user // 0) + ($ta[.key].system // 0))) / $hz | r2))),
            daemon_user_seconds: ((([$tb[].user] | add) - ([$ta[].user] | add)) / $hz | r2),
            daemon_system_seconds: ((([$tb[].system] | add) - ([$ta[].system] | add)) / $hz | r2),
            kernel_drops: (
                [($b.tuns | keys[]) as $k
                    | {key: "\($k)_tun_tx_dropped", value: ($b.tuns[$k].tx.dropped - $a.tuns[$k].tx.dropped)},
                      {key: "\($k)_tun_rx_dropped", value: ($b.tuns[$k].rx.dropped - $a.tuns[$k].rx.dropped)}]
                + [($b.udp | keys[]) as $k
                    | {key: "\($k)_udp_rcvbuf_errors", value: ($b.udp[$k].RcvbufErrors - $a.udp[$k].RcvbufErrors)},
                      {key: "\($k)_udp_sndbuf_errors", value: ($b.udp[$k].SndbufErrors - $a.udp[$k].SndbufErrors)}]
                | from_entries)
          }'
}

# failed_row NAME MODE STREAMS REVERSE WHY : a row of the path under test that has no figures.
failed_row() {
    local dir="vnet->onprem"
    (($4)) && dir="onprem->vnet"
    add_row "$(jq -cn --arg p "$run_path" --arg d "$dir" --arg m "$2" --argjson s "$3" \
        --argjson t "$time_s" --arg e "$5" --argjson cap "$run_sku_cap" \
        '{path:$p, direction:$d, mode:$m, streams:$s, seconds:$t, gbps:null, mpps:null,
          sku_cap_gbps:$cap, error:$e}')"
}

# causeway_run NAME MODE STREAMS REVERSE : one iperf3 test through the path under test.
causeway_run() {
    local name="$1" mode="$2" streams="$3" reverse="$4"
    local d="$out/raw/$run_tag-$name" srv cli args=() dir rc=0
    local t0 t1 c0 c1 s0 s1 k0 k1 extra counters result bytes
    mkdir -p -- "$d"
    srv="$d/server.json"
    cli="$d/client.json"
    dir="vnet->onprem"
    args=(-c "$run_server_addr" -p 5201 -t "$time_s" -P "$streams" -J)
    if ((reverse)); then
        args+=(-R)
        dir="onprem->vnet"
    fi
    [[ "$mode" == udp64 ]] && args+=(-u -b 0 -l 64)
    log "$run_path: $mode, $streams stream(s), $dir"

    ip netns exec "$run_server_ns" timeout $((time_s + 40)) \
        iperf3 -s -1 -p 5201 -J >"$srv" 2>"$d/server.err" 8>&- &
    local srv_pid=$!
    port_listening() {
        [[ -n "$(ip netns exec "$run_server_ns" ss -Hltn "sport = :5201")" ]]
    }
    if ! wait_for -n 50 port_listening; then
        log "warning: iperf3 server did not start: $(cat "$d/server.err")"
        kill "$srv_pid" 2>/dev/null || true
        wait "$srv_pid" 2>/dev/null || true
        failures=$((failures + 1))
        failed_row "$name" "$mode" "$streams" "$reverse" "iperf3 server did not start"
        return 0
    fi

    s0=""
    s1=""
    if ((${#run_socks[@]})); then
        s0="$(stats_all)" || s0=""
    fi
    k0="$(snapshot)" || k0=""
    c0="$(path_ticks)" || c0=""
    t0="$(date +%s.%N)"
    run_bg ip netns exec "$run_client_ns" timeout $((time_s + 30)) iperf3 "${args[@]}" \
        >"$cli" 2>"$d/client.err" 8>&- || rc=$?
    t1="$(date +%s.%N)"
    c1="$(path_ticks)" || c1=""
    k1="$(snapshot)" || k1=""
    if ((${#run_socks[@]})); then
        s1="$(stats_all)" || s1=""
    fi
    extra='{}'
    if [[ -n "$k0" && -n "$k1" ]]; then
        extra="$(snapshot_delta "$k0" "$k1")" || extra='{}'
        printf '%s\n%s\n' "$k0" "$k1" >"$d/kernel-counters.jsonl"
    fi
    counters='{}'
    if [[ -n "$s0" && -n "$s1" ]]; then
        counters="$(counters_delta "$s0" "$s1")" || counters='{}'
    fi
    wait "$srv_pid" 2>/dev/null || true
    [[ -n "$s0" ]] && printf '%s\n' "$s0" >"$d/stats-before.json"
    [[ -n "$s1" ]] && printf '%s\n' "$s1" >"$d/stats-after.json"

    # The receiver's own figures: the server for VNet -> on-premises, the client with -R.
    result="$cli"
    if ((!reverse)) && jq -e '.end.sum_received' "$srv" >/dev/null 2>&1; then
        result="$srv"
    fi
    local gbps="" mpps="null" loss="null" offered="null"
    if ((rc == 0)) && gbps="$(iperf3_gbps "$result" 2>"$d/parse.err")"; then
        if [[ "$mode" == udp64 ]]; then
            local pps
            pps="$(iperf3_udp_rx_pps "$result")" || pps=0
            mpps="$(awk -v p="$pps" 'BEGIN { printf "%.3f", p / 1e6 }')"
            loss="$(iperf3_udp_loss "$result")" || loss=null
            offered="$(jq -r '(.end.sum_sent // .end.sum) | (.packets / .seconds / 1e6 * 1000 | round) / 1000' \
                "$cli")" || offered=null
        fi
    else
        log "warning: iperf3 $run_tag-$name failed (exit $rc): $(jq -r '.error // empty' "$cli" 2>/dev/null) $(head -c 300 "$d/client.err")"
        failures=$((failures + 1))
        failed_row "$name" "$mode" "$streams" "$reverse" "run failed"
        return 0
    fi
    bytes="$(jq -r '.end.sum_received.bytes // 0 | floor' "$result")"

    # Daemon CPU over the test: all daemons of the path together, and each (several daemons).
    local cpu_s=null cpu_by=null wall i tot=0 v
    local -a ta tb
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    if [[ -n "$c0" && -n "$c1" ]]; then
        read -r -a ta <<<"$c0"
        read -r -a tb <<<"$c1"
        ((${#run_pids[@]} > 1)) && cpu_by='{}'
        for i in "${!ta[@]}"; do
            tot=$((tot + tb[i] - ta[i]))
            if [[ "$cpu_by" != null ]]; then
                v="$(awk -v t=$((tb[i] - ta[i])) -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }')"
                cpu_by="$(jq -c --arg l "${run_labels[$i]}" --argjson v "$v" '. + {($l): $v}' <<<"$cpu_by")"
            fi
        done
        cpu_s="$(awk -v t="$tot" -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }')"
    fi
    add_row "$(jq -cn --arg p "$run_path" --arg d "$dir" --arg m "$mode" --argjson s "$streams" \
        --argjson t "$time_s" --argjson g "$gbps" --argjson mp "$mpps" --argjson l "$loss" \
        --argjson b "$bytes" --argjson c "$cpu_s" --argjson cb "$cpu_by" --argjson w "$wall" \
        --argjson x "$extra" --argjson k "$counters" --argjson om "$offered" \
        --argjson cap "$run_sku_cap" \
        '{path:$p, direction:$d, mode:$m, streams:$s, seconds:$t, gbps:$g, mpps:$mp,
          offered_mpps:$om, loss_percent:$l, received_bytes:$b, wall_seconds:$w,
          daemon_cpu_seconds:$c, daemon_cpu_seconds_by_daemon:$cb, sku_cap_gbps:$cap,
          gateway_wire_packets:null, gateway_super_packets:null, gateway_drops:null}
         + $k + $x')"
}

# The tests of each kind of path.
tests_causeway=(tcp1-egress tcp1-ingress tcp4-egress tcp4-ingress udp64-egress)
tests_peer=(tcp1-egress tcp1-ingress udp64-egress)

# test_spec NAME : "MODE STREAMS REVERSE" of a test name.
test_spec() {
    case "$1" in
        tcp1-egress) echo "tcp 1 0" ;;
        tcp1-ingress) echo "tcp 1 1" ;;
        tcp4-egress) echo "tcp 4 0" ;;
        tcp4-ingress) echo "tcp 4 1" ;;
        udp64-egress) echo "udp64 1 0" ;;
        *) die "unknown test '$1'" ;;
    esac
}

# run_tests NAME... : those iperf3 tests through the path under test.
run_tests() {
    local t spec
    for t in "$@"; do
        spec="$(test_spec "$t")"
        # shellcheck disable=SC2086 # three words on purpose
        causeway_run "$t" $spec
    done
}

# fail_tests WHY NAME... : those tests as failed rows of the path under test (and its latency).
fail_tests() {
    local why="$1" t spec
    shift
    for t in "$@"; do
        spec="$(test_spec "$t")"
        # shellcheck disable=SC2086
        failed_row "$t" $spec "$why"
    done
    ping_failed "$why"
}

# add_ping JSON : appends one latency result.
add_ping() {
    printf '%s\n' "$1" >>"$tmp/pings.jsonl"
}

# ping_failed WHY : the latency of the path under test as failed.
ping_failed() {
    add_ping "$(jq -cn --arg p "$run_path" --argjson c "$ping_count" --arg e "$1" \
        '{path:$p, count:$c, interval_ms:10, received:0, p50_ms:null, p99_ms:null, error:$e}')"
}

# ping_run : the latency of the path under test, idle: ping_count ICMP echo requests 10 ms apart
# from the client namespace to the server address; the individual RTTs' percentiles (nearest
# rank), in ms. The raw output goes to raw/TAG-ping.txt.
ping_run() {
    local f="$out/raw/$run_tag-ping.txt" rc=0 stats
    log "$run_path: latency, $ping_count pings 10 ms apart to $run_server_addr"
    run_bg ip netns exec "$run_client_ns" timeout $((ping_count / 50 + 30)) \
        ping -n -c "$ping_count" -i 0.01 -W 1 "$run_server_addr" >"$f" 2>&1 8>&- || rc=$?
    stats="$(sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' "$f" | sort -g | awk -v sent="$ping_count" '
        function rank(p,   k) { k = p * NR; if (k > int(k)) k = int(k) + 1; if (k < 1) k = 1; return v[k] }
        { v[NR] = $1; sum += $1 }
        END {
            if (NR == 0) { printf "{\"sent\":%d,\"received\":0}\n", sent; exit }
            printf "{\"sent\":%d,\"received\":%d,\"loss_percent\":%.2f,\"min_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"avg_ms\":%.3f}\n",
                sent, NR, 100 * (sent - NR) / sent, v[1], rank(0.5), rank(0.9), rank(0.99), v[NR], sum / NR
        }')"
    if ! jq -e '.received > 0' <<<"$stats" >/dev/null 2>&1; then
        log "warning: no ping answered through $run_path (exit $rc): $(tail -n 3 "$f")"
        failures=$((failures + 1))
        ping_failed "no answer"
        return 0
    fi
    add_ping "$(jq -c --arg p "$run_path" --argjson c "$ping_count" \
        '{path:$p, count:$c, interval_ms:10} + .' <<<"$stats")"
    log "$run_path: ping p50 $(jq -r .p50_ms <<<"$stats") ms, p99 $(jq -r .p99_ms <<<"$stats") ms"
}

# --- Causeway <-> Causeway through an IPsec tunnel: set-up ----------------------------------
tunnel_cipher="aes256gcm16"
# VpnGw5's per-tunnel cap (crates/engine/src/sku.rs), in Gbit/s.
tunnel_cap_gbps=2.3
# The two tunnel rows (the same names in results.json/md and in scripts/bench/chart.py): VpnGw5
# as configured (SKU-capped), and the same with `shaping = false`, which the peers are compared
# with.
tunnel_path_capped="causeway tunnel $tunnel_cipher (VpnGw5)"
tunnel_path="causeway tunnel $tunnel_cipher (unshaped)"

# hexkey : 36 random bytes in hex: an AES-256 key and its 4-byte salt.
hexkey() {
    od -An -N36 -tx1 /dev/urandom | tr -d ' \n'
}

# tunnel_config FILE NAME VNET GATEWAY_SUBNET NETNS TUN ADDRESS SOCKET LOCAL PEER PREFIX
#               OUT_SPI OUT_KEY IN_SPI IN_KEY SHAPING : one side's config (mode 0600: it holds
# keys). SHAPING is `true` (VpnGw5's rates enforced, the per-tunnel cap included) or `false`
# (`shaping = false` in the `[[gateway]]` table: the SKU's rates off, for the capacity
# measurement). Its state directory (the outbound SA's sequence-number lease) is SOCKET without
# `.sock`, plus `-state`: inside this run's temporary directory, so that no lease outlives the
# run (the keys are new every run) and the daemons leave nothing in /var/lib/causeway.
tunnel_config() {
    local shaping_line
    case "${16}" in
        true) shaping_line="# VpnGw5's rates enforced (the default): 2.3 Gbit/s per tunnel.
shaping = true" ;;
        false)
            shaping_line="# Capacity measurement: VpnGw5's rates (2.3 Gbit/s per tunnel) are not enforced.
shaping = false"
            ;;
        *) log "tunnel_config: SHAPING must be true or false (got '${16}')"; return 1 ;;
    esac
    (umask 077 && cat >"$1" <<EOF
# Generated by scripts/bench.sh: one side of a Causeway <-> Causeway IPsec tunnel.
[vnet]
name = "$2"
address_space = ["$3"]
gateway_subnet = "$4"

[vnet.interface]
name = "$6"
netns = "$5"
addresses = ["$7"]
mtu = 1500

[control]
socket = "$8"
# The outbound SA's sequence-number lease: this run's own, removed with it.
state_dir = "${8%.sock}-state"

[[gateway]]
name = "vpn-gw"
type = "Vpn"
sku = "VpnGw5"
$shaping_line

[[connection]]
name = "s2s"
gateway = "vpn-gw"
type = "IPsec"
local_address = "$9"
peer_address = "${10}"
prefixes = ["${11}"]

[connection.manual_sa]
esp = "$tunnel_cipher"
out_spi = ${12}
out_key = "${13}"
in_spi = ${14}
in_key = "${15}"
EOF
    )
}

# tunnel_setup SHAPING TAG : namespaces, underlay, configs (tunnel_config with SHAPING), both
# daemons, a check that both report the intended shaping (`causeway status -o json`:
# gateways[0].shaping), a ping each way; 1 on failure. TAG names the temporary files (configs,
# control sockets, state directories: new for each variant, so that the second pair of daemons
# starts from nothing the first left) and the raw files.
tunnel_setup() {
    local shaping="$1" tag="$2" n x key_ab key_ba got what="VpnGw5"
    [[ "$shaping" == false ]] && what="VpnGw5 with shaping = false"
    for n in "$ns_vnet" "$ns_gwa" "$ns_gwb" "$ns_onprem"; do
        (ns_add "$n") || return 1
    done
    if ! { ip -n "$ns_gwa" link add ul-a type veth peer name ul-b netns "$ns_gwb" \
        && ip -n "$ns_gwa" address add 192.0.2.1/24 dev ul-a \
        && ip -n "$ns_gwb" address add 192.0.2.2/24 dev ul-b \
        && ip -n "$ns_gwa" link set ul-a up \
        && ip -n "$ns_gwb" link set ul-b up; }; then
        log "cannot build the underlay veth pair"
        return 1
    fi
    wait_for -n 30 -s 0.1 timeout 3 ip netns exec "$ns_gwa" ping -c1 -W1 192.0.2.2 \
        || { log "underlay 192.0.2.1 -> 192.0.2.2 does not answer"; return 1; }

    key_ab="$(hexkey)"
    key_ba="$(hexkey)"
    ((${#key_ab} == 72 && ${#key_ba} == 72)) || { log "cannot generate keys"; return 1; }
    tunnel_config "$tmp/$tag-a.toml" bench-a 10.1.0.0/16 10.1.255.0/27 "$ns_vnet" cw-vnet0 \
        10.1.0.10/16 "$tmp/$tag-a.sock" 192.0.2.1 192.0.2.2 10.3.0.0/16 \
        0x00001001 "$key_ab" 0x00002002 "$key_ba" "$shaping" || return 1
    tunnel_config "$tmp/$tag-b.toml" bench-b 10.3.0.0/16 10.3.255.0/27 "$ns_onprem" cw-onprem0 \
        10.3.0.10/16 "$tmp/$tag-b.sock" 192.0.2.2 192.0.2.1 10.1.0.0/16 \
        0x00002002 "$key_ba" 0x00001001 "$key_ab" "$shaping" || return 1
    for x in a b; do
        sed -E 's/^((out|in)_key = ).*/\1"<random, not kept>"/' "$tmp/$tag-$x.toml" \
            >"$out/raw/$tag-config-$x.toml"
        timeout 10 "$bin/causewayd" --check -c "$tmp/$tag-$x.toml" >&2 \
            || { log "generated tunnel config $x ($what) rejected"; return 1; }
    done

    log "starting causewayd A in $ns_gwa and B in $ns_gwb ($what, $tunnel_cipher)"
    start_daemon A "$ns_gwa" "$tmp/$tag-a.toml" "$tmp/$tag-a.sock" \
        "$out/raw/$tag-causewayd-a.log" || return 1
    tunnel_pid_a="$started_pid"
    start_daemon B "$ns_gwb" "$tmp/$tag-b.toml" "$tmp/$tag-b.sock" \
        "$out/raw/$tag-causewayd-b.log" || return 1
    tunnel_pid_b="$started_pid"
    for x in a b; do
        timeout 5 "$bin/causeway" --socket "$tmp/$tag-$x.sock" status \
            >"$out/raw/$tag-status-$x.txt" 2>&1 || true
        # The row's name says whether the SKU's rates were on: make sure the daemon agrees.
        got="$(timeout 5 "$bin/causeway" --socket "$tmp/$tag-$x.sock" status -o json \
            | jq -r '.gateways[0].shaping')" || got="?"
        if [[ "$got" != "$shaping" ]]; then
            log "causewayd ${x^^}: status says gateways[0].shaping = $got, the config says $shaping"
            return 1
        fi
    done
    wait_for -n 30 -s 0.2 timeout 3 ip netns exec "$ns_vnet" ping -c1 -W1 10.3.0.10 \
        || { log "no path $ns_vnet -> $ns_onprem through the tunnel"; return 1; }
    wait_for -n 10 -s 0.2 timeout 3 ip netns exec "$ns_onprem" ping -c1 -W1 10.1.0.10 \
        || { log "no path $ns_onprem -> $ns_vnet through the tunnel"; return 1; }
    log "ping through the tunnel works both ways"
}

# --- Causeway, plain path: set-up --------------------------------------------------------------
# plain_setup : namespaces, config, the daemon, a ping each way; 1 on failure. Sets plain_pid.
plain_setup() {
    local sock="$tmp/control.sock" cfg="$tmp/bench.toml"
    plain_pid=""
    (ns_add "$ns_vnet") && (ns_add "$ns_onprem") || return 1
    cat >"$cfg" <<EOF
# Generated by scripts/bench.sh: the lab's addressing, an unconstrained SKU.
[vnet]
name = "bench"
address_space = ["10.1.0.0/16", "fd00:1::/48"]
gateway_subnet = "10.1.255.0/27"

[vnet.interface]
name = "cw-vnet0"
netns = "$ns_vnet"
addresses = ["10.1.0.10/16", "fd00:1::10/64"]
mtu = 1500

[control]
socket = "$sock"

[[gateway]]
name = "er-gw"
type = "ExpressRoute"
sku = "ErGwScale"
scale_units = 40

[[connection]]
name = "circuit-1"
gateway = "er-gw"
type = "ExpressRoute"
prefixes = ["10.2.0.0/16", "fd00:2::/48"]

[connection.interface]
name = "cw-er0"
netns = "$ns_onprem"
addresses = ["10.2.0.10/16", "fd00:2::10/64"]
mtu = 1500
EOF
    cp -- "$cfg" "$out/raw/causeway-config.toml"
    timeout 10 "$bin/causewayd" --check -c "$cfg" >&2 || { log "generated config rejected"; return 1; }

    log "starting causewayd (ErGwScale, 40 scale units)"
    start_daemon plain "" "$cfg" "$sock" "$out/raw/causewayd.log" || return 1
    plain_pid="$started_pid"
    timeout 5 "$bin/causeway" --socket "$sock" status >"$out/raw/causeway-status.txt" 2>&1 || true

    wait_for -n 30 -s 0.2 timeout 3 ip netns exec "$ns_vnet" ping -c1 -W1 10.2.0.10 \
        || { log "no path $ns_vnet -> $ns_onprem through causewayd: $(tail -n 20 "$out/raw/causewayd.log")"; return 1; }
    wait_for -n 10 -s 0.2 timeout 3 ip netns exec "$ns_onprem" ping -c1 -W1 10.1.0.10 \
        || { log "no path $ns_onprem -> $ns_vnet through causewayd"; return 1; }
    log "ping through the gateway works both ways"
}

# --- the comparison peers: one section each ----------------------------------------------------
# shellcheck source=scripts/bench/peers.sh
. "$here/bench/peers.sh"

# peer_section KIND : set-up, latency and tests of one comparison peer (wireguard-go, boringtun,
# strongswan), then everything of it stopped and removed.
peer_section() {
    local kind="$1" ok=0 n
    case "$kind" in
        strongswan) run_path="strongswan-libipsec" ;;
        *) run_path="$kind" ;;
    esac
    run_tag="$kind"
    run_sku_cap=null
    run_pids=()
    case "$kind" in
        wireguard-go | boringtun)
            if wg_peer_setup "$kind" "$ns_vnet" "$ns_gwa" "$ns_gwb" "$ns_onprem" "$wg_if_a" "$wg_if_b" "$out/raw"; then
                ok=1
                run_pids=("$wg_pid_a" "$wg_pid_b")
                run_tuns=("a:$ns_gwa:$wg_if_a" "b:$ns_gwb:$wg_if_b")
            fi
            ;;
        strongswan)
            if ss_peer_setup "$here/strongswan.sh" "$ns_vnet" "$ns_gwa" "$ns_gwb" "$ns_onprem" "$out/raw"; then
                ok=1
                run_pids=("$ss_pid_a" "$ss_pid_b")
                run_tuns=("a:$ns_gwa:ipsec0" "b:$ns_gwb:ipsec0")
            fi
            ;;
    esac
    if ((ok)); then
        run_labels=(a b)
        run_socks=()
        run_client_ns="$ns_vnet"
        run_server_ns="$ns_onprem"
        run_server_addr="10.3.0.10"
        run_udp=("vnet:$ns_vnet" "gwa:$ns_gwa" "gwb:$ns_gwb" "onprem:$ns_onprem")
        ping_run
        run_tests "${tests_peer[@]}"
    else
        log "warning: $run_path could not be set up; its tests are reported as failed"
        failures=$((failures + 1))
        fail_tests "$kind setup failed" "${tests_peer[@]}"
    fi
    [[ "$kind" == strongswan ]] && ss_peer_logs "$out/raw"
    stop_daemons
    for n in "$ns_vnet" "$ns_gwa" "$ns_gwb" "$ns_onprem"; do
        ns_del "$n"
    done
    wg_peer_cleanup "$wg_if_a" "$wg_if_b"
}

# --- the memory mode ---------------------------------------------------------------------------
if ((memory)); then
    # shellcheck source=scripts/bench/memory.sh
    . "$here/bench/memory.sh"
    memory_main "$minutes" "$tunnels"
    exit 0
fi

# --- 1. the kernel baseline -------------------------------------------------------------------
kernel_run 1 tcp
kernel_run 4 tcp
kernel_run 1 udp64
# Its latency: the same topology, built again here (kernel-baseline.sh does not ping).
run_path="kernel"
run_tag="kernel"
run_client_ns="$prefix-kp-vnet"
run_server_addr="10.2.0.10"
if kernel_topology "$prefix-kp-vnet" "$prefix-kp-rtr" "$prefix-kp-onprem"; then
    ping_run
else
    failures=$((failures + 1))
    ping_failed "kernel path setup failed"
fi
for n in "$prefix-kp-vnet" "$prefix-kp-rtr" "$prefix-kp-onprem"; do
    ns_del "$n"
done

# --- 2. Causeway, plain path ------------------------------------------------------------------
plain_pid=""
run_path="causeway plain"
run_tag="causeway"
run_sku_cap=null
if plain_setup; then
    run_pids=("$plain_pid")
    run_labels=("")
    run_socks=("$tmp/control.sock")
    run_client_ns="$ns_vnet"
    run_server_ns="$ns_onprem"
    run_server_addr="10.2.0.10"
    run_tuns=("vnet:$ns_vnet:cw-vnet0" "onprem:$ns_onprem:cw-er0")
    run_udp=("vnet:$ns_vnet" "onprem:$ns_onprem")
    ping_run
    run_tests "${tests_causeway[@]}"
    stats_all >"$out/raw/causeway-stats-final.json" 2>/dev/null || true
else
    log "warning: the plain path could not be set up; its tests are reported as failed"
    failures=$((failures + 1))
    fail_tests "plain path setup failed" "${tests_causeway[@]}"
fi
stop_daemons
ns_del "$ns_vnet"
ns_del "$ns_onprem"

# --- 3. Causeway <-> Causeway through an IPsec tunnel, twice ----------------------------------
# First with VpnGw5's rates (the SKU holds one tunnel to 2.3 Gbit/s), then, with fresh daemons,
# keys and namespaces, the same with `shaping = false`: the data plane's own capacity, the row the
# peers are compared with.
tunnel_pid_a=""
tunnel_pid_b=""
tunnel_section() {
    local shaping="$1" n
    if [[ "$shaping" == true ]]; then
        run_path="$tunnel_path_capped"
        run_tag="tunnel-vpngw5"
        run_sku_cap="$tunnel_cap_gbps"
    else
        run_path="$tunnel_path"
        run_tag="tunnel-unshaped"
        run_sku_cap=null
    fi
    tunnel_pid_a=""
    tunnel_pid_b=""
    if tunnel_setup "$shaping" "$run_tag"; then
        run_pids=("$tunnel_pid_a" "$tunnel_pid_b")
        run_labels=(a b)
        run_socks=("$tmp/$run_tag-a.sock" "$tmp/$run_tag-b.sock")
        run_client_ns="$ns_vnet"
        run_server_ns="$ns_onprem"
        run_server_addr="10.3.0.10"
        run_tuns=("vnet:$ns_vnet:cw-vnet0" "onprem:$ns_onprem:cw-onprem0")
        run_udp=("vnet:$ns_vnet" "gwa:$ns_gwa" "gwb:$ns_gwb" "onprem:$ns_onprem")
        ping_run
        run_tests "${tests_causeway[@]}"
        stats_all >"$out/raw/$run_tag-stats-final.json" 2>/dev/null || true
    else
        log "warning: $run_path could not be set up; its tests are reported as failed"
        failures=$((failures + 1))
        fail_tests "tunnel setup failed" "${tests_causeway[@]}"
    fi
    stop_daemons
    for n in "$ns_vnet" "$ns_gwa" "$ns_gwb" "$ns_onprem"; do
        ns_del "$n"
    done
}
tunnel_section true
tunnel_section false

# --- 4. the comparison peers -------------------------------------------------------------------
for p in "${peers[@]}"; do
    peer_section "$p"
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- results ----------------------------------------------------------------------------------
# Per test: each row against the kernel row of the same mode and streams (TCP: Gbit/s; UDP:
# Mpps). Summary: one row per path (TCP 1 stream both ways, UDP 64, latency), the unshaped
# Causeway tunnel divided by each peer, and the 5x target (against that row too: the VpnGw5 row
# measures the SKU's per-tunnel cap, not the data plane).
jq -n \
    --slurpfile rows "$tmp/rows.jsonl" --slurpfile pings "$tmp/pings.jsonl" \
    --arg cpu "$cpu_model" --argjson n "$ncpu" --arg k "$kernel" --arg ls "$load_start" \
    --arg le "$load_end" --arg ip "$iperf_version" --argjson t "$time_s" \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg tc "$tunnel_cipher" \
    --arg tp "$tunnel_path" --arg tpc "$tunnel_path_capped" --argjson cap "$tunnel_cap_gbps" \
    --argjson pv "$peer_versions" --argjson pc "$ping_count" '
    def r(x; n): if x == null then null else (x * pow(10; n) | round) / pow(10; n) end;
    def ratio(a; b): if a == null or b == null or b == 0 then null else r(a / b; 2) end;
    ["wireguard-go", "boringtun", "strongswan-libipsec"] as $peers
    | (["kernel", "causeway plain", $tpc, $tp] + $peers) as $order
    | [ $rows[] | . as $row
        | ($rows | map(select(.path == "kernel" and .mode == $row.mode and .streams == $row.streams)) | first) as $k
        | . + {
            ratio_to_kernel: (
                if $k == null then null
                elif .mode == "udp64" then
                    (if (.mpps // null) != null and ($k.mpps // 0) > 0 then r(.mpps / $k.mpps; 2) else null end)
                else
                    (if .gbps != null and ($k.gbps // 0) > 0 then r(.gbps / $k.gbps; 2) else null end)
                end),
            daemon_cpu_s_per_gbit: (
                if (.daemon_cpu_seconds // null) != null and (.received_bytes // 0) > 0
                then r(.daemon_cpu_seconds / (.received_bytes * 8 / 1e9); 3) else null end),
            daemon_cpu_percent: (
                if (.daemon_cpu_seconds // null) != null and (.wall_seconds // 0) > 0
                then r(100 * .daemon_cpu_seconds / .wall_seconds; 0) else null end),
            daemon_cpu_percent_by_daemon: (
                if (.daemon_cpu_seconds_by_daemon // null) != null and (.wall_seconds // 0) > 0
                then .daemon_cpu_seconds_by_daemon | map_values(r(100 * . / $row.wall_seconds; 0))
                else null end),
            daemon_cpu_ns_per_wire_packet: (
                if (.daemon_cpu_seconds // null) != null and (.gateway_wire_packets // 0) > 0
                then r(1e9 * .daemon_cpu_seconds / .gateway_wire_packets; 0) else null end),
            sku_capped: (
                if (.sku_cap_gbps // null) != null and .gbps != null
                then ((.gbps - .sku_cap_gbps) | if . < 0 then -. else . end) <= 0.1 * .sku_cap_gbps
                else null end)
          } ] as $R
    | def pick(p; d; m): ($R | map(select(.path == p and .direction == d and .mode == m and .streams == 1)) | first);
      def lat(p): ($pings | map(select(.path == p)) | first);
    [ $order[] as $p
        | select(any($R[]; .path == $p) or any($pings[]; .path == $p))
        | pick($p; "vnet->onprem"; "tcp") as $f
        | pick($p; "onprem->vnet"; "tcp") as $b
        | pick($p; "vnet->onprem"; "udp64") as $u
        | lat($p) as $l
        | {
            path: $p,
            peer: ($peers | any(. == $p)),
            gbps: $f.gbps,
            gbps_reverse: $b.gbps,
            mpps: $u.mpps,
            ping_p50_ms: $l.p50_ms,
            ping_p99_ms: $l.p99_ms,
            ping_loss_percent: $l.loss_percent,
            ratio_to_kernel_gbps: $f.ratio_to_kernel,
            ratio_to_kernel_mpps: $u.ratio_to_kernel,
            sku_cap_gbps: $f.sku_cap_gbps,
            cpu_s_per_gbit: $f.daemon_cpu_s_per_gbit,
            cpu_s_per_gbit_reverse: $b.daemon_cpu_s_per_gbit,
            cpu_note: (if $p == "kernel"
                then "not attributable: the forwarding runs in the iperf3 sender'"'"'s system calls"
                else null end)
          } ] as $S0
    | ($S0 | map(select(.path == $tp)) | first) as $T
    | [ $S0[] | . as $x | . + {
            vs_peers: ([ $peers[] as $q | ($S0 | map(select(.path == $q)) | first) as $Q
                | select($Q != null) | {key: $q, value: ratio($x.gbps; $Q.gbps)} ] | from_entries),
            tunnel_over_this_gbps: (if $x.peer then ratio($T.gbps; $x.gbps) else null end),
            tunnel_over_this_mpps: (if $x.peer then ratio($T.mpps; $x.mpps) else null end),
            target_5x: (if $x.peer and $T.gbps != null and ($x.gbps // 0) > 0
                then ($T.gbps / $x.gbps) >= 5 else null end)
          } ] as $S
    | {
        date: $date,
        machine: {nproc: $n, cpu: $cpu, kernel: $k, load_average_start: $ls, load_average_end: $le},
        iperf3: $ip,
        seconds: $t,
        pings: {count: $pc, interval_ms: 10},
        peer_versions: $pv,
        causeway_sku: "ErGwScale, 40 scale units (40 Gbit/s, 4 Mpps per direction)",
        tunnel: ("two causewayd (A in the VNet gateway role, B as the on-premises device), "
            + "a Vpn gateway of SKU VpnGw5 each (10 Gbit/s aggregate, \($cap) Gbit/s per tunnel), "
            + "one IPsec tunnel: ESP " + $tc + " in UDP 4500, manual SAs; measured twice, one "
            + "after the other: \"" + $tpc + "\" as configured (the SKU holds the tunnel to "
            + "\($cap) Gbit/s per direction), \"" + $tp + "\" the same with shaping = false in "
            + "both daemons'"'"' [[gateway]] (the SKU'"'"'s rates off: the data plane'"'"'s own "
            + "capacity; the peers are compared with this one); CPU figures of the tunnel rows "
            + "are both daemons together, packets are counted once (daemon A)"),
        tunnel_paths: {capped: $tpc, unshaped: $tp, compared: $tp, sku_cap_gbps: $cap},
        peers: ("gateway to gateway between the same four namespaces as the tunnel (hosts behind "
            + "veth pairs, the gateway namespaces forwarding): wireguard-go and boringtun-cli "
            + "(userspace WireGuard, ChaCha20-Poly1305, MTU 1420), strongSwan charon with "
            + "kernel-libipsec (IKEv2 PSK, ESP aes256gcm16, tunnel mode); CPU figures are both "
            + "ends'"'"' processes together"),
        summary: $S,
        target_5x: {
            target: ("Causeway tunnel (" + $tc + ", unshaped) at least 5x each comparison peer, TCP 1 stream VNet -> on-prem"),
            path: $tp,
            ratios: ([ $S[] | select(.peer) | {key: .path, value: .tunnel_over_this_gbps} ] | from_entries),
            met: ([ $S[] | select(.peer) ] as $ps | ($ps | length) > 0 and all($ps[]; .target_5x == true))
        },
        latency: $pings,
        rows: $R
      }' >"$out/results.json"

# The table of every test, as TSV.
table_rows() {
    jq -r '.rows[] | [
        .path, .direction, (if .mode == "udp64" then "udp64" else "tcp" end), (.streams | tostring),
        (if .gbps == null then "FAILED" else .gbps end),
        (.mpps // "-"), (.ratio_to_kernel // "-"), (.daemon_cpu_s_per_gbit // "-"),
        (if .daemon_cpu_percent_by_daemon != null and .daemon_cpu_percent != null then
            "\(.daemon_cpu_percent) (\(.daemon_cpu_percent_by_daemon | to_entries
                | map("\(.key) \(.value)") | join(", ")))"
         else (.daemon_cpu_percent // "-") end),
        (.daemon_cpu_ns_per_wire_packet // "-"),
        (if .sku_capped == true then "SKU-capped (\(.sku_cap_gbps) Gbit/s per tunnel)" else "" end)
      ] | map(tostring) | @tsv' "$out/results.json" | awk -F'\t' -v OFS='\t' '
        BEGIN { split("%.2f %.3f %.2f %.3f %.0f %.0f", fmt, " ") }
        { for (i = 5; i <= 10; i++) if ($i ~ /^-?[0-9.e+-]+$/ && $i != "-") $i = sprintf(fmt[i - 4], $i) }
        { print }'
}
header=(path direction mode streams "Gbit/s" Mpps "vs kernel" "CPU s/Gbit" "CPU %" "CPU ns/pkt" note)

# The summary, one row per path, as TSV.
summary_rows() {
    jq -r '.summary[] | [
        .path,
        (if .gbps == null then "FAILED" else .gbps end), (.gbps_reverse // "-"), (.mpps // "-"),
        (.ping_p50_ms // "-"), (.ping_p99_ms // "-"),
        (.ratio_to_kernel_gbps // "-"), (.ratio_to_kernel_mpps // "-"),
        (.tunnel_over_this_gbps // "-"), (.tunnel_over_this_mpps // "-"),
        (if .target_5x == null then "-" elif .target_5x then "met" else "missed" end),
        (if .path == "kernel" then "n/a" else (.cpu_s_per_gbit // "-") end)
      ] | map(tostring) | @tsv' "$out/results.json" | awk -F'\t' -v OFS='\t' '
        BEGIN { split("%.2f %.2f %.3f %.3f %.3f %.2f %.2f %.2fx %.2fx - %.3f", fmt, " ") }
        { for (i = 2; i <= 12; i++) if (fmt[i - 1] != "-" && $i != "-" && $i ~ /^-?[0-9.e+-]+$/) $i = sprintf(fmt[i - 1], $i) }
        { print }'
}
sheader=(path "Gbit/s" "Gbit/s rev" "Mpps" "p50 ms" "p99 ms" "vs kernel Gbit/s" "vs kernel Mpps"
    "tunnel/this Gbit/s" "tunnel/this Mpps" "5x" "CPU s/Gbit")

# target_line : the 5x check in one sentence.
target_line() {
    jq -r '.target_5x as $t | if ($t.ratios | length) == 0 then "5x target: no comparison peer measured"
        else "5x target (Causeway tunnel, unshaped, vs each peer, TCP 1 stream VNet -> on-prem): "
            + ([$t.ratios | to_entries[] | "\(.key) \(if .value == null then "n/a" else "\(.value)x" end)"] | join(", "))
            + (if $t.met then ": met" else ": NOT met" end) end' "$out/results.json"
}

# align : TSV on stdin as aligned columns; the first LEFT columns and the last one left-aligned.
align() {
    awk -F'\t' -v left="$1" '
        { for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NF; rows = NR }
        END {
            for (r = 1; r <= rows; r++) {
                line = ""
                for (i = 1; i <= n; i++) line = line sprintf("%" (i <= left || i == n ? "-" : "") w[i] "s  ", cell[r, i])
                sub(/ +$/, "", line); print line
            }
        }'
}

md_rows() {
    awk -F'\t' '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n" }'
}

{
    echo "# Causeway vs the kernel and other userspace VPNs"
    echo
    echo "Machine: $ncpu CPU(s), $cpu_model, Linux $kernel; load average $load_start at start, $load_end at end."
    echo "$iperf_version, ${time_s} s per test, one test at a time; $ping_count pings 10 ms apart per latency test."
    if ((${#peers[@]})); then
        echo "Peers: $(jq -r '.peer_versions | to_entries | map(.value) | join("; ")' "$out/results.json")."
    fi
    echo
    echo "## Summary"
    echo
    echo "One row per path. Gbit/s: one TCP stream VNet -> on-prem (rev: on-prem -> VNet), what the"
    echo "receiver got; Mpps: UDP 64-byte datagrams at full rate, received; p50 / p99: ping RTT through"
    echo "the idle path; \"vs kernel\": divided by the same run's kernel figure; \"tunnel/this\": Causeway's"
    echo "tunnel ($tunnel_cipher) without the SKU's rates (\"$tunnel_path\", shaping = false)"
    echo "divided by this peer, and whether that is the target of 5x (Gbit/s): VpnGw5 caps one tunnel at"
    echo "$tunnel_cap_gbps Gbit/s (\"$tunnel_path_capped\"), so with the SKU on the comparison would measure"
    echo "the SKU, not the data plane;"
    echo "CPU s/Gbit: the gateway processes' CPU time (both ends of a tunnel together) per Gbit received,"
    echo "VNet -> on-prem (the kernel's forwarding runs in the iperf3 sender's system calls: n/a)."
    echo
    printf '| %s ' "${sheader[@]}"
    echo '|'
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    summary_rows | md_rows
    echo
    target_line
    echo
    echo "## Every test"
    echo
    echo "Causeway: ErGwScale (40 scale units). Tunnel: two causewayd joined by one IPsec tunnel (ESP"
    echo "$tunnel_cipher in UDP, manual SAs), a VpnGw5 gateway each, measured twice: \"(VpnGw5)\" as"
    echo "configured, where the SKU caps one tunnel at $tunnel_cap_gbps Gbit/s per direction (\"SKU-capped\": within"
    echo "10% of it), and \"(unshaped)\" with shaping = false in both daemons (the SKU's rates off, the data"
    echo "plane's own capacity; fresh daemons and keys). Peers: gateway to gateway"
    echo "between the same namespaces. Gbit/s and Mpps are what the receiver got; \"vs kernel\" divides by"
    echo "the same-run kernel figure of the same mode and stream count (TCP: Gbit/s, UDP: Mpps). CPU:"
    echo "the gateway processes' utime + stime over the test (all threads; 100% = one core); tunnels:"
    echo "both ends together (A and B in brackets); CPU ns per wire packet: Causeway only (its counters)."
    echo
    printf '| %s ' "${header[@]}"
    echo '|'
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    table_rows | md_rows
} >"$out/results.md"

echo
{
    (IFS=$'\t'; echo "${header[*]}")
    table_rows
} | align 3
echo
{
    (IFS=$'\t'; echo "${sheader[*]}")
    summary_rows
} | align 1
echo
target_line

# --- the chart --------------------------------------------------------------------------------
if ((chart)); then
    log "drawing the chart ($chart_path)"
    if MPLBACKEND=Agg run_bg timeout 120 "$venv/bin/python" "$here/bench/chart.py" "$out/results.json" \
        "$out/bench.png" 8>&- && cp -- "$out/bench.png" "$chart_path"; then
        echo "chart: $chart_path"
    else
        log "warning: the chart could not be drawn"
        failures=$((failures + 1))
    fi
fi
echo "results: $out/results.json, $out/results.md (raw iperf3 JSON, pings, logs and counters in $out/raw)"
if ((failures)); then
    log "$failures test(s) failed; see above"
    exit 1
fi
