"""Small server-rendered SVG line charts (no JavaScript chart library, works offline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

_W, _H, _PAD = 320, 120, 24


@dataclass(frozen=True)
class Chart:
    title: str
    latest: str
    svg: str


def percent_chart(title: str, points: Sequence[tuple[datetime, float]], colour: str) -> Chart:
    """A 0-100 % line over time; `points` sorted by time."""
    label = escape(title)
    if not points:
        svg = (
            f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{label}: no data">'
            f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" fill="#4a5563">'
            "no data yet</text></svg>"
        )
        return Chart(title, "-", svg)
    step = max(1, len(points) // 300)  # at most ~300 points drawn
    sample = list(points[::step])
    if sample[-1] != points[-1]:
        sample.append(points[-1])
    t0 = sample[0][0].timestamp()
    span = max(sample[-1][0].timestamp() - t0, 1.0)
    coords = " ".join(
        f"{_PAD + (t.timestamp() - t0) / span * (_W - 2 * _PAD):.1f},"
        f"{_H - _PAD - max(0.0, min(v, 100.0)) / 100 * (_H - 2 * _PAD):.1f}"
        for t, v in sample
    )
    latest = points[-1][1]
    start, end = sample[0][0].strftime("%H:%M"), sample[-1][0].strftime("%H:%M")
    svg = (
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{label}: {len(points)} samples from {start} to {end} UTC, '
        f'latest {latest:.1f} percent">'
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_W - _PAD}" y2="{_PAD}" stroke="#e5e9ef"/>'
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#8894a3"/>'
        f'<text x="2" y="{_PAD + 4}" font-size="10" fill="#4a5563">100%</text>'
        f'<text x="2" y="{_H - _PAD + 4}" font-size="10" fill="#4a5563">0%</text>'
        f'<text x="{_PAD}" y="{_H - 6}" font-size="10" fill="#4a5563">{start}</text>'
        f'<text x="{_W - _PAD}" y="{_H - 6}" font-size="10" fill="#4a5563" '
        f'text-anchor="end">{end}</text>'
        f'<polyline class="line" stroke="{colour}" points="{coords}"/></svg>'
    )
    return Chart(title, f"{latest:.1f} %", svg)
