#!/usr/bin/env bash
# install-peers.sh: install, idempotently, what scripts/bench.sh needs beyond scripts/deps.sh: the
# userspace VPNs it compares Causeway's tunnel with, and the chart's Python.
#
# Usage: install-peers.sh [--venv DIR] [--skip-boringtun] [--skip-chart]
#
#   - Debian packages wireguard-go (the Go userspace WireGuard) and wireguard-tools (`wg`, to
#     configure it), python3-venv (for the chart's virtual environment): `apt-get update` and
#     `apt-get install` only when one is missing;
#   - boringtun-cli (Cloudflare's Rust WireGuard) with `cargo install boringtun-cli --locked` into
#     ~/.cargo/bin, only when no boringtun-cli is on PATH (a build of a few minutes);
#   - matplotlib in a Python virtual environment DIR (default target/bench/venv) with pip, only
#     when `DIR/bin/python -c 'import matplotlib'` fails.
# strongSwan (charon with kernel-libipsec) comes from scripts/deps.sh.
#
# Every step is bounded by a timeout (apt 600 s, cargo install 1800 s, pip 600 s). Prints the
# versions at the end. Exit status 0 when everything asked for is in place, 1 with the reason.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/../lib.sh"

venv="${CARGO_TARGET_DIR:-$root/target}/bench/venv"
boringtun=1
chart=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --venv) [[ $# -ge 2 ]] || die "--venv needs a directory"; venv="$2"; shift 2 ;;
        --venv=*) venv="${1#*=}"; shift ;;
        --skip-boringtun) boringtun=0; shift ;;
        --skip-chart) chart=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unexpected argument '$1' (usage: install-peers.sh [--venv DIR] [--skip-boringtun] [--skip-chart])" ;;
    esac
done

need_root
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script expects Debian (12)"

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# --- Debian packages --------------------------------------------------------------------------
packages=(wireguard-go wireguard-tools)
((chart)) && packages+=(python3-venv)
missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    timeout 600 apt-get update >&2 || die "apt-get update failed (or took more than 600 s)"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y --no-install-recommends \
        "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed (or took more than 600 s)"
    for p in "${missing[@]}"; do
        installed "$p" || die "package $p is still not installed"
    done
fi
need_cmd wireguard-go wg

# --- boringtun --------------------------------------------------------------------------------
if ((boringtun)) && ! command -v boringtun-cli >/dev/null 2>&1; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found: boringtun-cli is installed with 'cargo install' (see scripts/deps.sh)"
    log "installing boringtun-cli (cargo install boringtun-cli --locked; a few minutes)"
    timeout 1800 cargo install boringtun-cli --locked >&2 \
        || die "cargo install boringtun-cli --locked failed (or took more than 1800 s)"
    command -v boringtun-cli >/dev/null 2>&1 || die "boringtun-cli is not on PATH after cargo install (expected in ${HOME:-/root}/.cargo/bin)"
fi

# --- matplotlib -------------------------------------------------------------------------------
if ((chart)); then
    if ! { [[ -x "$venv/bin/python" ]] && timeout 60 "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; }; then
        # Debian's own Python (the venv module is python3-venv), not whatever python3 comes first
        # on PATH.
        py=/usr/bin/python3
        [[ -x "$py" ]] || py="$(command -v python3)" || die "python3 not found"
        log "creating a Python virtual environment in $venv with matplotlib (pip)"
        rm -rf -- "$venv"
        mkdir -p -- "$(dirname "$venv")"
        timeout 120 "$py" -m venv "$venv" >&2 || die "$py -m venv $venv failed"
        timeout 600 "$venv/bin/python" -m pip install --disable-pip-version-check -q matplotlib >&2 \
            || die "pip install matplotlib into $venv failed (or took more than 600 s)"
        timeout 60 "$venv/bin/python" -c 'import matplotlib' || die "matplotlib does not import in $venv"
    fi
fi

# --- versions ---------------------------------------------------------------------------------
log "wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go), wireguard-tools $(dpkg-query -W -f='${Version}' wireguard-tools)"
((boringtun)) && log "$(boringtun-cli --version 2>&1 | head -1) ($(command -v boringtun-cli))"
((chart)) && log "matplotlib $("$venv/bin/python" -c 'import matplotlib; print(matplotlib.__version__)') in $venv"
log "comparison peers and chart tools present"
