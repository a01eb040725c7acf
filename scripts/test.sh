#!/usr/bin/env bash
# test.sh: runs every test of Causeway: unit and property tests of every crate, and the
# end-to-end tests that drive the real daemon and CLI through TUNs in network namespaces they
# create (ping, iperf3). Needs root. Installs what it needs (scripts/deps.sh) first.
#
# Usage: scripts/test.sh [--lint] [-- extra cargo test args]
#   --lint   also run `cargo fmt --check` and `cargo clippy --all-targets -D warnings`
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
cd "$here/.."

lint=0
if [[ "${1:-}" == "--lint" ]]; then
    lint=1
    shift
fi
[[ "${1:-}" == "--" ]] && shift

need_root
export PATH="$HOME/.cargo/bin:$PATH"
"$here/deps.sh"

if [[ $lint == 1 ]]; then
    log "lint: cargo fmt --check, cargo clippy"
    cargo fmt --all -- --check
    cargo clippy --all-targets --profile ci -- -D warnings
fi

# The end-to-end tests run the binaries: build them all first, in the same profile.
log "building (profile ci: optimised, with debug assertions and overflow checks)"
cargo build --profile ci --bins
# Two test threads: end-to-end tests run two labs at a time at most; a throughput test runs
# alone (it holds the suite's machine lock exclusively).
log "running the tests"
cargo test --profile ci "$@" -- --test-threads=2
