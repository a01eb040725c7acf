#!/usr/bin/env bash
# deps.sh: install, idempotently, what the Causeway demo and tests need on Debian 12, as root.
#
# Usage: deps.sh
#
#   - Debian packages: iproute2 iperf3 iputils-ping tcpdump procps jq ca-certificates curl,
#     ethtool (the end-to-end tests turn a veth's offloads off), g++ (libFuzzer, built by
#     cargo-fuzz for the fuzz smoke run of scripts/test.sh: scripts/fuzz.sh), and
#     strongSwan as the IKEv2/ESP reference peer (scripts/strongswan.sh, docs/STRONGSWAN.md):
#     strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins.
#     `apt-get update` and `apt-get install` run only when one of them is missing; when all are
#     present the script is a quick no-op.
#   - /dev/net/tun must exist (the daemon's TUN devices): `modprobe tun` if it does not, and create
#     the device node if the module is there but the node is not; a clear error otherwise.
#   - cargo must be on PATH (or in ~/.cargo/bin): a clear error otherwise (Rust is not installed here).
#
# Exit status 0 when everything is in place.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

case "${1:-}" in
    "") ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unexpected argument '$1' (usage: deps.sh)" ;;
esac

packages=(iproute2 iperf3 iputils-ping tcpdump procps jq ca-certificates curl ethtool g++
    strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins)

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script expects Debian (12)"

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
    need_root
    log "installing: ${missing[*]}"
    apt-get update
    # iperf3's postinst may ask whether to start a daemon; never prompt, never start it.
    echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    for p in "${missing[@]}"; do
        installed "$p" || die "package $p is still not installed"
    done
fi

for c in ip iperf3 ping tcpdump sysctl jq ethtool g++; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is missing although its package is installed"
done

# /dev/net/tun
if [[ ! -c /dev/net/tun ]]; then
    need_root
    if command -v modprobe >/dev/null 2>&1; then
        modprobe tun 2>/dev/null || log "modprobe tun failed (built in, or no module available)"
    fi
    # The module (or built-in driver) registers misc device 10:200; udev is not always there
    # (containers) to create the node.
    if [[ ! -e /dev/net/tun && -e /sys/class/misc/tun ]]; then
        mkdir -p /dev/net
        mknod -m 0666 /dev/net/tun c 10 200
    fi
    [[ -c /dev/net/tun ]] || die "/dev/net/tun is not available: this kernel has no TUN driver (CONFIG_TUN), or this container does not expose it"
    log "/dev/net/tun is available"
fi

# cargo
if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
        die "cargo is installed in ${HOME:-/root}/.cargo/bin but not on PATH: run '. \"${HOME:-/root}/.cargo/env\"' (or add that directory to PATH)"
    fi
    die "cargo not found: install a Rust toolchain (https://rustup.rs, or 'apt-get install cargo')"
fi

log "all dependencies present (cargo: $(command -v cargo))"
