"""Small inline SVG charts (no JavaScript, no external assets): a histogram and a line of frame scores."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np


def histogram_svg(
    values: Sequence[float],
    *,
    bins: int = 40,
    marker: float | None = None,
    marker_label: str = "",
    width: int = 640,
    height: int = 180,
) -> str:
    """Bars of `values`' histogram with an optional vertical marker (the task threshold)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return "<p class='muted'>no scores to plot</p>"
    lo, hi = float(v.min()), float(v.max())
    if marker is not None:
        lo, hi = min(lo, marker), max(hi, marker)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    pad, top = 30, max(int(counts.max()), 1)
    plot_w, plot_h = width - 2 * pad, height - 2 * pad

    def x(val: float) -> float:
        return pad + (val - lo) / (hi - lo) * plot_w

    bars = []
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        h = c / top * plot_h
        bars.append(
            f"<rect x='{x(a):.1f}' y='{pad + plot_h - h:.1f}' width='{max(x(b) - x(a) - 1, 0.5):.1f}' "
            f"height='{h:.1f}'><title>{a:.3g} to {b:.3g}: {c}</title></rect>"
        )
    parts = [
        f"<svg class='chart' viewBox='0 0 {width} {height}' width='{width}' height='{height}' role='img' "
        f"aria-label='histogram of {len(v)} values'>",
        "<g class='bars'>",
        *bars,
        "</g>",
        f"<line class='axis' x1='{pad}' y1='{pad + plot_h}' x2='{pad + plot_w}' y2='{pad + plot_h}'/>",
        f"<text x='{pad}' y='{height - 8}'>{lo:.3g}</text>",
        f"<text x='{pad + plot_w}' y='{height - 8}' text-anchor='end'>{hi:.3g}</text>",
        f"<text x='{pad - 4}' y='{pad + 4}' text-anchor='end'>{top}</text>",
    ]
    if marker is not None:
        mx = x(marker)
        parts.append(f"<line class='marker' x1='{mx:.1f}' y1='{pad - 10}' x2='{mx:.1f}' y2='{pad + plot_h}'/>")
        # The label runs away from the nearer edge: right of the line in the left half, left of it in the right.
        side = f"x='{mx + 3:.1f}'" if mx < width / 2 else f"x='{mx - 3:.1f}' text-anchor='end'"
        parts.append(f"<text class='marker' {side} y='{pad - 12}'>{html.escape(marker_label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def frame_scores_svg(scores: Sequence[float | None], *, cell: int = 64, height: int = 60) -> str:
    """A line over the frame strip: each frame's similarity to the query (None where unknown)."""
    vals = [s for s in scores if s is not None]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    width = cell * len(scores)
    pts, dots = [], []
    for i, s in enumerate(scores):
        if s is None:
            continue
        px = i * cell + cell / 2
        py = 6 + (1 - (s - lo) / span) * (height - 12)
        pts.append(f"{px:.1f},{py:.1f}")
        dots.append(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='3'><title>frame {i}: {s:.4f}</title></circle>")
    return (
        f"<svg class='chart framechart' viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
        f"role='img' aria-label='similarity of each frame to the query'>"
        f"<polyline points='{' '.join(pts)}'/>{''.join(dots)}"
        f"<text x='2' y='10'>{hi:.3f}</text><text x='2' y='{height - 2}'>{lo:.3f}</text></svg>"
    )
