# shellcheck shell=bash
# Shared shell helpers for the Causeway lab scripts. Source it, do not run it:
#
#   . "$(dirname "$0")/lib.sh"
#
# Every helper is safe under `set -euo pipefail`. Messages go to stderr, so a script's stdout
# carries only its result (a number, a JSON line).

if [[ -n "${CAUSEWAY_LIB_SH:-}" ]]; then
    return 0
fi
CAUSEWAY_LIB_SH=1

# log MSG... : one line on stderr, prefixed with the script's name.
log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# die MSG... : log MSG on stderr and exit 1 (EXIT traps still run).
die() {
    printf '%s: error: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# need_root : die unless running as root (namespaces need CAP_SYS_ADMIN / CAP_NET_ADMIN).
need_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (network namespaces need it)"
}

# need_cmd CMD... : die naming the first command that is not on PATH.
need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' not found (run scripts/deps.sh)"
    done
}

# valid_name NAME : true when NAME is usable as (part of) a namespace name.
valid_name() {
    [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]]
}

# ns_exists NAME : true when the named network namespace exists.
ns_exists() {
    local n
    while read -r n _; do
        [[ "$n" == "$1" ]] && return 0
    done < <(ip netns list 2>/dev/null)
    return 1
}

# ns_add NAME : create network namespace NAME with loopback up. Fails if it already exists.
ns_add() {
    local name="$1"
    valid_name "$name" || die "invalid namespace name '$name'"
    ip netns add "$name" || die "cannot create namespace '$name'"
    ip -n "$name" link set lo up
}

# ns_kill_pids NAME : TERM, then KILL, every process that lives in namespace NAME.
ns_kill_pids() {
    local name="$1" pids i
    pids="$(ip netns pids "$name" 2>/dev/null || true)"
    [[ -n "$pids" ]] || return 0
    # shellcheck disable=SC2086 # word splitting of the pid list is intended
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        pids="$(ip netns pids "$name" 2>/dev/null || true)"
        [[ -n "$pids" ]] || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        [[ -n "$(ip netns pids "$name" 2>/dev/null || true)" ]] || return 0
        sleep 0.1
    done
    log "warning: processes still alive in namespace '$name': $(ip netns pids "$name" 2>/dev/null | tr '\n' ' ')"
}

# ns_del NAME : kill the processes inside namespace NAME, then delete it. No error if missing.
# Deleting a namespace also destroys the veth/TUN interfaces inside it (and veth peers elsewhere).
ns_del() {
    local name="$1"
    ns_exists "$name" || return 0
    ns_kill_pids "$name"
    ip netns del "$name" 2>/dev/null || {
        ns_exists "$name" && log "warning: could not delete namespace '$name'"
    }
    return 0
}

# ns_list_prefix PREFIX : print the namespaces whose name starts with PREFIX, one a line.
ns_list_prefix() {
    local prefix="$1" n
    [[ -n "$prefix" ]] || die "ns_list_prefix: empty prefix"
    while read -r n _; do
        [[ "$n" == "$prefix"* ]] && printf '%s\n' "$n"
    done < <(ip netns list 2>/dev/null)
    return 0
}

# ns_cleanup_prefix PREFIX : delete every namespace whose name starts with PREFIX (for example
# the leftovers of a killed run). Prints nothing when there is nothing to delete.
ns_cleanup_prefix() {
    local prefix="$1" n
    [[ -n "$prefix" ]] || die "ns_cleanup_prefix: refusing an empty prefix"
    for n in $(ns_list_prefix "$prefix"); do
        log "removing namespace $n"
        ns_del "$n"
    done
}

# wait_for [-n TRIES] [-s SECONDS] CMD... : run CMD until it succeeds, at most TRIES times
# (default 50) with SECONDS between tries (default 0.1). Returns CMD's success, 1 after the last
# failed try. CMD's output is discarded.
wait_for() {
    local tries=50 pause=0.1 i
    while [[ $# -gt 0 ]]; do
        case "$1" in
            -n) tries="$2"; shift 2 ;;
            -s) pause="$2"; shift 2 ;;
            --) shift; break ;;
            *) break ;;
        esac
    done
    [[ $# -gt 0 ]] || die "wait_for: no command"
    for ((i = 1; i <= tries; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        ((i < tries)) && sleep "$pause"
    done
    return 1
}

# iperf3_check JSONFILE : die with iperf3's own message if the run failed.
iperf3_check() {
    local f="$1" err
    [[ -s "$f" ]] || die "iperf3 result '$f' is missing or empty"
    jq -e . "$f" >/dev/null 2>&1 || die "iperf3 result '$f' is not JSON: $(head -c 200 "$f")"
    err="$(jq -r '.error // empty' "$f")"
    [[ -z "$err" ]] || die "iperf3: $err"
}

# iperf3_bps JSONFILE : print the bits per second the *receiver* got in an `iperf3 -J` run
# (client or server JSON, TCP or UDP), as an integer: end.sum_received, which iperf3 (3.12 here)
# fills from the receiving side's own byte count for TCP and UDP alike. (end.sum of a UDP client
# run is the *sender's* rate.) Older iperf3 without a UDP sum_received: computed from the
# receiver's packet counts in end.sum.
iperf3_bps() {
    local f="$1"
    iperf3_check "$f"
    jq -er '
        if .end.sum_received.bits_per_second then .end.sum_received.bits_per_second
        elif .start.test_start.protocol == "UDP" and (.end.sum.seconds // 0) > 0 then
            .end.sum as $s
            | (($s.packets - $s.lost_packets) * .start.test_start.blksize * 8) / $s.seconds
        else error("no receiver rate") end
        | floor' "$f" || die "no receiver rate in '$f'"
}

# iperf3_gbps JSONFILE : the receiver rate of iperf3_bps in Gbit/s, two decimals.
iperf3_gbps() {
    local bps
    bps="$(iperf3_bps "$1")"
    awk -v b="$bps" 'BEGIN { printf "%.2f\n", b / 1e9 }'
}

# iperf3_udp_rx_pps JSONFILE : packets per second the receiver got in a UDP `iperf3 -J` run, as
# an integer: received bytes / datagram length / seconds, from end.sum_received (the receiver's own
# count; its "packets" field is the sender's total, lost_packets the receiver's gap count).
# Fallback for older iperf3: (packets - lost_packets) / seconds of end.sum.
iperf3_udp_rx_pps() {
    local f="$1"
    iperf3_check "$f"
    jq -er '
        .start.test_start.blksize as $len
        | if .start.test_start.protocol != "UDP" then error("not a UDP run")
          elif (.end.sum_received.seconds // 0) > 0 then
            .end.sum_received.bytes / $len / .end.sum_received.seconds
          elif (.end.sum.seconds // 0) > 0 then
            (.end.sum.packets - .end.sum.lost_packets) / .end.sum.seconds
          else error("no duration") end
        | floor' "$f" || die "no UDP receive counts in '$f'"
}

# iperf3_udp_loss JSONFILE : the receiver's loss percentage of a UDP run, two decimals.
iperf3_udp_loss() {
    local f="$1"
    iperf3_check "$f"
    jq -er '(.end.sum_received // .end.sum).lost_percent * 100 | round / 100' "$f" \
        || die "no UDP loss figure in '$f'"
}
