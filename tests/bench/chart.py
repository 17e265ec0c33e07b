#!/usr/bin/env python3
"""Draws the benchmark results as an SVG chart, from concur-bench --json output.

usage: chart.py RESULTS.jsonl OUT.svg
       chart.py --markdown RESULTS.jsonl        prints the results as a Markdown table
       chart.py --check RESULTS.jsonl OUT.svg   fails when OUT.svg is not what
                                               RESULTS.jsonl gives (keeps the
                                               committed chart honest)

One row per workload and implementation: how the peer compares with concur.h in the
same run, on a log scale, as "concur is N x faster" (bars to the right of 1) or "the
peer is N x faster" (bars to the left). Lower-is-better units (s, ns, us) are
inverted so that right is always better for concur. Nothing but the standard library.
"""
import json
import math
import sys

LOWER_IS_BETTER = {"s", "ns", "us"}
ORDER = ["W1", "W2", "W3", "W4", "W5", "W5rss", "W6", "W7", "W8", "W8rtt", "W8crash", "W9"]


def load(path):
    rows = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def ratios(rows):
    """(workload, impl, threads, ratio) for every peer row that has a concur row with the
    same workload and thread count; ratio > 1 means concur is faster."""
    concur = {(r["workload"], r["threads"]): r for r in rows if r["impl"] == "concur"}
    out = []
    for r in rows:
        if r["impl"].startswith("concur") or r["value"] <= 0:
            continue  # concur itself, and its own variants (concur-chunk1000)
        c = concur.get((r["workload"], r["threads"]))
        if c is None or c["value"] <= 0:
            continue
        if r["unit"] in LOWER_IS_BETTER or r["unit"] == "KiB":
            ratio = r["value"] / c["value"]
        else:
            ratio = c["value"] / r["value"]
        out.append((r["workload"], r["impl"], r["threads"], ratio))
    key = {w: i for i, w in enumerate(ORDER)}
    out.sort(key=lambda t: (key.get(t[0], len(ORDER)), t[2], t[1]))
    return out


def svg(data):
    row_h, left, width, top = 18, 230, 520, 40
    lo, hi = -2.0, 4.0  # log10 range: the peer 100x faster .. concur 10000x faster
    height = top + row_h * len(data) + 40

    def x(v):
        lv = min(max(math.log10(v), lo), hi)
        return left + (lv - lo) / (hi - lo) * width

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="16" font-size="13">concur.h against each peer, same run '
           f'(right of 1: concur is faster; log scale)</text>']
    for p in range(int(lo), int(hi) + 1):
        gx = x(10.0 ** p)
        out.append(f'<line x1="{gx:.1f}" y1="{top - 8}" x2="{gx:.1f}" y2="{height - 30}" stroke="#ccc"/>')
        label = "1" if p == 0 else (f"{10 ** p:g}x" if p > 0 else f"1/{10 ** -p:g}")
        out.append(f'<text x="{gx:.1f}" y="{height - 16}" text-anchor="middle">{label}</text>')
    one = x(1.0)
    for i, (wl, impl, threads, ratio) in enumerate(data):
        y = top + i * row_h
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{wl} {impl} ({threads})</text>')
        bx = min(one, x(ratio))
        bw = max(abs(x(ratio) - one), 1.0)
        color = "#3a7" if ratio >= 1 else "#c54"
        out.append(f'<rect x="{bx:.1f}" y="{y + 2}" width="{bw:.1f}" height="{row_h - 5}" fill="{color}"/>')
        tx = x(ratio) + 4 if ratio >= 1 else x(ratio) - 4
        anchor = "start" if ratio >= 1 else "end"
        out.append(f'<text x="{tx:.1f}" y="{y + 12}" text-anchor="{anchor}">{ratio:.3g}x</text>')
    out.append(f'<line x1="{one:.1f}" y1="{top - 8}" x2="{one:.1f}" y2="{height - 30}" stroke="#000"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown(rows):
    key = {w: i for i, w in enumerate(ORDER)}
    concur = {(r["workload"], r["threads"]): r for r in rows if r["impl"] == "concur"}
    lines = ["| workload | impl | threads | value | unit | concur vs this |", "|---|---|---|---|---|---|"]
    ordered = sorted(rows, key=lambda r: (key.get(r["workload"], len(ORDER)), r["threads"], r["impl"] != "concur"))
    for r in ordered:
        c = concur.get((r["workload"], r["threads"]))
        rel = ""
        if not r["impl"].startswith("concur") and c and c["value"] > 0 and r["value"] > 0:
            lower = r["unit"] in LOWER_IS_BETTER or r["unit"] == "KiB"
            ratio = r["value"] / c["value"] if lower else c["value"] / r["value"]
            rel = f"{ratio:.3g} x faster" if ratio >= 1 else f"{1 / ratio:.3g} x slower"
        v = r["value"]
        shown = f"{v:.4g}" if abs(v) < 1e6 else f"{v / 1e6:.4g} M"
        lines.append(f"| {r['workload']} | {r['impl']} | {r['threads']} | {shown} | {r['unit']} | {rel} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--markdown":
        sys.stdout.write(markdown(load(args[1])))
        sys.exit(0)
    check = bool(args) and args[0] == "--check"
    if check:
        args = args[1:]
    if len(args) != 2:
        sys.exit(__doc__)
    data = ratios(load(args[0]))
    if not data:
        sys.exit("no concur/peer pairs in the input")
    text = svg(data)
    if check:
        if open(args[1]).read() != text:
            sys.exit(f"{args[1]} is stale: regenerate it with tests/bench/chart.py {args[0]} {args[1]}")
        print(f"{args[1]} matches {args[0]} ({len(data)} bars)")
    else:
        open(args[1], "w").write(text)
