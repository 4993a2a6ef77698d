#!/usr/bin/env bash
# Mutation testing of the core (src/semaphore/, src/sync.rs) with cargo-mutants, in two phases:
#
# 1. native: every mutant against the sequential and multi-threaded suites (`--lib`, `semaphore`,
#    `runtimes`, `model_ops`); a hang past the timeout counts as caught.
# 2. loom: each mutant that survived phase 1, against the loom models and counters (`--lib`,
#    `loom_semaphore`, `loom_enqueue`, `loom_races`, `loom_downstream`) at the bounds CI uses,
#    stopping at the first failing model.
#
# cargo-mutants does not mutate the body of an `unsafe fn`, and the handoff pass lives in them.
# The run therefore works on a copy of HEAD in which `unsafe fn` in src/semaphore/ reads `fn`:
# the crate denies `unsafe_op_in_unsafe_fn`, so every unsafe operation in those bodies already
# sits in an `unsafe {}` block and the copy builds unchanged (with "unnecessary unsafe" warnings
# at the call sites). The copy is only for mutation; nothing of it is committed.
#
# usage: scripts/mutants_core.sh OUT_DIR      (about 30 + 35 minutes on 2 cores)
# Results: OUT_DIR/native/mutants.out, OUT_DIR/loom/mutants.out (caught/missed/timeout.txt);
# DESIGN.md §10 records the last run and why each survivor is equivalent.
set -euo pipefail
out=$(realpath -m "${1:?usage: scripts/mutants_core.sh OUT_DIR}")
repo=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$repo" archive HEAD | tar -x -C "$work"
sed -i 's/\bunsafe fn\b/fn/' "$work"/src/semaphore/*.rs
cd "$work"
mkdir -p "$out"
files=(--file 'src/semaphore/*.rs' --file src/sync.rs)

# Phase 1. Debug info off: the builds are most of the time per mutant.
CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0 \
  cargo mutants -j 2 --timeout 30 --build-timeout 180 "${files[@]}" -o "$out/native" \
  -- --lib --test semaphore --test runtimes --test model_ops || true

# Phase 2: only the survivors, each named by an anchored regex.
filters=()
while IFS= read -r name; do
  [ -n "$name" ] && filters+=(-F "^$(printf '%s' "$name" | sed 's/[][\.*^$|+?(){}&]/\\&/g')\$")
done < "$out/native/mutants.out/missed.txt"
if [ ${#filters[@]} -gt 0 ]; then
  RUSTFLAGS="--cfg loom -C debug-assertions" CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo mutants -j 2 --timeout 120 --build-timeout 300 --profile release --test-tool nextest \
    --cargo-arg=--lib --cargo-arg=--test=loom_semaphore --cargo-arg=--test=loom_enqueue \
    --cargo-arg=--test=loom_races --cargo-arg=--test=loom_downstream \
    "${files[@]}" "${filters[@]}" -o "$out/loom" -- --max-fail 1:immediate || true
fi
for phase in native loom; do
  d=$out/$phase/mutants.out
  [ -d "$d" ] || continue
  printf '%s: ' "$phase"
  for kind in caught timeout missed unviable; do printf '%s %s  ' "$(wc -l < "$d/$kind.txt")" "$kind"; done
  echo
done
