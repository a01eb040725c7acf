# shellcheck shell=bash disable=SC2154,SC2034
# (SC2154, SC2034: globals shared with scripts/bench.sh, which sources this file.)
# peers.sh: the comparison peers of scripts/bench.sh, set up gateway to gateway. Sourced by
# bench.sh (after scripts/lib.sh), not run: it uses bench.sh's globals `tmp` (this run's
# temporary directory), `out` (target/bench), `daemon_pids` (every process stopped on exit) and
# `started_pid`, and bench.sh's traps remove everything it creates.
#
# The topology of every peer (the same four namespaces as Causeway's tunnel path):
#
#   VNET               GWA                                          GWB               ONPREM
#   eth0 10.1.0.10/16 -- lan 10.1.0.1/16 | ul-a 192.0.2.1/24 == ul-b 192.0.2.2/24 | lan 10.3.0.1/16 -- eth0 10.3.0.10/16
#   default via 10.1.0.1    ip_forward=1, the tunnel's A end          B end, ip_forward=1    default via 10.3.0.1
#
# The tunnel carries 10.1.0.0/16 <-> 10.3.0.0/16 between GWA and GWB over the underlay veth pair:
#   - wireguard-go / boringtun: a userspace WireGuard interface in GWA and in GWB (a TUN created
#     by the peer's process, configured with `wg set` through its UAPI socket
#     /var/run/wireguard/IFNAME.sock), MTU 1420, a route to the other side's prefix through it;
#   - strongSwan: charon with kernel-libipsec in GWA and GWB (scripts/strongswan.sh: own
#     strongswan.conf and vici socket each, TUN ipsec0, routes in table 220), IKEv2 with a PSK,
#     tunnel mode, ESP aes256gcm16 (IKE aes256gcm16-prfsha256-ecp256), A initiates.
# Unlike Causeway, whose TUNs are in VNET and ONPREM themselves, these have a veth hop and one
# kernel forwarding step on each side (done in the softirq of whichever process sends).

# The kernel path for the latency test: scripts/kernel-baseline.sh's topology and addressing
# (VNET 10.1.0.10 -- RTR 10.1.255.254 | 10.2.255.254 -- ONPREM 10.2.0.10), IPv4 only.
# kernel_topology VNET RTR ONPREM : 1 with a message on failure.
kernel_topology() {
    local vnet="$1" rtr="$2" onprem="$3" n
    for n in "$vnet" "$rtr" "$onprem"; do
        (ns_add "$n") || return 1
    done
    if ! { ip -n "$vnet" link add veth-rtr type veth peer name veth-vnet netns "$rtr" \
        && ip -n "$rtr" link add veth-onprem type veth peer name veth-rtr netns "$onprem" \
        && ip netns exec "$rtr" sysctl -qw net.ipv4.ip_forward=1 \
        && ip -n "$vnet" addr add 10.1.0.10/16 dev veth-rtr \
        && ip -n "$rtr" addr add 10.1.255.254/16 dev veth-vnet \
        && ip -n "$rtr" addr add 10.2.255.254/16 dev veth-onprem \
        && ip -n "$onprem" addr add 10.2.0.10/16 dev veth-rtr \
        && ip -n "$vnet" link set veth-rtr up \
        && ip -n "$rtr" link set veth-vnet up \
        && ip -n "$rtr" link set veth-onprem up \
        && ip -n "$onprem" link set veth-rtr up \
        && ip -n "$vnet" route add 10.2.0.0/16 via 10.1.255.254 \
        && ip -n "$onprem" route add 10.1.0.0/16 via 10.2.255.254; }; then
        log "cannot build the kernel path $vnet -- $rtr -- $onprem"
        return 1
    fi
    wait_for -n 30 -s 0.1 timeout 3 ip netns exec "$vnet" ping -c1 -W1 10.2.0.10 \
        || { log "no path $vnet -> $onprem through $rtr"; return 1; }
}

# gw_topology VNET GWA GWB ONPREM : the four namespaces above, without the tunnel; 1 on failure.
gw_topology() {
    local vnet="$1" gwa="$2" gwb="$3" onprem="$4" n
    for n in "$vnet" "$gwa" "$gwb" "$onprem"; do
        (ns_add "$n") || return 1
    done
    if ! { ip -n "$gwa" link add ul-a type veth peer name ul-b netns "$gwb" \
        && ip -n "$vnet" link add eth0 type veth peer name lan netns "$gwa" \
        && ip -n "$onprem" link add eth0 type veth peer name lan netns "$gwb" \
        && ip -n "$gwa" addr add 192.0.2.1/24 dev ul-a \
        && ip -n "$gwb" addr add 192.0.2.2/24 dev ul-b \
        && ip -n "$vnet" addr add 10.1.0.10/16 dev eth0 \
        && ip -n "$gwa" addr add 10.1.0.1/16 dev lan \
        && ip -n "$onprem" addr add 10.3.0.10/16 dev eth0 \
        && ip -n "$gwb" addr add 10.3.0.1/16 dev lan \
        && ip -n "$gwa" link set ul-a up \
        && ip -n "$gwb" link set ul-b up \
        && ip -n "$gwa" link set lan up \
        && ip -n "$gwb" link set lan up \
        && ip -n "$vnet" link set eth0 up \
        && ip -n "$onprem" link set eth0 up \
        && ip -n "$vnet" route add default via 10.1.0.1 \
        && ip -n "$onprem" route add default via 10.3.0.1 \
        && ip netns exec "$gwa" sysctl -qw net.ipv4.ip_forward=1 \
        && ip netns exec "$gwb" sysctl -qw net.ipv4.ip_forward=1; }; then
        log "cannot build the gateway-to-gateway topology"
        return 1
    fi
    wait_for -n 30 -s 0.1 timeout 3 ip netns exec "$gwa" ping -c1 -W1 192.0.2.2 \
        || { log "underlay 192.0.2.1 -> 192.0.2.2 does not answer"; return 1; }
    wait_for -n 30 -s 0.1 timeout 3 ip netns exec "$vnet" ping -c1 -W1 10.1.0.1 \
        || { log "$vnet cannot reach its gateway 10.1.0.1"; return 1; }
    wait_for -n 30 -s 0.1 timeout 3 ip netns exec "$onprem" ping -c1 -W1 10.3.0.1 \
        || { log "$onprem cannot reach its gateway 10.3.0.1"; return 1; }
}

# gw_check_path VNET ONPREM WHAT : a ping each way between the hosts; 1 with a message if not.
gw_check_path() {
    wait_for -n 30 -s 0.2 timeout 3 ip netns exec "$1" ping -c1 -W1 10.3.0.10 \
        || { log "no path $1 -> $2 through $3"; return 1; }
    wait_for -n 10 -s 0.2 timeout 3 ip netns exec "$2" ping -c1 -W1 10.1.0.10 \
        || { log "no path $2 -> $1 through $3"; return 1; }
    log "ping through $3 works both ways"
}

# wg_sock IFNAME : the UAPI socket of a userspace WireGuard interface (wireguard-go and
# boringtun-cli both create it there; `wg` looks there when the kernel has no such interface).
wg_sock() {
    printf '/var/run/wireguard/%s.sock\n' "$1"
}

# wg_start KIND NETNS IFNAME LOG : starts wireguard-go or boringtun-cli in the foreground (in
# the background of this shell) inside NETNS, creating TUN IFNAME there; waits up to 10 s for its
# UAPI socket to answer. Its pid is in started_pid and daemon_pids. 1 with a message on failure.
wg_start() {
    local kind="$1" ns="$2" ifname="$3" logf="$4" pid i
    rm -f -- "$(wg_sock "$ifname")"
    case "$kind" in
        # -f: no fork, so that the pid is the process that does the work. Its default log level
        # (error) says nothing on the packet path.
        wireguard-go)
            ip netns exec "$ns" wireguard-go -f "$ifname" >"$logf" 2>&1 8>&- </dev/null &
            ;;
        # --disable-drop-privileges: it would switch to the invoking sudo user, and there is
        # none (root's own run). Its default 4 worker threads are kept.
        boringtun)
            ip netns exec "$ns" boringtun-cli -f --disable-drop-privileges "$ifname" \
                >"$logf" 2>&1 8>&- </dev/null &
            ;;
        *) log "wg_start: unknown kind '$kind'"; return 1 ;;
    esac
    pid=$!
    daemon_pids+=("$pid")
    started_pid="$pid"
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$kind ($ifname) exited: $(tail -n 20 "$logf")"
            return 1
        fi
        if [[ -S "$(wg_sock "$ifname")" ]] \
            && timeout 3 ip netns exec "$ns" wg show "$ifname" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    log "$kind ($ifname) did not answer on $(wg_sock "$ifname") within 10 s: $(tail -n 20 "$logf")"
    return 1
}

# wg_peer_setup KIND VNET GWA GWB ONPREM IF_A IF_B RAWDIR : the topology and a WireGuard tunnel
# between GWA (IF_A) and GWB (IF_B) made by KIND (wireguard-go | boringtun); fresh keys each
# run (not kept). Sets wg_pid_a, wg_pid_b. 1 on failure.
wg_peer_setup() {
    local kind="$1" vnet="$2" gwa="$3" gwb="$4" onprem="$5" ifa="$6" ifb="$7" raw="$8"
    local keys="$tmp/wg-keys" pub_a pub_b
    wg_pid_a=""
    wg_pid_b=""
    gw_topology "$vnet" "$gwa" "$gwb" "$onprem" || return 1
    (umask 077 && mkdir -p -- "$keys" \
        && wg genkey >"$keys/a.key" && wg genkey >"$keys/b.key") \
        || { log "wg genkey failed"; return 1; }
    if ! { pub_a="$(wg pubkey <"$keys/a.key")" && pub_b="$(wg pubkey <"$keys/b.key")"; }; then
        log "wg pubkey failed"
        return 1
    fi
    log "starting $kind in $gwa ($ifa) and $gwb ($ifb)"
    wg_start "$kind" "$gwa" "$ifa" "$raw/$kind-a.log" || return 1
    wg_pid_a="$started_pid"
    wg_start "$kind" "$gwb" "$ifb" "$raw/$kind-b.log" || return 1
    wg_pid_b="$started_pid"
    if ! { timeout 10 ip netns exec "$gwa" wg set "$ifa" private-key "$keys/a.key" listen-port 51820 \
            peer "$pub_b" endpoint 192.0.2.2:51820 allowed-ips 10.3.0.0/16 \
        && timeout 10 ip netns exec "$gwb" wg set "$ifb" private-key "$keys/b.key" listen-port 51820 \
            peer "$pub_a" endpoint 192.0.2.1:51820 allowed-ips 10.1.0.0/16; }; then
        log "wg set failed ($kind)"
        return 1
    fi
    # MTU 1420, wg-quick's default for an IPv4 underlay with MTU 1500 (boringtun would leave
    # its TUN at 1500: every full-sized packet would then be fragmented on the underlay).
    if ! { ip -n "$gwa" link set dev "$ifa" mtu 1420 up \
        && ip -n "$gwb" link set dev "$ifb" mtu 1420 up \
        && ip -n "$gwa" route add 10.3.0.0/16 dev "$ifa" \
        && ip -n "$gwb" route add 10.1.0.0/16 dev "$ifb"; }; then
        log "cannot bring up $ifa / $ifb or route through them"
        return 1
    fi
    gw_check_path "$vnet" "$onprem" "$kind" || return 1
    timeout 5 ip netns exec "$gwa" wg show "$ifa" >"$raw/$kind-wg-show-a.txt" 2>&1 || true
}

# wg_peer_cleanup IF_A IF_B : the UAPI sockets a killed peer may have left.
wg_peer_cleanup() {
    local i
    for i in "$@"; do
        rm -f -- "$(wg_sock "$i")"
    done
}

# ss_peer_setup STRONGSWAN_SH VNET GWA GWB ONPREM RAWDIR : the topology, charon A in GWA and B in
# GWB (kernel-libipsec; CONFDIRs $tmp/ss-a and $tmp/ss-b), the CHILD_SA initiated by A. Sets
# ss_pid_a, ss_pid_b (charon's pids). 1 on failure.
ss_peer_setup() {
    local ss="$1" vnet="$2" gwa="$3" gwb="$4" onprem="$5" raw="$6" psk x
    ss_pid_a=""
    ss_pid_b=""
    gw_topology "$vnet" "$gwa" "$gwb" "$onprem" || return 1
    psk="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    [[ ${#psk} -eq 48 ]] || { log "cannot generate a PSK"; return 1; }
    timeout 30 "$ss" write-config "$tmp/ss-a" --local 192.0.2.1 --remote 192.0.2.2 \
        --local-ts 10.1.0.0/16 --remote-ts 10.3.0.0/16 --psk "$psk" \
        --ike aes256gcm16-prfsha256-ecp256 --esp aes256gcm16 8>&- || return 1
    timeout 30 "$ss" write-config "$tmp/ss-b" --local 192.0.2.2 --remote 192.0.2.1 \
        --local-ts 10.3.0.0/16 --remote-ts 10.1.0.0/16 --psk "$psk" \
        --ike aes256gcm16-prfsha256-ecp256 --esp aes256gcm16 8>&- || return 1
    log "starting charon (kernel-libipsec) in $gwa and $gwb"
    timeout 60 "$ss" start A "$gwa" "$tmp/ss-a" 8>&- || return 1
    ss_pid_a="$(head -n1 "$tmp/ss-a/charon.pid" 2>/dev/null)" || true
    [[ "$ss_pid_a" =~ ^[0-9]+$ ]] || { log "no pid of charon A"; return 1; }
    daemon_pids+=("$ss_pid_a")
    timeout 60 "$ss" start B "$gwb" "$tmp/ss-b" 8>&- || return 1
    ss_pid_b="$(head -n1 "$tmp/ss-b/charon.pid" 2>/dev/null)" || true
    [[ "$ss_pid_b" =~ ^[0-9]+$ ]] || { log "no pid of charon B"; return 1; }
    daemon_pids+=("$ss_pid_b")
    timeout 60 "$ss" initiate "$tmp/ss-a" net 8>&- 2>"$raw/strongswan-initiate.txt" \
        || { log "IKE/CHILD_SA setup failed: $(tail -n 5 "$raw/strongswan-initiate.txt")"; return 1; }
    timeout 30 "$ss" list-sas "$tmp/ss-a" >"$raw/strongswan-sas-a.txt" 2>/dev/null 8>&- || true
    for x in a b; do
        # Keep the configurations without the PSK.
        sed -E 's/^([[:space:]]*secret = ).*/\1<random, not kept>/' "$tmp/ss-$x/swanctl.conf" \
            >"$raw/strongswan-swanctl-$x.conf" 2>/dev/null || true
        cp -- "$tmp/ss-$x/strongswan.conf" "$raw/strongswan-$x.conf" 2>/dev/null || true
    done
    gw_check_path "$vnet" "$onprem" "strongSwan" || return 1
}

# ss_peer_logs RAWDIR : copies both charon logs into RAWDIR.
ss_peer_logs() {
    local x
    for x in a b; do
        [[ -f "$tmp/ss-$x/charon.log" ]] && cp -- "$tmp/ss-$x/charon.log" "$1/strongswan-charon-$x.log"
    done
    return 0
}
