#!/usr/bin/env bash
# Shuttle stress suite (tests/shuttle_stress.rs): 3–5 tasks × 10–16 random operations under
# shuttle's random and PCT schedulers, ending with permits conserved / no task stranded / closed
# semantics. About 1 minute of run time on 2 cores (plus ~1–4 min cold build of shuttle + deps).
# Usage: .ci/shuttle.sh            (CI)
#        SHUTTLE_ITERS_SCALE=10 .ci/shuttle.sh   (longer run: iteration counts × 10)
# A failure prints a schedule string; feed it to `shuttle::replay` to reproduce deterministically.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1
# Shuttle models every atomic as SeqCst and warns about it once per run; the suite knows.
export SHUTTLE_SILENCE_WARNINGS=1
export RUSTFLAGS="--cfg shuttle"
export CARGO_TARGET_DIR="${SHUTTLE_TARGET_DIR:-target/shuttle}"
START=$(date +%s)

echo "=== shuttle: clippy on the suite"
cargo clippy --release --test shuttle_stress -- -D warnings

echo "=== shuttle: build"
cargo test --release --test shuttle_stress --no-run

echo "=== shuttle: run (random + PCT schedulers)"
timeout "${SHUTTLE_TIMEOUT:-900}" cargo test --release --test shuttle_stress -- --test-threads=2 --nocapture

echo "=== shuttle: done in $(( $(date +%s) - START ))s"
