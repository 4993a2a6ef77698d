#!/usr/bin/env bash
# Fuzz smoke test for CI: builds every cargo-fuzz target in fuzz/ (nightly, ASan) and runs each
# for N seconds (first argument, default 60) with libFuzzer's -max_total_time, seeded with the
# committed corpus in tests/regressions/<target>/. Any crash, leak, per-input timeout or OOM
# fails the script (non-zero exit) and leaves the input in fuzz/artifacts/<target>/.
#
# Usage: .ci/fuzz-smoke.sh [seconds-per-target]
set -euo pipefail

secs="${1:-60}"
case "$secs" in '' | *[!0-9]*) echo "fuzz-smoke: seconds must be a number, got '$secs'" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz-smoke: the nightly toolchain is required (cargo +nightly fuzz)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
echo "fuzz-smoke: building targets"
timeout 1200 cargo +nightly fuzz build

status=0
for target in $(cargo +nightly fuzz list); do
    corpus="$root/fuzz/corpus/$target" # scratch (git-ignored); replayed by tests/model_ops.rs
    mkdir -p "$corpus"
    seeds=()
    if [ -d "$root/tests/regressions/$target" ]; then
        seeds+=("$root/tests/regressions/$target")
    fi
    echo "fuzz-smoke: running $target for ${secs}s"
    start=$(date +%s)
    if timeout $((secs + 300)) cargo +nightly fuzz run "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$root/fuzz/smoke-$target.log" 2>&1; then
        summary=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$root/fuzz/smoke-$target.log" | tail -n 1 || true)
        echo "fuzz-smoke: $target ok in $(($(date +%s) - start))s: $summary"
    else
        status=1
        echo "fuzz-smoke: $target FAILED (log: fuzz/smoke-$target.log)" >&2
        # The interpreter's panic message names the step and the broken check.
        grep -m 3 -A 1 -E 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' \
            "$root/fuzz/smoke-$target.log" >&2 || true
        grep -E 'Test unit written|^Base64|^SUMMARY' "$root/fuzz/smoke-$target.log" >&2 || true
        echo "fuzz-smoke: last lines of the log:" >&2
        tail -n 20 "$root/fuzz/smoke-$target.log" >&2
        echo "fuzz-smoke: crash inputs are in fuzz/artifacts/$target/; copy them into" \
            "tests/regressions/$target/ so 'cargo test --test model_ops' replays them" >&2
    fi
done
exit "$status"
