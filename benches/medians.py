#!/usr/bin/env python3
"""Prints the median of every criterion benchmark of a group, from target/criterion.

    python3 benches/medians.py pick [target/criterion]

One row per benchmark (ns per iteration, as criterion measured it), with its ratio to a
baseline of the same group and parameter when the group has one (floor_cloned by default,
`--baseline NAME` to choose). For `N_threads` parameters an iteration is one pick on each of N
threads, and the row also gives the aggregate picks per second.
"""

import json
import pathlib
import sys


def main(argv):
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


if __name__ == "__main__":
    main(sys.argv)
