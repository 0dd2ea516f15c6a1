#!/usr/bin/env python3
"""Draws the scale benchmark's curves (tests/src/bin/scale_bench.rs) as SVG.

    python3 tests/bench/plot_scale.py SCALE_CSV OUT_DIR [--title TEXT]

Writes OUT_DIR/scale-<sweep>.svg for each sweep in the CSV (channels, datanodes,
collections): four panels over the sweep's values, distributed solid and standalone
dashed: rows/s (inserted, and durable: until every row is in a committed segment),
request latency (p50, p99), peak RSS (largest data node; standalone: the process),
and CPU seconds per GiB inserted, per process. With several rounds per point
(scale_bench --repeat), a line joins the medians and a bar spans the rounds' range.
Python's standard library only.
"""

import argparse
import csv
import math
import os
import sys
from xml.sax.saxutils import escape

SWEEP_AXIS = {
    "channels": "channels",
    "datanodes": "data nodes",
    "collections": "collections",
}
PANEL_W, PANEL_H = 330, 300
# The bottom margin holds the axis label and the legend (two columns).
MARGIN = dict(left=58, right=12, top=34, bottom=94)
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
GIB_ROWS = 1024**3 / (8 + 4 * 128)  # rows per GiB of client payload (pk + 128 f32)


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def nice_max(v):
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above v."""
    if not v or v <= 0 or math.isnan(v):
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def fmt(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def panel(x0, y0, title, xlabel, xs, series, ylabel):
    """One chart: xs are category labels spaced evenly; series are
    (name, per-x lists of the rounds' values (empty for missing), color, dashed)."""
    out = []
    left, top = x0 + MARGIN["left"], y0 + MARGIN["top"]
    w = PANEL_W - MARGIN["left"] - MARGIN["right"]
    h = PANEL_H - MARGIN["top"] - MARGIN["bottom"]
    values = [v for _, per_x, _, _ in series for vs in per_x for v in vs]
    ymax = nice_max(max(values) if values else 1.0)
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{y0 + 16}" text-anchor="middle" '
               f'font-weight="bold">{escape(title)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
    for i in range(6):
        v = ymax * i / 5
        y = top + h - h * i / 5
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + w}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" font-size="10">{fmt(v)}</text>')
    n = len(xs)

    def xpos(i):
        return left + (w * (i + 0.5) / n)

    for i, label in enumerate(xs):
        out.append(f'<text x="{xpos(i)}" y="{top + h + 14}" text-anchor="middle" font-size="10">{escape(str(label))}</text>')
    out.append(f'<text x="{left + w / 2}" y="{top + h + 30}" text-anchor="middle" font-size="11">{escape(xlabel)}</text>')
    out.append(f'<text x="{x0 + 12}" y="{top + h / 2}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 {x0 + 12} {top + h / 2})">{escape(ylabel)}</text>')
    legend_top = top + h + 48
    legend_i = 0
    def ypos(v):
        return top + h - h * v / ymax

    for name, per_x, color, dashed in series:
        pts = [(xpos(i), ypos(median(vs))) for i, vs in enumerate(per_x) if vs]
        if not pts:
            continue
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        for i, vs in enumerate(per_x):
            if len(vs) > 1:
                out.append(f'<line x1="{xpos(i):.1f}" y1="{ypos(min(vs)):.1f}" x2="{xpos(i):.1f}" '
                           f'y2="{ypos(max(vs)):.1f}" stroke="{color}" stroke-opacity="0.5" stroke-width="5"/>')
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        lx = left + (legend_i % 2) * (w / 2)
        ly = legend_top + (legend_i // 2) * 13
        legend_i += 1
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 18}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 22}" y="{ly}" font-size="10">{escape(name)}</text>')
    return out


def sweep_svg(sweep, rows, title):
    xs = sorted({int(r[sweep]) for r in rows})
    modes = [m for m in ("distributed", "standalone") if any(r["mode"] == m for r in rows)]

    def per_x(mode, value):
        """For each x, value(row) of every round of mode at x (None left out)."""
        out = []
        for x in xs:
            vs = [value(r) for r in rows if r["mode"] == mode and int(r[sweep]) == x]
            out.append([v for v in vs if v is not None])
        return out

    def values(mode, column):
        return per_x(mode, lambda r: number(r[column]))

    def cpu_per_gib(mode, column):
        def per_gib(r):
            s = number(r[column])
            return None if s is None else s / (float(r["rows"]) / GIB_ROWS)
        return per_x(mode, per_gib)

    panels = []
    throughput, latency, memory, cpu = [], [], [], []
    for mode in modes:
        dashed = mode == "standalone"
        short = "dist" if mode == "distributed" else "standalone"
        throughput.append((f"{short} inserted", values(mode, "insert_rows_per_s"), COLORS[0], dashed))
        throughput.append((f"{short} durable", values(mode, "durable_rows_per_s"), COLORS[1], dashed))
        latency.append((f"{short} p50", values(mode, "latency_p50_ms"), COLORS[0], dashed))
        latency.append((f"{short} p99", values(mode, "latency_p99_ms"), COLORS[1], dashed))
        memory.append((f"{short} data node" if mode == "distributed" else "standalone process",
                       values(mode, "datanode_rss_mib"), COLORS[2], dashed))
        if mode == "distributed":
            memory.append(("dist proxy", values(mode, "proxy_rss_mib"), COLORS[3], dashed))
            kinds = [("broker", "cpu_broker_s"), ("proxy", "cpu_proxy_s"),
                     ("data nodes", "cpu_datanode_s"), ("clients", "cpu_clients_s")]
        else:
            kinds = [("standalone", "cpu_standalone_s"), ("sa clients", "cpu_clients_s")]
        for i, (name, column) in enumerate(kinds):
            color = COLORS[(i + (0 if mode == "distributed" else 4)) % len(COLORS)]
            cpu.append((name, cpu_per_gib(mode, column), color, dashed))
    axis = SWEEP_AXIS.get(sweep, sweep)
    panels.append(("rows/s", "rows per second", throughput))
    panels.append(("request latency", "ms", latency))
    panels.append(("peak RSS", "MiB", memory))
    panels.append(("CPU per GiB inserted", "CPU seconds / GiB", cpu))
    width, height = PANEL_W * len(panels), PANEL_H + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="8" y="18" font-size="13">{escape(f"ingest vs {axis} — {title}")}</text>']
    for i, (ptitle, ylabel, series) in enumerate(panels):
        out += panel(PANEL_W * i, 30, ptitle, axis, xs, series, ylabel)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("out_dir")
    ap.add_argument("--title", default="scale_bench")
    a = ap.parse_args()
    with open(a.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{a.csv}: no points")
    os.makedirs(a.out_dir, exist_ok=True)
    sweeps = []
    for r in rows:
        if r["sweep"] not in sweeps:
            sweeps.append(r["sweep"])
    for sweep in sweeps:
        if sweep not in SWEEP_AXIS:
            sys.exit(f"{a.csv}: unknown sweep {sweep!r}")
        path = os.path.join(a.out_dir, f"scale-{sweep}.svg")
        with open(path, "w") as f:
            f.write(sweep_svg(sweep, [r for r in rows if r["sweep"] == sweep], a.title))
        print(path)


if __name__ == "__main__":
    main()
