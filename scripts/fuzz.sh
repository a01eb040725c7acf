#!/usr/bin/env bash
# fuzz.sh: builds and runs Causeway's cargo-fuzz targets (fuzz/, a cargo project outside the
# main workspace; docs/RELIABILITY.md describes the targets, the corpora and the figures).
#
# Usage: scripts/fuzz.sh COMMAND [ARGS]
#   list                     the targets
#   build                    build every target (instrumented, release with debug assertions)
#   smoke [SECONDS]          every target for SECONDS each (default 12, or
#                            CAUSEWAY_FUZZ_SMOKE_SECS), seeds only, in a scratch corpus:
#                            the bounded run of scripts/test.sh. Exit 1 on any finding.
#   run TARGET SECONDS [-- LIBFUZZER_ARGS]
#                            a long run of one target, growing fuzz/work/TARGET (kept, not
#                            committed) from the committed seeds in fuzz/corpus/TARGET; prints
#                            executions, exec/s, coverage and corpus size at the end
#   replay                   every committed corpus file through its harness on a plain stable
#                            `cargo test` (no cargo-fuzz, no instrumentation)
#   seeds                    regenerate the committed seed files (fuzz/corpus/*/seed-*)
#   cmin TARGET              minimise fuzz/work/TARGET into fuzz/work/TARGET.min
#
# Environment:
#   CAUSEWAY_FUZZ_SANITIZER  none (default) or address. `none` needs only the stable toolchain;
#                            `address` (AddressSanitizer) needs -Zsanitizer, so this script sets
#                            RUSTC_BOOTSTRAP=1 for it. Each has its own target directory
#                            (fuzz/target/<sanitizer>), so switching does not rebuild the other.
#
# Findings: libFuzzer writes the crashing input to fuzz/artifacts/TARGET/ and this script prints
# how to reproduce it (`fuzz/target/<sanitizer>/.../TARGET FILE`). A fixed finding becomes a
# #[test] in the owning crate and a file in fuzz/corpus/TARGET/ (`scripts/fuzz.sh replay` and
# the smoke run replay every corpus file).
#
# cargo-fuzz itself is installed when missing (`cargo install cargo-fuzz --locked`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
root="$(cd "$here/.." && pwd)"
fuzz="$root/fuzz"
export PATH="$HOME/.cargo/bin:$PATH"

targets=(pipeline_egress pipeline_ingress wire_parsers esp_open ike_payloads ike_responder
    ike_initiator config_parse control_request)

sanitizer="${CAUSEWAY_FUZZ_SANITIZER:-none}"
case "$sanitizer" in
    none) ;;
    address)
        # -Zsanitizer=address is a nightly flag; this enables it on the stable toolchain.
        export RUSTC_BOOTSTRAP=1
        ;;
    *) die "CAUSEWAY_FUZZ_SANITIZER must be none or address, not '$sanitizer'" ;;
esac
target_dir="$fuzz/target/$sanitizer"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$triple/release"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

need_cargo_fuzz() {
    need_cmd cargo
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
        cargo install cargo-fuzz --locked
    fi
}

is_target() {
    local t
    for t in "${targets[@]}"; do
        [[ "$t" == "$1" ]] && return 0
    done
    return 1
}

build() {
    need_cargo_fuzz
    log "building ${#targets[@]} fuzz targets (sanitizer $sanitizer, $target_dir)"
    local start=$SECONDS
    (cd "$root" && cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir" "$@")
    log "built in $((SECONDS - start)) s"
}

# fuzz_one TARGET SECONDS WORKDIR [LIBFUZZER_ARGS...]: runs the built binary directly (no
# rebuild check per target), the work directory first so that only it grows; prints libFuzzer's
# final figures. Returns libFuzzer's status (non-zero on a finding).
fuzz_one() {
    local t="$1" secs="$2" work="$3"
    shift 3
    local art="$fuzz/artifacts/$t"
    mkdir -p "$work" "$art"
    # libFuzzer's whole output, kept next to the work directory.
    local logf="$work.log"
    local rc=0
    "$bin_dir/$t" "$work" "$fuzz/corpus/$t" \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -report_slow_units=2 \
        -artifact_prefix="$art/" "$@" >"$logf" 2>&1 || rc=$?
    local done_line stats
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$logf" | tail -1 || true)"
    stats="$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|slowest_unit_time_sec|peak_rss_mb)' "$logf" | sed 's/^stat:://' | tr -s ' ' | tr '\n' ' ' || true)"
    if ((rc != 0)); then
        log "$t: FINDING (libFuzzer exit $rc); its output:"
        grep -E -A12 "panicked at|ERROR: (AddressSanitizer|libFuzzer)|deadly signal|timeout|out-of-memory" "$logf" | head -60 >&2 || tail -40 "$logf" >&2
        local a
        a="$(grep -oE "Test unit written to [^ ]+" "$logf" | tail -1 | sed 's/Test unit written to //' || true)"
        [[ -n "$a" ]] && log "$t: reproduce with: $bin_dir/$t $a"
        log "$t: libFuzzer's output: $logf"
        return "$rc"
    fi
    log "$t: ${done_line:-no DONE line} | $stats | corpus $(find "$work" -type f | wc -l) files in the work dir"
}

cmd="${1:-}"
[[ -n "$cmd" ]] || { usage; exit 2; }
shift
case "$cmd" in
    -h | --help) usage ;;
    list) printf '%s\n' "${targets[@]}" ;;
    build) build "$@" ;;
    smoke)
        secs="${1:-${CAUSEWAY_FUZZ_SMOKE_SECS:-12}}"
        [[ "$secs" =~ ^[0-9]+$ ]] || die "smoke: SECONDS must be a number"
        start=$SECONDS
        build
        scratch="$(mktemp -d)"
        trap 'rm -rf "$scratch"' EXIT
        failed=()
        for t in "${targets[@]}"; do
            fuzz_one "$t" "$secs" "$scratch/$t" || failed+=("$t")
        done
        if ((${#failed[@]})); then
            die "fuzz smoke: findings in ${failed[*]} (inputs in fuzz/artifacts/)"
        fi
        log "fuzz smoke: ${#targets[@]} targets x ${secs} s, no finding ($((SECONDS - start)) s with the build)"
        ;;
    run)
        [[ $# -ge 2 ]] || die "usage: fuzz.sh run TARGET SECONDS [-- LIBFUZZER_ARGS]"
        t="$1" secs="$2"
        shift 2
        [[ "${1:-}" == "--" ]] && shift
        is_target "$t" || die "unknown target '$t' (fuzz.sh list)"
        [[ "$secs" =~ ^[0-9]+$ ]] || die "run: SECONDS must be a number"
        build
        fuzz_one "$t" "$secs" "$fuzz/work/$t" "$@"
        ;;
    replay)
        need_cmd cargo
        log "replaying fuzz/corpus/* through the harnesses (cargo test, stable, no instrumentation)"
        (cd "$fuzz" && cargo test --release)
        ;;
    seeds)
        need_cmd cargo
        (cd "$fuzz" && cargo run --release --example seeds -- "$root")
        ;;
    cmin)
        [[ $# -eq 1 ]] || die "usage: fuzz.sh cmin TARGET"
        is_target "$1" || die "unknown target '$1'"
        build
        rm -rf "$fuzz/work/$1.min"
        mkdir -p "$fuzz/work/$1.min"
        "$bin_dir/$1" -merge=1 "$fuzz/work/$1.min" "$fuzz/work/$1" "$fuzz/corpus/$1"
        ;;
    *) usage; die "unknown command '$cmd'" ;;
esac
