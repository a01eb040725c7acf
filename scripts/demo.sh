#!/usr/bin/env bash
# demo.sh: the Causeway lab demo, end to end. As root on a fresh machine it installs what it needs,
# builds the daemon and CLI, creates the lab namespaces (a VNet host and an on-premises host),
# runs causewayd with configs/lab-er.toml (an ExpressRoute gateway, Standard SKU), shows pings,
# ICMP errors from the gateway and iperf3 through it, then the same gateway as HighPerformance;
# then a VPN: two causewayd Vpn gateways (configs/lab-vpn-a.toml, lab-vpn-b.toml, VpnGw1) joined
# by a veth underlay, negotiating their IPsec tunnel with IKEv2, with ping and iperf3 through it
# and a look at the underlay.
# It prints what it measured and the daemons' counters, and cleans everything up.
#
# Usage: scripts/demo.sh [--time SECONDS]     (iperf3 run length, default 5, 1..30)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
cd "$here/.."

secs=5
if [[ "${1:-}" == "--time" ]]; then
    secs="${2:?--time needs a value}"
fi
if ! [[ "$secs" =~ ^[0-9]+$ ]] || ((secs < 1 || secs > 30)); then
    die "--time must be 1..30"
fi

need_root
export PATH="$HOME/.cargo/bin:$PATH"
"$here/deps.sh"

log "building causewayd and causeway (release)"
cargo build --release -q -p causewayd -p causeway
bin="$PWD/target/release"

work="$(mktemp -d /tmp/causeway-demo.XXXXXX)"
daemon_pid=""
daemon_b_pid=""
cleanup() {
    set +e
    for pid in "$daemon_pid" "$daemon_b_pid"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    "$here/lab.sh" down lab >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$here/lab.sh" up lab >/dev/null
VNET=lab-vnet
ONPREM=lab-onprem

start_daemon() { # CONFIG [NETNS]
    local cfg="$1"
    if [[ -n "${2:-}" ]]; then
        ip netns exec "$2" "$bin/causewayd" --config "$cfg" 2>>"$work/daemon.log" &
    else
        "$bin/causewayd" --config "$cfg" 2>>"$work/daemon.log" &
    fi
    daemon_pid=$!
    sock=$(sed -n 's/^socket *= *"\(.*\)"/\1/p' "$cfg")
    wait_for -n 100 "$bin/causeway" --socket "$sock" status ||
        { cat "$work/daemon.log" >&2; die "causewayd did not start"; }
}

stop_daemon() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=""
}

iperf() { # [-to NS ADDR] ARGS... -> prints receiver Mbit/s
    local server_ns="$ONPREM" dst=10.2.0.10
    if [[ "${1:-}" == "-to" ]]; then
        server_ns="$2"
        dst="$3"
        shift 3
    fi
    ip netns exec "$server_ns" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
    local srv=$!
    sleep 0.3
    ip netns exec "$VNET" iperf3 -c "$dst" -p 5201 -t "$secs" -J "$@" >"$work/iperf.json" || true
    wait "$srv" 2>/dev/null || true
    iperf3_check "$work/iperf.json"
    jq -r '.end.sum_received.bits_per_second / 1e6 | floor' "$work/iperf.json"
}

ping_ok() { # NS DST -> "ok (rtt)" or "FAILED"
    local out
    if out=$(ip netns exec "$1" ping -n -c 3 -i 0.2 -W 1 "$2" 2>&1); then
        echo "ok  $(echo "$out" | sed -n 's/^rtt .* = \([^/]*\)\/\([^/]*\)\/.*/avg \2 ms/p')"
    else
        echo "FAILED"
    fi
}

cfg="configs/lab-er.toml"
sock=""
start_daemon "$cfg"
echo
echo "== causeway status"
"$bin/causeway" --socket "$sock" status
echo
echo "== ping through the gateway"
printf '  %-44s %s\n' "VNet host -> on-premises 10.2.0.10" "$(ping_ok $VNET 10.2.0.10)"
printf '  %-44s %s\n' "VNet host -> on-premises fd00:2::10" "$(ping_ok $VNET fd00:2::10)"
printf '  %-44s %s\n' "on-premises -> VNet host 10.1.0.10" "$(ping_ok $ONPREM 10.1.0.10)"
printf '  %-44s %s\n' "on-premises -> VNet host fd00:1::10" "$(ping_ok $ONPREM fd00:1::10)"
printf '  %-44s %s\n' "VNet host -> the gateway 10.1.255.4" "$(ping_ok $VNET 10.1.255.4)"
echo
echo "== ICMP errors the gateway sends"
ip netns exec $VNET ping -n -c 1 -W 1 -t 1 10.2.0.10 | grep -m1 "From" | sed 's/^/  ttl=1:        /' || true
ip netns exec $VNET ip route add 10.9.0.0/16 dev cw-vnet0
ip netns exec $VNET ping -n -c 1 -W 1 10.9.0.1 | grep -m1 "From" | sed 's/^/  no route:     /' || true
echo
echo "== iperf3, one TCP stream, ${secs} s each"
std_up=$(iperf)
std_down=$(iperf -R)
printf '  %-44s %6s Mbit/s  (SKU: 1000 Mbit/s)\n' "Standard, VNet -> on-premises" "$std_up"
printf '  %-44s %6s Mbit/s\n' "Standard, on-premises -> VNet" "$std_down"
echo
echo "== causeway stats"
"$bin/causeway" --socket "$sock" stats
stop_daemon

sed 's/^sku = "Standard"/sku = "HighPerformance"/' "$cfg" >"$work/lab-er-hp.toml"
start_daemon "$work/lab-er-hp.toml"
hp_up=$(iperf)
printf '\n  %-44s %6s Mbit/s  (SKU: 2000 Mbit/s)\n' "HighPerformance, VNet -> on-premises" "$hp_up"
hp_drops=$("$bin/causeway" --socket "$sock" stats -o json | jq '.gateways[0].egress.drops.shaped_bps')
stop_daemon


echo
echo "== VPN: two Vpn gateways (VpnGw1) and an IPsec tunnel over a veth underlay"
for ns in lab-gwa lab-gwb lab-site; do ns_add "$ns"; done
ip -n lab-gwa link add ula type veth peer name ulb netns lab-gwb
ip -n lab-gwa addr add 192.0.2.1/24 dev ula && ip -n lab-gwa link set ula up
ip -n lab-gwb addr add 192.0.2.2/24 dev ulb && ip -n lab-gwb link set ulb up
start_daemon configs/lab-vpn-b.toml lab-gwb
daemon_b_pid=$daemon_pid
ip netns exec lab-gwa tcpdump --immediate-mode -i ula -n -c 6 -w "$work/underlay.pcap" \
    'udp port 500 or udp port 4500' 2>/dev/null &
dump=$!
sleep 0.5
start_daemon configs/lab-vpn-a.toml lab-gwa
# IKEv2 negotiates the child SA: wait until the tunnel has one.
tunnel_up() {
    "$bin/causeway" --socket "$sock" status -o json |
        jq -e '.gateways[0].connections[0].tunnel.esp.out_spi != 0' >/dev/null
}
wait_for -n 100 tunnel_up || die "the IKE negotiation did not complete"
echo "  IKEv2: $("$bin/causeway" --socket "$sock" status -o json |
    jq -r '.gateways[0].connections[0].tunnel | "\(.ike.state), IKE \(.ike.ike_algorithms), ESP \(.ike.esp_algorithms)"')"
printf '  %-44s %s\n' "VNet host -> on-premises 10.3.0.10 (tunnel)" "$(ping_ok $VNET 10.3.0.10)"
printf '  %-44s %s\n' "VNet host -> on-premises fd00:3::10 (tunnel)" "$(ping_ok $VNET fd00:3::10)"
wait "$dump" 2>/dev/null || true
echo "  on the underlay (tcpdump): IKE on 500, then IKE and ESP on 4500"
tcpdump -n -r "$work/underlay.pcap" 2>/dev/null | sed 's/^/    /'
vpn_up=$(iperf -to lab-site 10.3.0.10)
vpn_down=$(iperf -to lab-site 10.3.0.10 -R)
printf '  %-44s %6s Mbit/s  (SKU: 650 Mbit/s)\n' "VpnGw1 tunnel, VNet -> on-premises" "$vpn_up"
printf '  %-44s %6s Mbit/s\n' "VpnGw1 tunnel, on-premises -> VNet" "$vpn_down"
echo
echo "== causeway stats (gateway A)"
"$bin/causeway" --socket "$sock" stats
stop_daemon
daemon_pid=$daemon_b_pid
daemon_b_pid=""
stop_daemon

echo
echo "== measured"
awk -v a="$std_up" -v b="$std_down" -v c="$hp_up" -v d="$vpn_up" -v e="$vpn_down" 'BEGIN {
  printf "  Standard:        %d / %d Mbit/s (%.1f%% / %.1f%% of the SKU rate)\n", a, b, a / 10, b / 10
  printf "  HighPerformance: %d Mbit/s (%.1f%% of the SKU rate)\n", c, c / 20
  printf "  VpnGw1 tunnel:   %d / %d Mbit/s (%.1f%% / %.1f%% of the SKU rate)\n", d, e, d / 6.5, e / 6.5
}'
echo "  shaped (dropped by the HighPerformance shaper): $hp_drops packets"
echo "  (iperf3 reports TCP payload; the SKU rate counts IP bytes, so about 96.5% is the ceiling)"
echo
log "demo done; cleaning up"
