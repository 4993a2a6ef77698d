#!/usr/bin/env bash
# How much of the CPU time of one contended point is spent in the semaphore's own code, per
# implementation, from `perf record` samples attributed to source files (inlined code counts
# for the file it was written in). If the best fair peer's share is s, no semaphore can run
# that point faster than (1 - s) x the peer's time on the same runtime, so s bounds the
# reachable ratio (bench-results/history-2026-11.md, "What bounds the contended ratios").
#
# usage: scripts/semaphore_share.sh T P [window_ms]    (needs perf; run from the repo root)
set -euo pipefail
T=$1; P=$2; W=${3:-2000}
# The executable cargo reports (honours CARGO_TARGET_DIR; the bench is benches/fairness/main.rs).
exe=$(cargo bench --bench fairness --no-run --message-format=json 2>/dev/null \
        | grep -o '"executable":"[^"]*/fairness-[^"]*"' | tail -1 | cut -d'"' -f4)
out=$(mktemp -d)
printf '| T | P | implementation | ns/op | semaphore code | + all `core::sync::atomic` (upper bound) |\n|---:|---:|---|---:|---:|---:|\n'
for imp in fairgate tokio maitake-sync 'futures-intrusive(fair)'; do
  data=$out/perf.data
  line=$(perf record -q -F 2000 -o "$data" "$exe" --bench --only "$imp" --tasks "$T" --permits "$P" \
           --window-ms "$W" 2>/dev/null | grep -F "| $imp |" | tail -1)
  nsop=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$7); print $7}')
  perf report -i "$data" --no-children --full-source-path --sort srcfile 2>/dev/null | grep '%' > "$out/src"
  case $imp in
    fairgate) pat="$PWD/src/|fairgate/src/" ;;
    tokio) pat='tokio-[0-9.]+/src/sync/' ;;
    maitake-sync) pat='maitake-sync|mutex-traits|mycelium' ;;
    *) pat='futures-intrusive|parking_lot|lock_api' ;;
  esac
  # `|| true`: a file set with no samples is a 0 share, not a reason to stop the table.
  own=$({ grep -E "$pat" "$out/src" || true; } | awk '{gsub("%","",$1); s+=$1} END {printf "%.1f", s}')
  atom=$({ grep -E 'sync/atomic.rs' "$out/src" || true; } | awk '{gsub("%","",$1); s+=$1} END {printf "%.1f", s}')
  if [ "$own" = 0.0 ]; then
    echo "warning: no $imp samples matched '$pat' (was fairgate built from $PWD?)" >&2
  fi
  up=$(awk -v a="$own" -v b="$atom" 'BEGIN {printf "%.1f", a+b}')
  printf '| %s | %s | %s | %s | %s%% | %s%% |\n' "$T" "$P" "$imp" "$nsop" "$own" "$up"
done
rm -rf "$out"
