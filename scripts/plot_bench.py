#!/usr/bin/env python3
"""Summarise and plot the contended rows of the fairness report (python3 stdlib only).

Input: the CSV written by `cargo bench --bench fairness -- --csv bench-results/fairness.csv`
(one row per repetition x T x P x implementation).

Output:
  * markdown tables on stdout: per (T, P) the median over repetitions of ns/op, p99 and max wait
    and Jain's index, with fairgate's ratio to the floor, to each peer and to the best fair peer;
  * an SVG (default bench-results/contended.svg) with two panels: throughput (ops/s) and max
    wait (log scale) per (T, P) and implementation.

Usage: python3 scripts/plot_bench.py [CSV] [SVG]
       python3 scripts/plot_bench.py --criterion FILE   (summarise saved `cargo bench` output)
"""

import csv
import math
import statistics
import sys
from collections import defaultdict

ORDER = [
    "floor",
    "fairgate",
    "tokio",
    "maitake-sync",
    "futures-intrusive(fair)",
    "async-lock(unfair)",
]
FAIR_PEERS = ["tokio", "maitake-sync", "futures-intrusive(fair)"]
COLORS = {
    "floor": "#9e9e9e",
    "fairgate": "#d62728",
    "tokio": "#1f77b4",
    "maitake-sync": "#2ca02c",
    "futures-intrusive(fair)": "#9467bd",
    "async-lock(unfair)": "#ff7f0e",
}


def load(path):
    rows = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (int(r["tasks"]), int(r["permits"]), r["impl"])
            rows[key].append(r)
    med = {}
    for key, rs in rows.items():
        med[key] = {
            "ns_per_op": statistics.median(float(r["ns_per_op"]) for r in rs),
            "ops_per_s": statistics.median(float(r["ops_per_s"]) for r in rs),
            "p50": statistics.median(float(r["p50_ns"]) for r in rs),
            "p99": statistics.median(float(r["p99_ns"]) for r in rs),
            "max": statistics.median(float(r["max_ns"]) for r in rs),
            "jain": statistics.median(float(r["jain"]) for r in rs),
            "jain_min": min(float(r["jain"]) for r in rs),
            "reps": len(rs),
        }
    return med


def load_paired(path):
    """Per (T, P): fairgate's ratio to the best fair peer and to tokio *within* each repetition.
    The implementations of one repetition run back to back, so these ratios survive a change in
    the machine's speed between repetitions, which a ratio of medians does not."""
    per_rep = defaultdict(dict)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            per_rep[(int(r["tasks"]), int(r["permits"]), int(r["rep"]))][r["impl"]] = float(r["ns_per_op"])
    paired = defaultdict(lambda: {"best": [], "tokio": []})
    for (t, p, rep), ns in sorted(per_rep.items()):
        if "fairgate" not in ns or any(n not in ns for n in FAIR_PEERS):
            continue
        paired[(t, p)]["best"].append(ns["fairgate"] / min(ns[n] for n in FAIR_PEERS))
        paired[(t, p)]["tokio"].append(ns["fairgate"] / ns["tokio"])
    return paired


def paired_table(paired):
    out = ["\n### Paired ratios: fairgate / best fair peer within each repetition\n"]
    out.append("| T | P | per repetition | median | fairgate / tokio, median |")
    out.append("|---:|---:|---|---:|---:|")
    for (t, p), v in sorted(paired.items()):
        reps = " ".join(f"{x:.2f}" for x in v["best"])
        out.append(
            f"| {t} | {p} | {reps} | {statistics.median(v['best']):.2f} | {statistics.median(v['tokio']):.2f} |"
        )
    return "\n".join(out)


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def points(med):
    return sorted({(t, p) for (t, p, _) in med})


def tables(med):
    out = []
    pts = points(med)
    reps = max(v["reps"] for v in med.values())
    out.append(f"Medians over {reps} repetitions.\n")
    out.append("### ns/op (lower is better) and fairgate's ratios\n")
    head = "| T | P | " + " | ".join(ORDER) + " | fairgate / floor | fairgate / best fair peer (which) | fairgate / tokio | fairgate / maitake | fairgate / f-i(fair) | fairgate / async-lock |"
    out.append(head)
    out.append("|" + "---:|" * 2 + "---:|" * len(ORDER) + "---:|" * 6)
    for t, p in pts:
        cells = []
        for name in ORDER:
            v = med.get((t, p, name))
            cells.append(f"{v['ns_per_op']:.0f}" if v else "n/a")
        fg = med[(t, p, "fairgate")]["ns_per_op"]
        floor = med[(t, p, "floor")]["ns_per_op"]
        best = min(FAIR_PEERS, key=lambda n: med[(t, p, n)]["ns_per_op"])
        ratios = [
            f"{fg / floor:.2f}",
            f"{fg / med[(t, p, best)]['ns_per_op']:.2f} ({best})",
        ] + [f"{fg / med[(t, p, n)]['ns_per_op']:.2f}" for n in FAIR_PEERS + ["async-lock(unfair)"]]
        out.append(f"| {t} | {p} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")

    out.append("\n### Wait (acquire call → permit held): p99 / max, and Jain's index\n")
    out.append("| T | P | " + " | ".join(ORDER) + " |")
    out.append("|" + "---:|" * 2 + "---|" * len(ORDER))
    for t, p in pts:
        cells = []
        for name in ORDER:
            v = med.get((t, p, name))
            cells.append(f"{fmt_ns(v['p99'])} / {fmt_ns(v['max'])} / J={v['jain']:.3f}" if v else "n/a")
        out.append(f"| {t} | {p} | " + " | ".join(cells) + " |")

    out.append("\n### Goal check per point (fair peers only)\n")
    out.append("| T | P | ns/op ≤ 0.8 × best fair peer | max wait ≤ best fair peer's | Jain ≥ 0.99 (median; min over reps) |")
    out.append("|---:|---:|---|---|---|")
    for t, p in pts:
        fg = med[(t, p, "fairgate")]
        best = min(FAIR_PEERS, key=lambda n: med[(t, p, n)]["ns_per_op"])
        best_max = min(med[(t, p, n)]["max"] for n in FAIR_PEERS)
        r = fg["ns_per_op"] / med[(t, p, best)]["ns_per_op"]
        out.append(
            f"| {t} | {p} | {'met' if r <= 0.8 else 'missed'} ({r:.2f}×) "
            f"| {'met' if fg['max'] <= best_max else 'missed'} ({fmt_ns(fg['max'])} vs {fmt_ns(best_max)}) "
            f"| {'met' if fg['jain'] >= 0.99 else 'missed'} ({fg['jain']:.4f}; {fg['jain_min']:.4f}) |"
        )
    return "\n".join(out)


def svg(med, path):
    pts = points(med)
    names = ORDER
    W, panel_h, top, left, right = 1100, 300, 40, 90, 20
    gap = 70
    H = top + 2 * panel_h + gap + 110
    plot_w = W - left - right
    group_w = plot_w / len(pts)
    bar_w = group_w * 0.8 / len(names)
    el = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="16">Contended: T tasks × P permits, 2 tokio workers, acquire → yield_now → release (median of reps)</text>',
    ]

    def panel(y0, title, key, log, unit_fmt):
        vals = [med[(t, p, n)][key] for (t, p) in pts for n in names if (t, p, n) in med]
        vmax = max(vals)
        if log:
            lo = 10 ** math.floor(math.log10(max(min(v for v in vals if v > 0), 1)))
            hi = 10 ** math.ceil(math.log10(vmax))

            def y(v):
                v = max(v, lo)
                return y0 + panel_h - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * panel_h

            ticks = []
            e = math.log10(lo)
            while e <= math.log10(hi) + 1e-9:
                ticks.append(10 ** e)
                e += 1
        else:
            step = 10 ** math.floor(math.log10(vmax))
            hi = math.ceil(vmax / step) * step
            lo = 0

            def y(v):
                return y0 + panel_h - v / hi * panel_h

            ticks = [i * step for i in range(int(hi / step) + 1)]
        el.append(f'<text x="{left}" y="{y0 - 8}" font-size="14">{title}</text>')
        for tv in ticks:
            yy = y(tv)
            el.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{W - right}" y2="{yy:.1f}" stroke="#ddd"/>')
            el.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{unit_fmt(tv)}</text>')
        el.append(f'<line x1="{left}" y1="{y0}" x2="{left}" y2="{y0 + panel_h}" stroke="black"/>')
        el.append(f'<line x1="{left}" y1="{y0 + panel_h}" x2="{W - right}" y2="{y0 + panel_h}" stroke="black"/>')
        for gi, (t, p) in enumerate(pts):
            gx = left + gi * group_w + group_w * 0.1
            for ni, n in enumerate(names):
                v = med.get((t, p, n))
                if not v:
                    continue
                yy = y(v[key])
                x = gx + ni * bar_w
                el.append(
                    f'<rect x="{x:.1f}" y="{yy:.1f}" width="{bar_w - 1:.1f}" height="{y0 + panel_h - yy:.1f}" fill="{COLORS[n]}">'
                    f"<title>{n} T={t} P={p}: {unit_fmt(v[key])}</title></rect>"
                )
            el.append(
                f'<text x="{left + gi * group_w + group_w / 2:.1f}" y="{y0 + panel_h + 16}" text-anchor="middle">T={t} P={p}</text>'
            )

    def ops_fmt(v):
        return f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"

    panel(top + 20, "Throughput, ops/s (higher is better)", "ops_per_s", False, ops_fmt)
    panel(top + 20 + panel_h + gap, "Max wait (log scale, lower is better)", "max", True, fmt_ns)
    ly = H - 30
    for i, n in enumerate(names):
        x = left + i * (plot_w / len(names))
        el.append(f'<rect x="{x:.1f}" y="{ly - 10}" width="12" height="12" fill="{COLORS[n]}"/>')
        el.append(f'<text x="{x + 16:.1f}" y="{ly}">{n}</text>')
    el.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(el) + "\n")


def criterion_summary(path):
    """Median estimates from criterion's text output, per group, with ratios to floor/fairgate."""
    import re

    groups = defaultdict(dict)
    name = None
    unit = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^(\S+/\S+)(\s+time:.*)?$", line.rstrip())
        if m and not line.startswith(" "):
            name = m.group(1)
            line = m.group(2) or ""
        t = re.search(r"time:\s+\[(\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\]", line)
        if t and name:
            mid = float(t.group(3)) * unit[t.group(4)]
            group, impl = name.rsplit("/", 1)
            groups[group][impl] = mid
            name = None
    out = []
    for group, d in groups.items():
        per_op = 1.0
        m = re.search(r"T(\d+)_P", group)
        if m:
            per_op = float(m.group(1)) * max(16, 16384 // int(m.group(1)))
        elif group.startswith("handoff"):
            per_op = 4000.0
        fl = d.get("floor")
        fg = d.get("fairgate")
        out.append(f"\n#### {group} (ns per acquisition)\n")
        out.append("| implementation | ns | / floor | fairgate / this |")
        out.append("|---|---:|---:|---:|")
        for impl in ORDER:
            if impl not in d:
                continue
            v = d[impl] / per_op
            out.append(
                f"| {impl} | {v:.1f} | {d[impl] / fl:.2f} | {fg / d[impl]:.2f} |" if fl and fg else f"| {impl} | {v:.1f} | | |"
            )
    print("\n".join(out))


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--criterion":
        criterion_summary(sys.argv[2])
        return
    src = sys.argv[1] if len(sys.argv) > 1 else "bench-results/fairness.csv"
    dst = sys.argv[2] if len(sys.argv) > 2 else "bench-results/contended.svg"
    med = load(src)
    print(tables(med))
    print(paired_table(load_paired(src)))
    svg(med, dst)
    print(f"\nwrote {dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
