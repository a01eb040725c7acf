#!/usr/bin/env bash
# lab.sh: the Causeway lab's network namespaces.
#
# Usage: lab.sh up|down|status [PREFIX]      (PREFIX defaults to "lab")
#
#   up      (re)create ${PREFIX}-vnet (the VNet host) and ${PREFIX}-onprem (the on-premises host),
#           each with only loopback up. causewayd creates one TUN inside each namespace and assigns
#           its addresses and routes itself. Namespaces ${PREFIX}-* that already exist (stale ones
#           of a killed run, or a previous lab) are removed first, with any processes inside.
#   down    remove every namespace named ${PREFIX}-* (the lab's and stale ones), killing the
#           processes inside them first. No error if there is nothing to remove.
#   status  list the namespaces named ${PREFIX}-* and the processes inside them.
#
# What it did goes to stdout. Needs root and iproute2.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

[[ $# -ge 1 && $# -le 2 ]] || usage
case "$1" in -h | --help) usage 0 ;; esac
action="$1"
prefix="${2:-lab}"
valid_name "$prefix-onprem" || die "invalid prefix '$prefix' (letters, digits, _ . -; short)"

remove_all() {
    local n removed=0
    for n in $(ns_list_prefix "$prefix-"); do
        ns_del "$n"
        if ns_exists "$n"; then
            die "could not remove namespace $n"
        fi
        echo "removed namespace $n"
        removed=1
    done
    ((removed)) || echo "no namespaces named $prefix-* to remove"
}

case "$action" in
    up)
        need_root
        need_cmd ip
        [[ -z "$(ns_list_prefix "$prefix-")" ]] || remove_all
        for n in "$prefix-vnet" "$prefix-onprem"; do
            ns_add "$n"
            echo "created namespace $n (loopback up)"
        done
        ;;
    down)
        need_root
        need_cmd ip
        remove_all
        ;;
    status)
        need_cmd ip
        found=0
        for n in $(ns_list_prefix "$prefix-"); do
            found=1
            pids="$(ip netns pids "$n" 2>/dev/null | paste -sd' ' - || true)"
            if [[ -n "$pids" ]]; then
                echo "$n: processes $pids"
            else
                echo "$n: no processes"
            fi
        done
        ((found)) || echo "no namespaces named $prefix-*"
        ;;
    *)
        log "unknown action '$action'"
        usage
        ;;
esac
