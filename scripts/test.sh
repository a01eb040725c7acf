#!/usr/bin/env bash
# test.sh: runs every test of Causeway: unit and property tests of every crate, and the
# end-to-end tests that drive the real daemon and CLI through TUNs in network namespaces they
# create (ping, iperf3). Needs root. Installs what it needs (scripts/deps.sh) first.
#
# The end-to-end tests run twice: with the daemon's TUN offloads on (the default, in the run
# of every test), then once more alone with CAUSEWAY_E2E_OFFLOAD=off (`offload = false` on
# every interface). With extra cargo test args, only the first run happens.
#
# Last, a bounded smoke run of every cargo-fuzz target (scripts/fuzz.sh smoke: each target for
# CAUSEWAY_FUZZ_SMOKE_SECS seconds, 12 by default, from the committed seeds and regression
# inputs; docs/RELIABILITY.md). It installs cargo-fuzz the first time and builds the targets
# in fuzz/target (a few minutes once, seconds after). Skipped with extra cargo test args.
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
log "running the tests (end-to-end pass 1 of 2: TUN offloads on)"
CAUSEWAY_E2E_OFFLOAD=on cargo test --profile ci "$@" -- --test-threads=2
if (($#)); then
    log "extra cargo test args given: skipping end-to-end pass 2 (offloads off); run it with" \
        "CAUSEWAY_E2E_OFFLOAD=off cargo test --profile ci -p causewayd --test e2e -- --test-threads=2"
    exit 0
fi
log "running the end-to-end tests again (pass 2 of 2: TUN offloads off, CAUSEWAY_E2E_OFFLOAD=off)"
CAUSEWAY_E2E_OFFLOAD=off cargo test --profile ci -p causewayd --test e2e -- --test-threads=2

log "fuzz smoke: every cargo-fuzz target for ${CAUSEWAY_FUZZ_SMOKE_SECS:-12} s (scripts/fuzz.sh smoke)"
"$here/fuzz.sh" smoke
