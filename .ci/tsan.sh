#!/usr/bin/env bash
# ThreadSanitizer over the multi-threaded runtime tests (tests/runtimes.rs: tokio multi-thread,
# async-executor on several threads, std threads with the blocking API, cancellation, close).
# Needs nightly with rust-src: std is rebuilt with TSan instrumentation (-Zbuild-std), otherwise
# every synchronization inside std is invisible to TSan and it reports false races.
# Cold build ~3 CPU-minutes (std + all dev-dependencies, debug), run ~10 s.
# Fails loudly: halt_on_error makes the first race report abort the test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1
START=$(date +%s)

echo "=== tsan: toolchain (nightly + rust-src)"
if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain nightly
fi
HOST=$(rustc +nightly -vV | sed -n 's/^host: //p')
case "$HOST" in
  x86_64-unknown-linux-gnu|aarch64-unknown-linux-gnu) ;;
  *) echo "tsan: ThreadSanitizer is not supported on host $HOST" >&2; exit 1 ;;
esac

export RUSTFLAGS="-Zsanitizer=thread"
export RUSTDOCFLAGS="-Zsanitizer=thread"
export CARGO_TARGET_DIR="${TSAN_TARGET_DIR:-target/tsan}"
export TSAN_OPTIONS="halt_on_error=1 abort_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"

echo "=== tsan: build"
timeout "${TSAN_BUILD_TIMEOUT:-1500}" \
  cargo +nightly test -Zbuild-std --target "$HOST" --test runtimes --no-run

echo "=== tsan: run tests/runtimes.rs"
LOG=$(mktemp)
set +e
timeout "${TSAN_TIMEOUT:-600}" \
  cargo +nightly test -Zbuild-std --target "$HOST" --test runtimes -- --test-threads=2 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
if grep -q 'WARNING: ThreadSanitizer' "$LOG"; then
  echo "tsan: ThreadSanitizer reported a problem (see above)" >&2
  rc=1
fi
rm -f "$LOG"
if [ "$rc" -ne 0 ]; then
  echo "tsan: FAILED (exit $rc)" >&2
  exit "$rc"
fi
echo "=== tsan: done in $(( $(date +%s) - START ))s"
