#!/usr/bin/env bash
# kernel-baseline.sh: the comparison baseline for Causeway. Measures the kernel's own IP forwarding
# between network namespaces, with the lab's addressing, using iperf3:
#
#   ${P}-vnet                       ${P}-rtr (ip_forward v4+v6)                      ${P}-onprem
#   veth-rtr 10.1.0.10/16  <--->  veth-vnet   10.1.255.254/16 fd00:1::1/64
#            fd00:1::10/64        veth-onprem 10.2.255.254/16 fd00:2::1/64  <--->  veth-rtr 10.2.0.10/16
#                                                                                           fd00:2::10/64
#
# Usage: kernel-baseline.sh [--time SECONDS] [--streams N] [--prefix P] [--udp64] [--ipv6] [--json]
#
#   --time S     test length, 1..60 seconds (default 10)
#   --streams N  parallel iperf3 streams, 1..64 (default 1)
#   --prefix P   namespace name prefix (default kb); ${P}-vnet, ${P}-rtr, ${P}-onprem left over
#                by a killed run are removed first
#   --udp64      UDP with 64-byte payloads at unlimited rate (iperf3 -u -b 0 -l 64); reports the
#                packets per second the receiver actually got (Mpps) instead of TCP Gbit/s
#   --ipv6       run iperf3 over IPv6 (fd00:2::10) instead of IPv4 (10.2.0.10)
#   --save DIR   also keep iperf3's raw JSON there (DIR/client.json, DIR/server.json)
#   --json       print one JSON line instead of a sentence:
#                TCP:   {"path":"kernel","mode":"tcp","streams":N,"seconds":T,"gbps":X}
#                UDP64: {"path":"kernel","mode":"udp64","streams":N,"seconds":T,"mpps":X,"gbps":Y,"loss_percent":Z}
#
# All traffic stays inside the three namespaces it creates; they are always removed on exit
# (success, failure, Ctrl-C, SIGTERM). Needs root, iproute2, iperf3, jq, ping (scripts/deps.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

time_s=10
streams=1
prefix=kb
json=0
udp64=0
ipv6=0
save=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --time) [[ $# -ge 2 ]] || usage; time_s="$2"; shift 2 ;;
        --time=*) time_s="${1#*=}"; shift ;;
        --streams) [[ $# -ge 2 ]] || usage; streams="$2"; shift 2 ;;
        --streams=*) streams="${1#*=}"; shift ;;
        --prefix) [[ $# -ge 2 ]] || usage; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --json) json=1; shift ;;
        --udp64) udp64=1; shift ;;
        --ipv6) ipv6=1; shift ;;
        --save) [[ $# -ge 2 ]] || usage; save="$2"; shift 2 ;;
        --save=*) save="${1#*=}"; shift ;;
        -h | --help) usage 0 ;;
        *) log "unknown argument '$1'"; usage ;;
    esac
done
if ! [[ "$time_s" =~ ^[1-9][0-9]?$ ]] || ((time_s > 60)); then
    die "--time must be a whole number of seconds, 1..60 (got '$time_s')"
fi
if ! [[ "$streams" =~ ^[1-9][0-9]?$ ]] || ((streams > 64)); then
    die "--streams must be 1..64 (got '$streams')"
fi
valid_name "$prefix-onprem" || die "invalid --prefix '$prefix' (letters, digits, _ . -; short)"

need_root
need_cmd ip iperf3 jq ping flock timeout

ns_vnet="$prefix-vnet"
ns_rtr="$prefix-rtr"
ns_onprem="$prefix-onprem"

# One run per prefix at a time: the lock is held until this process exits (even if killed; the
# iperf3 children do not inherit it), so removing stale namespaces below never destroys a live
# run's namespaces.
lockdir=/run/lock
[[ -d "$lockdir" && -w "$lockdir" ]] || lockdir=/tmp
exec 9>"$lockdir/causeway-kb-$prefix.lock"
flock -n 9 || die "another kernel-baseline run with prefix '$prefix' is in progress"

tmp=""
cleaning=0
cleanup() {
    local rc=$? n
    ((cleaning)) && return 0
    cleaning=1
    trap '' INT TERM HUP
    ns_del "$ns_vnet"
    ns_del "$ns_onprem"
    ns_del "$ns_rtr"
    [[ -n "$tmp" ]] && rm -rf -- "$tmp"
    for n in "$ns_vnet" "$ns_rtr" "$ns_onprem"; do
        ns_exists "$n" && log "warning: namespace $n left behind"
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Leftovers of an earlier run with this prefix that was killed before it could clean up. Only
# this script's three names: a run with prefix "kb" must not touch another one's "kb-x-*".
for n in "$ns_vnet" "$ns_rtr" "$ns_onprem"; do
    if ns_exists "$n"; then
        log "removing stale namespace $n"
        ns_del "$n"
    fi
done

# Scratch files (iperf3 JSON) under a per-prefix name, so that a killed run's are replaced too.
if [[ -d /run && -w /run ]]; then
    tmp="/run/causeway-kb-$prefix"
    rm -rf -- "$tmp"
    mkdir -m 0700 -- "$tmp"
else
    tmp="$(mktemp -d /tmp/causeway-kb.XXXXXX)"
fi

# --- topology ---------------------------------------------------------------------------------
ns_add "$ns_vnet"
ns_add "$ns_rtr"
ns_add "$ns_onprem"

# veth pairs are created directly inside the namespaces: no interface ever appears in the root one.
ip -n "$ns_vnet" link add veth-rtr type veth peer name veth-vnet netns "$ns_rtr"
ip -n "$ns_rtr" link add veth-onprem type veth peer name veth-rtr netns "$ns_onprem"

ip netns exec "$ns_rtr" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

ip -n "$ns_vnet" addr add 10.1.0.10/16 dev veth-rtr
ip -n "$ns_vnet" addr add fd00:1::10/64 dev veth-rtr nodad
ip -n "$ns_rtr" addr add 10.1.255.254/16 dev veth-vnet
ip -n "$ns_rtr" addr add fd00:1::1/64 dev veth-vnet nodad
ip -n "$ns_rtr" addr add 10.2.255.254/16 dev veth-onprem
ip -n "$ns_rtr" addr add fd00:2::1/64 dev veth-onprem nodad
ip -n "$ns_onprem" addr add 10.2.0.10/16 dev veth-rtr
ip -n "$ns_onprem" addr add fd00:2::10/64 dev veth-rtr nodad

ip -n "$ns_vnet" link set veth-rtr up
ip -n "$ns_rtr" link set veth-vnet up
ip -n "$ns_rtr" link set veth-onprem up
ip -n "$ns_onprem" link set veth-rtr up

ip -n "$ns_vnet" route add 10.2.0.0/16 via 10.1.255.254
ip -n "$ns_vnet" -6 route add fd00:2::/64 via fd00:1::1
ip -n "$ns_onprem" route add 10.1.0.0/16 via 10.2.255.254
ip -n "$ns_onprem" -6 route add fd00:1::/64 via fd00:2::1

wait_for -n 30 ip netns exec "$ns_vnet" ping -c1 -W1 10.2.0.10 \
    || die "no IPv4 path ${ns_vnet} -> ${ns_onprem} through ${ns_rtr}"
wait_for -n 30 ip netns exec "$ns_vnet" ping -6 -c1 -W1 fd00:2::10 \
    || die "no IPv6 path ${ns_vnet} -> ${ns_onprem} through ${ns_rtr}"

# --- measurement ------------------------------------------------------------------------------
if ((ipv6)); then target=fd00:2::10; else target=10.2.0.10; fi
port=$((20000 + $$ % 20000))
srv_json="$tmp/server.json"
cli_json="$tmp/client.json"

# One-off server (-1): it exits after one test; timeout bounds it if the client never comes.
ip netns exec "$ns_onprem" timeout $((time_s + 40)) \
    iperf3 -s -1 -p "$port" -J >"$srv_json" 2>"$tmp/server.err" 9>&- &
srv_pid=$!
port_listening() {
    [[ -n "$(ip netns exec "$ns_onprem" ss -Hltn "sport = :$port")" ]]
}
wait_for -n 50 port_listening || die "iperf3 server did not start: $(cat "$tmp/server.err")"

client_args=(-c "$target" -p "$port" -t "$time_s" -P "$streams" -J)
if ((udp64)); then
    client_args+=(-u -b 0 -l 64)
    mode=udp64
else
    mode=tcp
fi
log "kernel forwarding ${ns_vnet} -> ${ns_rtr} -> ${ns_onprem}: $mode, $streams stream(s), ${time_s}s, to $target"

# The client runs in the background so that a signal is handled at once, not after the test.
ip netns exec "$ns_vnet" timeout $((time_s + 30)) iperf3 "${client_args[@]}" \
    >"$cli_json" 2>"$tmp/client.err" 9>&- &
cli_pid=$!
cli_rc=0
wait "$cli_pid" || cli_rc=$?
if ((cli_rc != 0)); then
    msg="$(jq -r '.error // empty' "$cli_json" 2>/dev/null || true)"
    die "iperf3 client failed (exit $cli_rc): ${msg:-$(cat "$tmp/client.err")}"
fi
iperf3_check "$cli_json"

# The server writes its JSON when the test ends; give it a moment to finish.
srv_rc=0
wait "$srv_pid" || srv_rc=$?

# Prefer the receiving process's own report (server JSON); the client's sum_received carries the
# same receiver-side counts and is the fallback.
result_json="$cli_json"
if ((srv_rc == 0)) && jq -e '.end.sum_received' "$srv_json" >/dev/null 2>&1; then
    result_json="$srv_json"
else
    log "warning: no usable server JSON (exit $srv_rc); using the client's receiver figures"
fi

if [[ -n "$save" ]]; then
    mkdir -p -- "$save"
    cp -- "$cli_json" "$save/client.json"
    [[ -s "$srv_json" ]] && cp -- "$srv_json" "$save/server.json"
    log "raw iperf3 JSON saved in $save"
fi

gbps="$(iperf3_gbps "$result_json")"
if ((udp64)); then
    pps="$(iperf3_udp_rx_pps "$result_json")"
    mpps="$(awk -v p="$pps" 'BEGIN { printf "%.3f\n", p / 1e6 }')"
    loss="$(iperf3_udp_loss "$result_json")"
    sent_pps="$(jq -r '.end.sum_sent // .end.sum | (.packets / .seconds) | floor' "$cli_json")"
    log "sender offered $(awk -v p="$sent_pps" 'BEGIN { printf "%.3f", p / 1e6 }') Mpps; receiver lost ${loss}%"
    if ((json)); then
        jq -cn --argjson s "$streams" --argjson t "$time_s" --argjson m "$mpps" \
            --argjson g "$gbps" --argjson l "$loss" \
            '{path:"kernel",mode:"udp64",streams:$s,seconds:$t,mpps:$m,gbps:$g,loss_percent:$l}'
    else
        printf 'kernel forwarding, udp64, %d stream(s), %ds: %s Mpps received (%s Gbit/s of payload, %s%% lost)\n' \
            "$streams" "$time_s" "$mpps" "$gbps" "$loss"
    fi
else
    retr="$(jq -r '.end.sum_sent.retransmits // "n/a"' "$cli_json")"
    log "TCP retransmits: $retr"
    if ((json)); then
        jq -cn --argjson s "$streams" --argjson t "$time_s" --argjson g "$gbps" \
            '{path:"kernel",mode:"tcp",streams:$s,seconds:$t,gbps:$g}'
    else
        printf 'kernel forwarding, tcp, %d stream(s), %ds: %s Gbit/s received\n' \
            "$streams" "$time_s" "$gbps"
    fi
fi
