"""A small self-contained SVG chart of ``bench perf`` results: search latency (p50 solid,
p95 dashed, ms, log y) against memory size (episodes, log x), one colour per store, with
the issue's targets (20 ms at 100k, 50 ms at 1M per tenant) as dashed grey lines.
No plotting library: the file is a few dozen elements anyone can read and diff."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

W, H = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 40, 60
COLOURS = {"sqlite": "#1f77b4", "postgres": "#d62728"}
TARGETS = ((20.0, "target p95 at 100k: 20 ms"), (50.0, "target p95 at 1M: 50 ms"))


def _log_ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= v <= hi:
                out.append(v)
    return out


def _label(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:g}M"
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def render(rows: Sequence[dict[str, Any]], title: str = "memstrata bench perf: search latency, largest tenant") -> str:
    pts = [r for r in rows if r.get("search_ms_p50") is not None and r.get("size")]
    if not pts:
        raise ValueError("no results with search latencies to plot")
    sizes = [float(r["size"]) for r in pts]
    ms = [float(r[k]) for r in pts for k in ("search_ms_p50", "search_ms_p95")] + [t for t, _ in TARGETS]
    x_lo, x_hi = min(sizes) / 1.5, max(sizes) * 1.5
    y_lo, y_hi = max(0.1, min(ms) / 1.5), max(ms) * 1.5
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(v: float) -> float:
        return LEFT + pw * (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo))

    def y(v: float) -> float:
        return TOP + ph * (1 - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)))

    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
          'font-family="sans-serif" font-size="12">',
          f'<rect width="{W}" height="{H}" fill="white"/>',
          f'<text x="{W / 2:.1f}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
          f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>']
    for v in _log_ticks(x_lo, x_hi):
        el.append(f'<line x1="{x(v):.1f}" y1="{TOP + ph}" x2="{x(v):.1f}" y2="{TOP + ph + 5}" stroke="#333"/>')
        el.append(f'<text x="{x(v):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{_label(v)}</text>')
    for v in _log_ticks(y_lo, y_hi):
        el.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + pw}" y2="{y(v):.1f}" stroke="#eee"/>')
        el.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_label(v)}</text>')
    el.append(f'<text x="{LEFT + pw / 2:.1f}" y="{H - 18}" text-anchor="middle">'
              'episodes in the store (log scale; largest tenant holds a share)</text>')
    el.append(f'<text transform="translate(18 {TOP + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
              'search latency, ms (log scale)</text>')
    for value, text in TARGETS:
        if y_lo <= value <= y_hi:
            el.append(f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{LEFT + pw}" y2="{y(value):.1f}" '
                      'stroke="#888" stroke-dasharray="6 4"/>')
            el.append(f'<text x="{LEFT + 4}" y="{y(value) - 3:.1f}" fill="#666" font-size="10">'
                      f'{escape(text)}</text>')
    stores = list(dict.fromkeys(str(r["store"]) for r in pts))
    for i, store in enumerate(stores):
        colour = COLOURS.get(store, ["#2ca02c", "#9467bd", "#8c564b"][i % 3])
        mine = sorted((r for r in pts if r["store"] == store), key=lambda r: r["size"])
        for key, dash, name in (("search_ms_p50", "", "p50"), ("search_ms_p95", ' stroke-dasharray="4 3"', "p95")):
            coords = " ".join(f"{x(float(r['size'])):.1f},{y(float(r[key])):.1f}" for r in mine)
            el.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            for r in mine:
                el.append(f'<circle cx="{x(float(r["size"])):.1f}" cy="{y(float(r[key])):.1f}" r="3" '
                          f'fill="{colour}"><title>{escape(store)} {name} at {r["size"]:,}: '
                          f'{float(r[key]):.2f} ms</title></circle>')
            ly = TOP + 10 + 40 * i + (0 if name == "p50" else 16)
            el.append(f'<line x1="{LEFT + pw + 6}" y1="{ly}" x2="{LEFT + pw + 30}" y2="{ly}" stroke="{colour}" '
                      f'stroke-width="2"{dash}/>')
            el.append(f'<text x="{LEFT + pw + 34}" y="{ly + 4}">{escape(store)} {name}</text>')
    el.append("</svg>")
    return "\n".join(el) + "\n"
