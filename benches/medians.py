#!/usr/bin/env python3
"""Prints the median of every criterion benchmark of a group, from target/criterion.

    python3 benches/medians.py pick [target/criterion]

One row per benchmark (ns per iteration, as criterion measured it), with its ratio to a
baseline of the same group and parameter when the group has one (floor_cloned by default,
`--baseline NAME` to choose). For `N_threads` parameters an iteration is one pick on each of N
threads, and the row also gives the aggregate picks per second.

    python3 benches/medians.py contention --svg docs/contention.svg

also draws the aggregate picks per second of every benchmark against the thread count (an
SVG line chart, written with no library), the chart BENCHMARKS.md shows.
"""

import json
import pathlib
import sys


def main(argv):
    svg = None
    if "--svg" in argv:
        i = argv.index("--svg")
        if i + 1 >= len(argv):
            sys.exit("usage: medians.py GROUP [CRITERION_DIR] [--svg PATH]")
        svg = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    args = [a for a in argv[1:] if not a.startswith("--")]
    baseline = "floor_cloned"
    if "--baseline" in argv:
        i = argv.index("--baseline")
        if i + 1 >= len(argv):
            sys.exit("usage: medians.py GROUP [CRITERION_DIR] [--baseline NAME]")
        baseline = argv[i + 1]
        args = [a for a in args if a != baseline]
    if not args:
        sys.exit("usage: medians.py GROUP [CRITERION_DIR] [--baseline NAME]")
    group = args[0]
    root = pathlib.Path(args[1] if len(args) > 1 else "target/criterion") / group
    if not root.is_dir():
        sys.exit(f"no results for group {group!r} under {root.parent}")
    rows = {}
    for est in sorted(root.glob("*/*/new/estimates.json")):
        bench = json.loads((est.parent / "benchmark.json").read_text())
        median = json.loads(est.read_text())["median"]["point_estimate"]
        rows[(bench["function_id"], bench.get("value_str") or "")] = median
    params = sorted({p for _, p in rows}, key=lambda p: (len(p), p))
    for p in params:
        base = rows.get((baseline, p))
        print(f"{group} / {p}")
        for (name, q), median in sorted(rows.items(), key=lambda kv: kv[1]):
            if q != p:
                continue
            ratio = f"{median / base:6.2f}x" if base else ""
            extra = ""
            if p.endswith("_threads"):
                threads = int(p.split("_")[0])
                extra = f"  {threads * 1000 / median:8.1f} M/s aggregate"
            print(f"  {name:<28} {median:>10.1f} ns  {ratio}{extra}")
    if svg:
        scaling_chart(group, rows, svg)
        print(f"chart written to {svg}")


def scaling_chart(group, rows, path):
    """Aggregate M picks/s against threads, one line per benchmark, as a plain SVG."""
    series = {}
    for (name, p), median in rows.items():
        if p.endswith("_threads"):
            threads = int(p.split("_")[0])
            series.setdefault(name, []).append((threads, threads * 1000 / median))
    if not series:
        sys.exit(f"group {group!r} has no N_threads results to chart")
    threads = sorted({t for pts in series.values() for t, _ in pts})
    top = max(v for pts in series.values() for _, v in pts) * 1.1
    w, h, left, right, bottom, top_pad = 900, 520, 70, 230, 50, 40
    x = lambda t: left + (threads.index(t) / max(len(threads) - 1, 1)) * (w - left - right)
    y = lambda v: h - bottom - v / top * (h - bottom - top_pad)
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
               "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="13">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2 - 120}" y="24" font-size="17">{group}: aggregate M picks/s</text>']
    for k in range(6):
        v = top * k / 5
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 8}" y="{y(v) + 4:.1f}" '
                   f'text-anchor="end">{v:.0f}</text>')
    for t in threads:
        out.append(f'<text x="{x(t):.1f}" y="{h - bottom + 20}" text-anchor="middle">'
                   f'{t} thread{"s" if t > 1 else ""}</text>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        c = colours[i % len(colours)]
        pts = sorted(pts)
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"/>')
        ly = top_pad + 18 * i
        out.append(f'<line x1="{w - right + 12}" x2="{w - right + 32}" y1="{ly}" y2="{ly}" '
                   f'stroke="{c}" stroke-width="2"/><text x="{w - right + 38}" y="{ly + 4}">'
                   f'{name}</text>')
    out.append("</svg>")
    pathlib.Path(path).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv)
