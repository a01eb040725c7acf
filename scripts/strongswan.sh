#!/usr/bin/env bash
# strongswan.sh: run strongSwan's charon as the on-premises IKEv2/ESP peer, one instance per
# network namespace. ESP is done in userspace by the kernel-libipsec plugin (this kernel has no
# esp4), always in UDP 4500 (RFC 3948). Each instance has its own directory CONFDIR holding
# strongswan.conf, swanctl.conf, its vici socket (CONFDIR/vici), charon.log and charon.pid, and
# its own private tmpfs /run, so that several instances run side by side. See docs/STRONGSWAN.md.
#
# Usage:
#   strongswan.sh write-config CONFDIR OPTIONS...   write CONFDIR/strongswan.conf and swanctl.conf
#   strongswan.sh start NAME NETNS CONFDIR          start charon in NETNS, load CONFDIR/swanctl.conf
#   strongswan.sh stop NAME CONFDIR                 TERM charon, KILL after 3 s (no error if not running)
#   strongswan.sh initiate CONFDIR CHILD            bring up CHILD (and its IKE SA); fails if it cannot
#   strongswan.sh list-sas CONFDIR                  print `swanctl --list-sas`
#   strongswan.sh status CONFDIR                    exit 0 when charon runs and answers on its vici socket
#   strongswan.sh selftest [SELFTEST OPTIONS]       two instances across a veth: ping + iperf3
#
# CONFDIR must not lie under /run (charon's /run is a private tmpfs that hides it) and its path
# must be short (the vici socket path is limited to 107 bytes). start writes no configuration:
# the caller writes CONFDIR/strongswan.conf and CONFDIR/swanctl.conf (write-config does).
# The namespace must own an address inside the local traffic selector (a /32 on lo will do)
# before the CHILD_SA comes up: kernel-libipsec fails the CHILD_SA otherwise. NAME only labels
# messages. charon's stderr goes to CONFDIR/charon.log (write-config's
# strongswan.conf logs there, with timestamps). Environment: CHARON (default
# /usr/lib/ipsec/charon), SS_TIMEOUT (seconds for start and initiate, default 20).
#
# write-config OPTIONS (the first six are required):
#   --local ADDR           local IKE address (also the local IKE identity unless --local-id)
#   --remote ADDR          remote IKE address (also the remote identity unless --remote-id)
#   --local-ts CIDR[,..]   local traffic selector(s), e.g. 10.3.0.0/16
#   --remote-ts CIDR[,..]  remote traffic selector(s), e.g. 10.1.0.0/16
#   --psk SECRET           pre-shared key (written as "..." or, with unusual characters, 0x hex)
#   --ike PROPOSALS        IKE proposals (default aes256gcm16-prfsha256-ecp256), e.g.
#                          aes256-sha256-modp2048; several: comma-separated
#   --esp PROPOSALS        ESP proposals (default aes256gcm16), e.g. aes256-sha256,
#                          aes256gcm16-ecp256 (PFS on rekey). No "-esn": libipsec cannot do ESN
#   --start-action A       none (default: wait for `initiate` or the peer) | start (initiate on
#                          load). No trap: libipsec 5.9.8 sends no acquire, it drops the packet
#   --encap yes|no         encap = (default yes). With kernel-libipsec charon fakes NAT-D and
#                          uses ESP-in-UDP whatever this says
#   --dpd DURATION         dpd_delay (default 0s = off), e.g. 10s
#   --dpd-action A         clear (default) | restart
#   --close-action A       none (default) | start
#   --rekey-time DURATION  CHILD_SA rekey time (strongSwan default 1h)
#   --life-time DURATION   CHILD_SA hard lifetime (default rekey-time + 10%)
#   --ike-rekey-time D     IKE_SA rekey time (strongSwan default 4h)
#   --mobike yes|no        (default no: the gateway does not do MOBIKE)
#   --fragmentation yes|accept|no   RFC 7383 IKE fragmentation (default yes)
#   --udp-port PORT        charon.port, local IKE port (default 500)
#   --nat-port PORT        charon.port_nat_t, local NAT-T/ESP-in-UDP port (default 4500)
#   --remote-port PORT     the peer's IKE port (default 500). charon floats the remote port to
#                          4500 after IKE_SA_INIT only if the remote or its own local port is 500
#   --local-id ID, --remote-id ID   IKE identities (default: the addresses, sent as ID_IPV4_ADDR;
#                          user@fqdn -> ID_RFC822_ADDR, a name -> ID_FQDN). --remote-id %any:
#                          accept any peer identity, and send no IDr in IKE_AUTH
#   --conn NAME            connection name (default cw); --child NAME  child name (default net)
#   --plugins list|modular how strongswan.conf loads plugins (default list: an explicit `load`
#                          list; modular: include /etc/strongswan.d/charon/*.conf)
#   --log LEVEL            charon log level 0..4 (default 1: one line per IKE message with its
#                          payload list; 2: proposals, TS and SA details for ike/cfg/chd/knl/net;
#                          3: also raw packets and payload bytes; 4: also keys -- never in CI)
#
# selftest OPTIONS: --ike P --esp P (as above), --time S (iperf3 seconds, default 5),
#   --prefix P (namespace prefix, default cwss), --pcap FILE (tcpdump of the underlay, on A),
#   --keep DIR (copy both CONFDIRs, logs included, to DIR), --initiator a|b (default a),
#   --log LEVEL, --plugins list|modular, --between hosts|gateways (iperf3 host A -> host B,
#   default, or gateway A 10.1.0.1 -> gateway B 10.3.0.1), --a-opt OPT=VALUE / --b-opt OPT=VALUE (any write-config
#   option for A or B only, e.g. --a-opt --udp-port=1500 --b-opt --encap=no; repeatable).
#   Topology: ${P}-ha 10.1.0.2 -- ${P}-a 10.1.0.1 | 192.0.2.1 == 192.0.2.2 ${P}-b | 10.3.0.1 --
#   ${P}-hb 10.3.0.2; tunnel 10.1.0.0/16 <-> 10.3.0.0/16. Prints one JSON line on stdout.
#   These four namespaces, left by a killed run, are removed first; all are removed at exit.
#   Runs with different prefixes may run side by side (one run per prefix: a lock).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

CHARON="${CHARON:-/usr/lib/ipsec/charon}"
SS_TIMEOUT="${SS_TIMEOUT:-20}"
[[ "$SS_TIMEOUT" =~ ^[1-9][0-9]{0,3}$ ]] || die "SS_TIMEOUT must be a number of seconds (got '$SS_TIMEOUT')"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# --- helpers ------------------------------------------------------------------------------------

# confdir_abs DIR : print DIR as an absolute path, refusing /run (hidden by the private tmpfs).
confdir_abs() {
    local d="$1"
    [[ -n "$d" ]] || die "empty CONFDIR"
    d="$(realpath -m -- "$d")"
    case "$d/" in
        /run/* | /var/run/*) die "CONFDIR '$d' is under /run, which charon's private tmpfs /run hides: use another directory (e.g. under /tmp)" ;;
    esac
    [[ "$d" =~ ^[A-Za-z0-9/._+-]+$ ]] || die "CONFDIR '$d': use only letters, digits and / . _ + - in its path"
    ((${#d} + 5 <= 100)) || die "CONFDIR '$d' is too long for a unix socket path (keep it under 95 characters)"
    printf '%s\n' "$d"
}

vici_uri() {
    printf 'unix://%s/vici\n' "$1"
}

# charon_pid CONFDIR : print the pid of that instance's charon if it runs; false otherwise.
charon_pid() {
    local dir="$1" pid comm
    [[ -s "$dir/charon.pid" ]] || return 1
    pid="$(head -n1 "$dir/charon.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == charon* ]] || return 1
    # A zombie is as good as gone.
    [[ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]] || return 1
    printf '%s\n' "$pid"
}

# swanctl_q TIMEOUT ARGS... : swanctl under `timeout`, its stdout unchanged, its stderr without
# the noise that swanctl itself prints on every run here (plugins of its built-in list that Debian
# does not ship; credential directories beside --file that do not exist).
swanctl_q() {
    local t="$1" rc=0
    shift
    { timeout "$t" swanctl "$@" 2>&1 1>&3 3>&- \
        | { grep -Ev "^plugin '[^']*': failed to load|^opening directory '[^']*' failed: No such file" >&2 || true; }; } 3>&1 || rc=$?
    return "$rc"
}

# pid_alive PID : true while PID exists and is not a zombie.
pid_alive() {
    local st
    st="$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" || return 1
    [[ -n "$st" && "$st" != Z ]]
}

vici_answers() {
    timeout 5 swanctl --stats --uri "$(vici_uri "$1")" >/dev/null 2>&1
}

is_duration() {
    [[ "$1" =~ ^[0-9]{1,9}[smhd]?$ ]]
}

is_port() {
    [[ "$1" =~ ^[0-9]{1,5}$ ]] && (("$1" >= 1 && "$1" <= 65535))
}

# --- start / stop / initiate / list-sas -------------------------------------------------------

cmd_start() {
    [[ $# -eq 3 ]] || die "usage: strongswan.sh start NAME NETNS CONFDIR"
    local name="$1" netns="$2" dir pid i log
    dir="$(confdir_abs "$3")"
    need_root
    need_cmd ip swanctl timeout mount
    [[ -x "$CHARON" ]] || die "$CHARON not found (install strongswan-charon: scripts/deps.sh)"
    ns_exists "$netns" || die "$name: network namespace '$netns' does not exist"
    [[ -f "$dir/strongswan.conf" ]] || die "$name: $dir/strongswan.conf is missing (write-config writes one)"
    [[ -f "$dir/swanctl.conf" ]] || die "$name: $dir/swanctl.conf is missing (write-config writes one)"
    if pid="$(charon_pid "$dir")"; then
        die "$name: charon already runs for $dir (pid $pid); stop it first"
    fi
    [[ -c /dev/net/tun ]] || die "/dev/net/tun is missing: kernel-libipsec needs TUN (scripts/deps.sh)"
    rm -f -- "$dir/vici" "$dir/charon.pid"
    log="$dir/charon.log"
    printf '=== %s: starting charon (%s) in netns %s\n' "$(date '+%F %T')" "$name" "$netns" >>"$log"

    # `ip netns exec` runs the command in a mount namespace of its own (it remounts /sys there);
    # a tmpfs mounted on /run inside it stays private to this charon: its charon.pid/charon.ctl
    # never meet another instance's. The shell writes its own pid, then becomes charon (exec),
    # so CONFDIR/charon.pid is charon's pid. setsid: a terminal's Ctrl-C aimed at the caller does
    # not hit charon; stop (or deleting the namespace) ends it.
    # shellcheck disable=SC2016 # $$, $1 and $2 are the inner shell's
    STRONGSWAN_CONF="$dir/strongswan.conf" setsid ip netns exec "$netns" sh -c '
        echo $$ >"$1" || exit 111
        mount -t tmpfs -o mode=0755,size=16m tmpfs /run || { echo "cannot mount a private /run" >&2; exit 112; }
        exec "$2"' sh "$dir/charon.pid" "$CHARON" </dev/null >>"$log" 2>&1 &
    # Without job control the background process is no group leader, so setsid does not fork:
    # $! is the process that becomes charon.
    local bg=$!

    # Wait until the vici socket answers (it exists a moment before charon serves it).
    for ((i = 0; i < SS_TIMEOUT * 10; i++)); do
        if [[ -S "$dir/vici" ]] && vici_answers "$dir"; then
            break
        fi
        if ! pid_alive "$bg"; then
            die "$name: charon exited during start-up; last lines of $log:
$(tail -n 15 "$log")"
        fi
        sleep 0.1
    done
    if ! vici_answers "$dir"; then
        cmd_stop "$name" "$dir" 2>/dev/null || true
        die "$name: charon's vici socket $dir/vici did not answer within ${SS_TIMEOUT}s (charon stopped); last lines of $log:
$(tail -n 15 "$log")"
    fi
    pid="$(charon_pid "$dir")" || die "$name: charon is not running; see $log"
    log "$name: charon pid $pid in netns $netns, vici $(vici_uri "$dir")"

    local out
    if ! out="$(swanctl_q "$SS_TIMEOUT" --load-all --uri "$(vici_uri "$dir")" --file "$dir/swanctl.conf" 2>&1)"; then
        printf '%s\n' "$out" >>"$log"
        cmd_stop "$name" "$dir" 2>/dev/null || true
        die "$name: swanctl --load-all failed (charon stopped again):
$out"
    fi
    printf '%s\n' "$out" >>"$log"
    printf '%s\n' "$out" | sed "s/^/$name: /" >&2
}

cmd_stop() {
    [[ $# -eq 2 ]] || die "usage: strongswan.sh stop NAME CONFDIR"
    local name="$1" dir pid i
    dir="$(confdir_abs "$2")"
    if ! pid="$(charon_pid "$dir")"; then
        log "$name: charon is not running"
        rm -f -- "$dir/charon.pid" "$dir/vici"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        charon_pid "$dir" >/dev/null || break
        sleep 0.1
    done
    if charon_pid "$dir" >/dev/null; then
        log "$name: charon (pid $pid) still alive after 3 s: KILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            charon_pid "$dir" >/dev/null || break
            sleep 0.1
        done
    fi
    charon_pid "$dir" >/dev/null && die "$name: could not end charon (pid $pid)"
    rm -f -- "$dir/charon.pid" "$dir/vici"
    log "$name: charon (pid $pid) stopped"
}

cmd_initiate() {
    [[ $# -eq 2 ]] || die "usage: strongswan.sh initiate CONFDIR CHILD"
    local dir child="$2" out rc=0
    dir="$(confdir_abs "$1")"
    need_cmd swanctl timeout
    # swanctl --initiate waits for the result and prints charon's log lines of the exchange.
    out="$(swanctl_q "$((SS_TIMEOUT + 5))" --initiate --uri "$(vici_uri "$dir")" \
        --child "$child" --timeout "$SS_TIMEOUT" 2>&1)" || rc=$?
    printf '%s\n' "$out" >&2
    ((rc == 0)) || die "initiating child '$child' via $dir failed (exit $rc)"
    grep -q "initiate completed successfully" <<<"$out" \
        || die "initiating child '$child' via $dir did not complete"
}

cmd_list_sas() {
    [[ $# -eq 1 ]] || die "usage: strongswan.sh list-sas CONFDIR"
    local dir
    dir="$(confdir_abs "$1")"
    need_cmd swanctl timeout
    swanctl_q "$SS_TIMEOUT" --list-sas --uri "$(vici_uri "$dir")"
}

cmd_status() {
    [[ $# -eq 1 ]] || die "usage: strongswan.sh status CONFDIR"
    local dir pid
    dir="$(confdir_abs "$1")"
    pid="$(charon_pid "$dir")" || { echo "not running"; return 1; }
    vici_answers "$dir" || { echo "charon pid $pid runs but its vici socket does not answer"; return 1; }
    echo "charon pid $pid, vici $(vici_uri "$dir")"
}

# --- write-config -----------------------------------------------------------------------------

cmd_write_config() {
    [[ $# -ge 1 ]] || die "usage: strongswan.sh write-config CONFDIR OPTIONS..."
    local dir
    dir="$(confdir_abs "$1")"
    shift
    local local_addr="" remote_addr="" local_ts="" remote_ts="" psk="" have_psk=0
    local ike="aes256gcm16-prfsha256-ecp256" esp="aes256gcm16" start_action="none" encap="yes"
    local dpd="0s" dpd_action="clear" close_action="none" rekey_time="" life_time="" ike_rekey_time=""
    local mobike="no" fragmentation="yes" udp_port="500" nat_port="4500" remote_port=""
    local local_id="" remote_id="" conn="cw" child="net" plugins="list" level="1"
    local opt val
    while [[ $# -gt 0 ]]; do
        opt="$1"
        case "$opt" in
            --*=*) val="${opt#*=}"; opt="${opt%%=*}"; shift ;;
            --*) [[ $# -ge 2 ]] || die "write-config: $opt needs a value"; val="$2"; shift 2 ;;
            *) die "write-config: unexpected argument '$opt'" ;;
        esac
        case "$opt" in
            --local) local_addr="$val" ;;
            --remote) remote_addr="$val" ;;
            --local-ts) local_ts="$val" ;;
            --remote-ts) remote_ts="$val" ;;
            --psk) psk="$val"; have_psk=1 ;;
            --ike) ike="$val" ;;
            --esp) esp="$val" ;;
            --start-action) start_action="$val" ;;
            --encap) encap="$val" ;;
            --dpd) dpd="$val" ;;
            --dpd-action) dpd_action="$val" ;;
            --close-action) close_action="$val" ;;
            --rekey-time) rekey_time="$val" ;;
            --life-time) life_time="$val" ;;
            --ike-rekey-time) ike_rekey_time="$val" ;;
            --mobike) mobike="$val" ;;
            --fragmentation) fragmentation="$val" ;;
            --udp-port) udp_port="$val" ;;
            --nat-port) nat_port="$val" ;;
            --remote-port) remote_port="$val" ;;
            --local-id) local_id="$val" ;;
            --remote-id) remote_id="$val" ;;
            --conn) conn="$val" ;;
            --child) child="$val" ;;
            --plugins) plugins="$val" ;;
            --log) level="$val" ;;
            *) die "write-config: unknown option '$opt'" ;;
        esac
    done
    [[ -n "$local_addr" ]] || die "write-config: --local is required"
    [[ -n "$remote_addr" ]] || die "write-config: --remote is required"
    [[ -n "$local_ts" ]] || die "write-config: --local-ts is required"
    [[ -n "$remote_ts" ]] || die "write-config: --remote-ts is required"
    if ((!have_psk)) || [[ -z "$psk" ]]; then
        die "write-config: --psk is required (non-empty)"
    fi
    local a
    for a in "$local_addr" "$remote_addr"; do
        [[ "$a" =~ ^[0-9A-Fa-f.:]+$ ]] || die "write-config: '$a' is not an IP address"
    done
    for a in "$local_ts" "$remote_ts"; do
        [[ "$a" =~ ^[0-9A-Fa-f.:/,\ ]+$ ]] || die "write-config: '$a' is not a list of CIDR prefixes"
    done
    for a in "$ike" "$esp"; do
        [[ "$a" =~ ^[a-z0-9_,-]+$ ]] || die "write-config: '$a' is not a proposal list (like aes256gcm16-prfsha256-ecp256)"
    done
    [[ "$start_action" =~ ^(none|start)$ ]] \
        || die "write-config: --start-action none|start (trap does not work with kernel-libipsec: it drops the packet, no acquire)"
    [[ "$encap" =~ ^(yes|no)$ ]] || die "write-config: --encap yes|no"
    [[ "$mobike" =~ ^(yes|no)$ ]] || die "write-config: --mobike yes|no"
    [[ "$fragmentation" =~ ^(yes|no|accept)$ ]] || die "write-config: --fragmentation yes|accept|no"
    [[ "$dpd_action" =~ ^(clear|restart)$ ]] || die "write-config: --dpd-action clear|restart (no trap with kernel-libipsec)"
    [[ "$close_action" =~ ^(none|start)$ ]] || die "write-config: --close-action none|start (no trap with kernel-libipsec)"
    if [[ ",$esp," =~ -esn[,-] ]]; then
        log "warning: --esp '$esp' asks for ESN, which kernel-libipsec cannot install (\"IPsec SA: ESN not supported\"); such a CHILD_SA fails"
    fi
    for a in "$dpd" ${rekey_time:+"$rekey_time"} ${life_time:+"$life_time"} ${ike_rekey_time:+"$ike_rekey_time"}; do
        is_duration "$a" || die "write-config: '$a' is not a duration (like 45s, 30m, 8h, 1d)"
    done
    for a in "$udp_port" "$nat_port" ${remote_port:+"$remote_port"}; do
        is_port "$a" || die "write-config: '$a' is not a UDP port"
    done
    ((udp_port != nat_port)) || die "write-config: --udp-port and --nat-port must differ (charon would pick a random port)"
    local_id="${local_id:-$local_addr}"
    remote_id="${remote_id:-$remote_addr}"
    [[ "$local_id" =~ ^[A-Za-z0-9@._:=+-]+$ ]] || die "write-config: identity '$local_id': letters, digits and @ . _ : = + - only"
    [[ "$remote_id" == "%any" || "$remote_id" =~ ^[A-Za-z0-9@._:=+-]+$ ]] \
        || die "write-config: identity '$remote_id': %any, or letters, digits and @ . _ : = + - only"
    # With a remote id of %any charon sends no IDr in IKE_AUTH and the PSK is bound to the local
    # id only.
    local secret_remote_line="        id-remote = $remote_id"$'\n'
    [[ "$remote_id" == "%any" ]] && secret_remote_line=""
    for a in "$conn" "$child"; do
        [[ "$a" =~ ^[A-Za-z0-9_-]+$ ]] || die "write-config: name '$a': letters, digits, _ and - only"
    done
    [[ "$plugins" =~ ^(list|modular)$ ]] || die "write-config: --plugins list|modular"
    [[ "$level" =~ ^[0-4]$ ]] || die "write-config: --log 0..4"

    local secret
    if [[ "$psk" =~ ^[A-Za-z0-9._~+/=@:%^*!?#-]+$ ]]; then
        secret="\"$psk\""
    else
        secret="0x$(printf '%s' "$psk" | od -An -v -tx1 | tr -d ' \n')"
    fi

    mkdir -p -- "$dir"
    chmod 0700 -- "$dir"

    local plugin_block
    if [[ "$plugins" == modular ]]; then
        plugin_block="    # Every plugin Debian ships a snippet for (each says load = yes, except kernel-libipsec
    # and bypass-lan), in their default order; then kernel-libipsec switched on.
    load_modular = yes
    plugins {
        include /etc/strongswan.d/charon/*.conf
        kernel-libipsec {
            load = yes
        }
        vici {
            socket = unix://$dir/vici
        }
    }"
    else
        plugin_block="    # Explicit plugin list, in this order. kernel-libipsec before kernel-netlink, so that the
    # userspace ESP (over the TUN ipsec0) is the kernel-ipsec backend and kernel-netlink gives
    # addresses, routes and the table-220 rule only. openssl: AES-CBC/GCM, SHA-2, ECP and
    # curve25519 (Debian builds no separate curve25519 plugin); gmp: MODP; kdf: prf+ (5.9.8+).
    load = random nonce openssl aes sha1 sha2 hmac gcm gmp kdf pem pkcs1 pkcs8 x509 pubkey revocation constraints kernel-libipsec kernel-netlink socket-default vici updown
    plugins {
        vici {
            socket = unix://$dir/vici
        }
    }"
    fi

    local lo=$((level < 1 ? level : 1)) hi=$((level < 3 ? (level < 1 ? level : 1) : level))
    local tmpf
    tmpf="$(mktemp "$dir/.strongswan.conf.XXXXXX")"
    cat >"$tmpf" <<EOF
# strongswan.conf for one charon instance; written by scripts/strongswan.sh write-config.
# charon reads it through STRONGSWAN_CONF (set by 'strongswan.sh start').
charon {
    # Local IKE port and NAT-T port (ESP-in-UDP arrives on the NAT-T port as well).
    port = $udp_port
    port_nat_t = $nat_port
    # Routes to the remote traffic selectors via ipsec0, in table 220 (rule priority 220).
    install_routes = yes
    # IKE retransmissions (strongSwan's defaults): 5 retries after 4 s, x1.8 each; a silent
    # peer is given up after about 165 s.
    retransmit_tries = 5
    retransmit_timeout = 4.0
    retransmit_base = 1.8
    # Log to stderr, which 'strongswan.sh start' sends to CONFDIR/charon.log.
    filelog {
        stderr {
            time_format = %F %T
            ike_name = yes
            flush_line = yes
            default = $lo
            ike = $level
            cfg = $level
            chd = $level
            knl = $level
            net = $level
            # 2 would dump every payload rule / log every ESP packet; 3+ gives raw bytes.
            enc = $hi
            esp = $hi
        }
    }
$plugin_block
}
EOF
    mv -f -- "$tmpf" "$dir/strongswan.conf"

    local remote_port_line="" ike_rekey_line="" rekey_line="" life_line=""
    [[ -n "$remote_port" ]] && remote_port_line="        remote_port = $remote_port"$'\n'
    [[ -n "$ike_rekey_time" ]] && ike_rekey_line="        rekey_time = $ike_rekey_time"$'\n'
    [[ -n "$rekey_time" ]] && rekey_line="                rekey_time = $rekey_time"$'\n'
    [[ -n "$life_time" ]] && life_line="                life_time = $life_time"$'\n'
    tmpf="$(mktemp "$dir/.swanctl.conf.XXXXXX")"
    cat >"$tmpf" <<EOF
# swanctl.conf: site-to-site IKEv2 PSK connection; written by scripts/strongswan.sh write-config.
connections {
    $conn {
        version = 2
        local_addrs = $local_addr
        remote_addrs = $remote_addr
${remote_port_line}        proposals = $ike
        encap = $encap
        mobike = $mobike
        fragmentation = $fragmentation
        dpd_delay = $dpd
${ike_rekey_line}        local {
            auth = psk
            id = $local_id
        }
        remote {
            auth = psk
            id = $remote_id
        }
        children {
            $child {
                mode = tunnel
                local_ts = $local_ts
                remote_ts = $remote_ts
                esp_proposals = $esp
                start_action = $start_action
                dpd_action = $dpd_action
                close_action = $close_action
${rekey_line}${life_line}            }
        }
    }
}
secrets {
    ike-$conn {
        id-local = $local_id
${secret_remote_line}        secret = $secret
    }
}
EOF
    chmod 0600 -- "$tmpf"
    mv -f -- "$tmpf" "$dir/swanctl.conf"
    log "wrote $dir/strongswan.conf and $dir/swanctl.conf (connection $conn, child $child)"
}

# --- selftest ---------------------------------------------------------------------------------

cmd_selftest() {
    local ike="aes256gcm16-prfsha256-ecp256" esp="aes256gcm16" time_s=5 prefix=cwss pcap="" keep=""
    local initiator=a level=1 a_opts=() b_opts=() between=hosts
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --ike) [[ $# -ge 2 ]] || usage; ike="$2"; shift 2 ;;
            --esp) [[ $# -ge 2 ]] || usage; esp="$2"; shift 2 ;;
            --time) [[ $# -ge 2 ]] || usage; time_s="$2"; shift 2 ;;
            --prefix) [[ $# -ge 2 ]] || usage; prefix="$2"; shift 2 ;;
            --pcap) [[ $# -ge 2 ]] || usage; pcap="$(realpath -m -- "$2")"; shift 2 ;;
            --keep) [[ $# -ge 2 ]] || usage; keep="$(realpath -m -- "$2")"; shift 2 ;;
            --a-opt) [[ $# -ge 2 ]] || usage; a_opts+=("$2"); shift 2 ;;
            --b-opt) [[ $# -ge 2 ]] || usage; b_opts+=("$2"); shift 2 ;;
            --plugins) [[ $# -ge 2 ]] || usage; a_opts+=("--plugins=$2"); b_opts+=("--plugins=$2"); shift 2 ;;
            --initiator) [[ $# -ge 2 ]] || usage; initiator="$2"; shift 2 ;;
            --log) [[ $# -ge 2 ]] || usage; level="$2"; shift 2 ;;
            --between) [[ $# -ge 2 ]] || usage; between="$2"; shift 2 ;;
            *) die "selftest: unknown argument '$1'" ;;
        esac
    done
    [[ "$time_s" =~ ^[1-9][0-9]?$ ]] || die "selftest: --time 1..99"
    [[ "$initiator" =~ ^[ab]$ ]] || die "selftest: --initiator a|b"
    [[ "$between" =~ ^(hosts|gateways)$ ]] || die "selftest: --between hosts|gateways"
    valid_name "$prefix-hb" || die "selftest: invalid --prefix '$prefix'"
    need_root
    need_cmd ip ping iperf3 jq timeout swanctl flock
    [[ -z "$pcap" ]] || need_cmd tcpdump

    local ns_a="$prefix-a" ns_b="$prefix-b" ns_ha="$prefix-ha" ns_hb="$prefix-hb"
    local lockdir=/run/lock
    [[ -d "$lockdir" && -w "$lockdir" ]] || lockdir=/tmp
    exec 9>"$lockdir/causeway-ss-$prefix.lock"
    flock -n 9 || die "another strongswan.sh selftest with prefix '$prefix' is in progress"

    tmp="$(mktemp -d /tmp/cwss.XXXXXX)"
    ST_NS=("$ns_a" "$ns_b" "$ns_ha" "$ns_hb")
    ST_TMP="$tmp"
    ST_KEEP="$keep"
    trap selftest_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    # Leftovers of a killed run with this prefix (only these four names: a run with another
    # prefix, e.g. cwss-p1, may be running beside this one).
    local n
    for n in "${ST_NS[@]}"; do
        if ns_exists "$n"; then
            log "removing stale namespace $n"
            ns_del "$n"
        fi
    done

    # Topology: two gateways on a veth underlay, one host behind each.
    for n in "${ST_NS[@]}"; do ns_add "$n"; done
    ip -n "$ns_a" link add wan type veth peer name wan netns "$ns_b"
    ip -n "$ns_a" link add lan type veth peer name eth0 netns "$ns_ha"
    ip -n "$ns_b" link add lan type veth peer name eth0 netns "$ns_hb"
    ip -n "$ns_a" addr add 192.0.2.1/24 dev wan
    ip -n "$ns_b" addr add 192.0.2.2/24 dev wan
    ip -n "$ns_a" addr add 10.1.0.1/24 dev lan
    ip -n "$ns_b" addr add 10.3.0.1/24 dev lan
    ip -n "$ns_ha" addr add 10.1.0.2/24 dev eth0
    ip -n "$ns_hb" addr add 10.3.0.2/24 dev eth0
    for n in "$ns_a" "$ns_b"; do
        ip -n "$n" link set wan up
        ip -n "$n" link set lan up
        ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1
    done
    ip -n "$ns_ha" link set eth0 up
    ip -n "$ns_hb" link set eth0 up
    ip -n "$ns_ha" route add default via 10.1.0.1
    ip -n "$ns_hb" route add default via 10.3.0.1
    wait_for -n 30 ip netns exec "$ns_a" ping -c1 -W1 192.0.2.2 || die "underlay 192.0.2.1 -> 192.0.2.2 does not work"

    local ca="$tmp/a" cb="$tmp/b"
    cmd_write_config "$ca" --local 192.0.2.1 --remote 192.0.2.2 --local-ts 10.1.0.0/16 \
        --remote-ts 10.3.0.0/16 --psk "cwss-selftest-$$" --ike "$ike" --esp "$esp" \
        --log "$level" ${a_opts[@]+"${a_opts[@]}"}
    cmd_write_config "$cb" --local 192.0.2.2 --remote 192.0.2.1 --local-ts 10.3.0.0/16 \
        --remote-ts 10.1.0.0/16 --psk "cwss-selftest-$$" --ike "$ike" --esp "$esp" \
        --log "$level" ${b_opts[@]+"${b_opts[@]}"}

    if [[ -n "$pcap" ]]; then
        ip netns exec "$ns_a" timeout 60 tcpdump -i wan -nn -U -s 0 -c 200 -w "$pcap" udp 2>"$tmp/tcpdump.err" 9>&- &
        wait_for -n 50 grep -q "listening on" "$tmp/tcpdump.err" || die "tcpdump did not start: $(cat "$tmp/tcpdump.err")"
    fi

    cmd_start A "$ns_a" "$ca" 9>&-
    cmd_start B "$ns_b" "$cb" 9>&-
    local t0 t1
    t0="$(date +%s%N)"
    if [[ "$initiator" == a ]]; then cmd_initiate "$ca" net; else cmd_initiate "$cb" net; fi
    t1="$(date +%s%N)"
    local setup_ms=$(((t1 - t0) / 1000000))
    log "tunnel up in ${setup_ms} ms (swanctl --initiate, as seen by the initiator)"
    local sas ike_sel esp_sel
    sas="$(cmd_list_sas "$ca")"
    printf '%s\n' "$sas" | sed 's/^/A: /' >&2
    # "  AES_GCM_16-256/PRF_HMAC_SHA2_256/ECP_256" and "  net: #1, ..., ESP:AES_GCM_16-256"
    ike_sel="$(printf '%s\n' "$sas" | awk 'NR > 1 && /^  [A-Z]/ && /\// {print $1; exit}')"
    esp_sel="$(printf '%s\n' "$sas" | sed -n 's/.*, ESP:\([^ ,]*\).*/\1/p' | head -n1)"

    ip -n "$ns_a" -d link show ipsec0 >&2 || die "no ipsec0 in $ns_a"
    log "A: ip route show table 220: $(ip -n "$ns_a" route show table 220 | paste -sd';' -)"
    log "A: ip rule: $(ip -n "$ns_a" rule show | paste -sd';' -)"
    log "B: ip route show table 220: $(ip -n "$ns_b" route show table 220 | paste -sd';' -)"

    # Host to host, gateway to host, gateway to gateway (their LAN addresses lie in the TS).
    ip netns exec "$ns_ha" ping -c3 -i0.2 -W2 10.3.0.2 >&2 || die "ping host A -> host B through the tunnel failed"
    ip netns exec "$ns_hb" ping -c3 -i0.2 -W2 10.1.0.2 >&2 || die "ping host B -> host A through the tunnel failed"
    ip netns exec "$ns_a" ping -c2 -i0.2 -W2 10.3.0.2 >&2 || die "ping gateway A -> host B failed"
    ip netns exec "$ns_a" ping -c2 -i0.2 -W2 10.3.0.1 >&2 || die "ping gateway A -> gateway B's 10.3.0.1 failed"
    # From an address outside the local TS nothing gets through (no policy matches).
    local outside=ok
    if ip netns exec "$ns_a" ping -c1 -W1 -I 192.0.2.1 10.3.0.2 >/dev/null 2>&1; then
        outside=unexpectedly-passed
    else
        outside=dropped
    fi
    log "ping from 192.0.2.1 (outside the local TS) to 10.3.0.2: $outside"

    # One TCP stream A -> B: host to host (through both gateways' forwarding) or gateway to
    # gateway (10.1.0.1 -> 10.3.0.1, the tunnel alone).
    local cli_ns="$ns_ha" srv_ns="$ns_hb" target=10.3.0.2
    if [[ "$between" == gateways ]]; then
        cli_ns="$ns_a" srv_ns="$ns_b" target=10.3.0.1
    fi
    ip netns exec "$srv_ns" timeout $((time_s + 30)) iperf3 -s -1 -p 5201 -J >"$tmp/server.json" 2>"$tmp/server.err" 9>&- &
    local srv=$!
    wait_for -n 50 sh -c "[ -n \"\$(ip netns exec $srv_ns ss -Hltn 'sport = :5201')\" ]" || die "iperf3 server did not start"
    ip netns exec "$cli_ns" timeout $((time_s + 25)) iperf3 -c "$target" -p 5201 -t "$time_s" -J \
        >"$tmp/client.json" 2>"$tmp/client.err" 9>&- || die "iperf3 client failed: $(jq -r '.error // empty' "$tmp/client.json" 2>/dev/null) $(cat "$tmp/client.err")"
    wait "$srv" || true
    local bps mbps retr
    bps="$(iperf3_bps "$tmp/client.json")"
    mbps="$(awk -v b="$bps" 'BEGIN { printf "%.0f", b / 1e6 }')"
    retr="$(jq -r '.end.sum_sent.retransmits // 0' "$tmp/client.json")"
    log "iperf3 TCP, 1 stream, ${time_s}s, $between A -> B ($target): $mbps Mbit/s ($retr retransmits)"
    local mtu
    mtu="$(ip -n "$ns_a" -o link show ipsec0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"
    printf '{"ike":"%s","esp":"%s","ike_selected":"%s","esp_selected":"%s","setup_ms":%d,"ping":"ok","outside_ts":"%s","ipsec0_mtu":%s,"iperf3_between":"%s","iperf3_seconds":%d,"mbps":%s,"retransmits":%s}\n' \
        "$ike" "$esp" "$ike_sel" "$esp_sel" "$setup_ms" "$outside" "${mtu:-null}" "$between" "$time_s" "$mbps" "$retr"
}

selftest_cleanup() {
    local rc=$? n
    trap '' INT TERM HUP
    if [[ -n "${ST_TMP:-}" ]]; then
        cmd_stop A "$ST_TMP/a" 2>/dev/null || true
        cmd_stop B "$ST_TMP/b" 2>/dev/null || true
    fi
    for n in "${ST_NS[@]}"; do ns_del "$n"; done
    for n in "${ST_NS[@]}"; do ns_exists "$n" && log "warning: namespace $n left behind"; done
    if [[ -n "${ST_TMP:-}" && -d "$ST_TMP" ]]; then
        if [[ -n "${ST_KEEP:-}" ]]; then
            mkdir -p -- "$ST_KEEP"
            cp -r -- "$ST_TMP/." "$ST_KEEP/" 2>/dev/null || true
            log "kept configs, logs and iperf3 JSON in $ST_KEEP"
        fi
        rm -rf -- "$ST_TMP"
    fi
    exit "$rc"
}

# --- main -------------------------------------------------------------------------------------

[[ $# -ge 1 ]] || usage
cmd="$1"
shift
case "$cmd" in
    write-config) cmd_write_config "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    initiate) cmd_initiate "$@" ;;
    list-sas) cmd_list_sas "$@" ;;
    status) cmd_status "$@" ;;
    selftest) cmd_selftest "$@" ;;
    -h | --help | help) usage 0 ;;
    *) log "unknown command '$cmd'"; usage ;;
esac
