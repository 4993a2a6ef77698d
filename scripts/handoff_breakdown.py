#!/usr/bin/env python3
"""Where the instructions of one handoff go, per implementation.

Runs the fairness bench binary's `handoff_st` case (two tasks ping-ponging one permit on a
current-thread tokio runtime, so every instruction is on the serialized handoff path) under
callgrind at two iteration counts, and splits the difference per acquisition by source file:

* semaphore: the implementation's own source files, plus std/core code inlined into its
  functions (atomics, Option, ...);
* tokio runtime: tokio outside `tokio::sync` (task polls, wakes, the scheduler, yield_now);
* rest: the benchmark loop, the clock reads, libc.

If a peer's semaphore code is a share s of its handoff, a semaphore that cost nothing would
still need (1 - s) of the peer's instructions on this path: the script prints that bound too.

usage: scripts/handoff_breakdown.py [N1 N2]    (needs valgrind; run from the repo root)
"""
import json
import os
import re
import subprocess
import sys
import tempfile

N1, N2 = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) == 3 else (20000, 40000)

IMPLS = {
    # name: (source-path pattern, function-name pattern)
    "fairgate": (r"(^|/)src/(semaphore/[^/]+|sync)\.rs$", r"\bfairgate::"),
    "tokio": (r"tokio-[0-9.]+/src/sync/", r"\btokio::sync::"),
    "maitake-sync": (r"maitake-sync|mutex-traits|mycelium", r"\bmaitake_sync::"),
    "futures-intrusive(fair)": (r"futures-intrusive|parking_lot|lock_api", r"\bfutures_intrusive::|\bparking_lot|\block_api::"),
}
LINE = re.compile(r"^\s*([0-9,]+)\s+\([^)]*\)\s+(\S.*?):(.*?)(?: \[[^\]]*\])?$")


def bench_exe():
    """The fairness bench executable (benches/fairness/main.rs), as cargo reports it (this
    honours CARGO_TARGET_DIR)."""
    out = subprocess.run(["cargo", "bench", "--bench", "fairness", "--no-run",
                          "--message-format=json"],
                         check=True, capture_output=True, text=True).stdout
    exes = [m["executable"] for m in map(json.loads, out.splitlines())
            if m.get("reason") == "compiler-artifact" and m.get("executable")
            and m["target"]["name"] == "fairness"]
    return exes[-1]


def profile(exe, imp, iters, tmp):
    out = os.path.join(tmp, f"cg.{iters}")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", exe,
                    "--case", "handoff_st", imp, str(iters)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", out],
                          check=True, capture_output=True, text=True).stdout
    costs = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        key = (m.group(2), m.group(3))
        costs[key] = costs.get(key, 0) + int(m.group(1).replace(",", ""))
    return costs


def category(imp, path, func):
    own_path, own_fn = IMPLS[imp]
    if re.search(own_path, path) or ("/rustc/" in path and re.search(own_fn, func)):
        return "semaphore"
    if "tokio-" in path and "/src/sync/" not in path:
        return "tokio runtime"
    return "rest"


def main():
    exe = bench_exe()
    rows = []
    for imp in IMPLS:
        with tempfile.TemporaryDirectory() as tmp:
            a = profile(exe, imp, N1, tmp)
            b = profile(exe, imp, N2, tmp)
        per = {"semaphore": 0.0, "tokio runtime": 0.0, "rest": 0.0}
        for key in set(a) | set(b):
            per[category(imp, *key)] += (b.get(key, 0) - a.get(key, 0)) / (N2 - N1)
        rows.append((imp, per))
    print(f"## Instructions per acquisition, `handoff_st` (callgrind, (Ir({N2}) - Ir({N1})) / {N2 - N1})\n")
    print("| implementation | total | semaphore code | tokio runtime | rest | semaphore share | bound (1 - share) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for imp, per in rows:
        total = sum(per.values())
        share = per["semaphore"] / total
        print(f"| {imp} | {total:.0f} | {per['semaphore']:.0f} | {per['tokio runtime']:.0f} | "
              f"{per['rest']:.0f} | {100 * share:.1f} % | {1 - share:.3f} |")


if __name__ == "__main__":
    main()
