"""Charts drawn on the server as inline SVG: no script, no CDN, readable without colour.

Every chart is an ``<svg class="chart" role="img">`` with an ``aria-label`` and a
``<title>``; each bar carries its number as text, so the figure reads in greyscale
and print. Pages show the same numbers in a table next to the chart for screen
readers and keyboard users (an image's numbers cannot be tabbed through).

Coordinates are in a fixed ``viewBox``; CSS scales the drawing to the page's width,
so it stays sharp at any zoom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Colours with at least 4.5:1 contrast on white (the numbers are drawn in ink anyway).
TONES = {
    "main": "#0b5cad",
    "ok": "#1a7f37",
    "warn": "#9a6700",
    "bad": "#cf222e",
    "muted": "#8c959f",
}
INK = "#1f2328"
GRID = "#d0d7de"
FONT = 14


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    tone: str = "main"
    note: str = ""  # a second line under the label (e.g. the year under a month)


@dataclass(frozen=True, slots=True)
class Marker:
    """A line across a chart at ``value`` (a target such as the quorum), with its label."""

    value: int
    label: str


def nice_scale(largest: int, ticks: int = 4) -> tuple[int, int]:
    """(top, step): an axis from 0 to ``top`` in whole steps of 1, 2 or 5 × 10ⁿ."""
    if largest <= 0:
        return ticks, 1
    raw = largest / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = magnitude * 10
    for multiple in (1, 2, 5, 10):
        if multiple * magnitude * ticks >= largest:
            step = multiple * magnitude
            break
    whole = max(int(step), 1)
    return whole * math.ceil(largest / whole), whole


def column_chart(bars: Sequence[Bar], *, label: str, unit: str) -> Markup:
    """Upright bars side by side (one per month), a y axis in ``unit``, the value on each bar."""
    width, height = 520, 260
    left, right, top, bottom = 44, 8, 30, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    scale_top, step = nice_scale(max((b.value for b in bars), default=0))
    parts = [_open(width, height, label)]
    for tick in range(0, scale_top + 1, step):
        y = top + plot_h - plot_h * tick / scale_top
        parts.append(_line(left, y, width - right, y, GRID))
        parts.append(_text(left - 6, y + 4, str(tick), anchor="end"))
    parts.append(_text(6, 16, unit, anchor="start"))
    slot = plot_w / max(len(bars), 1)
    for i, bar in enumerate(bars):
        x = left + slot * i
        h = plot_h * bar.value / scale_top
        bar_x, bar_w = x + slot * 0.2, slot * 0.6
        parts.append(_rect(bar_x, top + plot_h - h, bar_w, h, bar.tone, f"{bar.label} {bar.value}"))
        parts.append(_text(x + slot / 2, top + plot_h - h - 5, str(bar.value), bold=True))
        parts.append(_text(x + slot / 2, top + plot_h + 18, bar.label))
        if bar.note:
            parts.append(_text(x + slot / 2, top + plot_h + 36, bar.note, muted=True))
    parts.append(_line(left, top + plot_h, width - right, top + plot_h, INK))
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    bars: Sequence[Bar], *, label: str, unit: str, total: int, marker: Marker | None = None
) -> Markup:
    """Bars lying down against a scale of 0 to ``total``, with an optional marker line."""
    row = 40
    width = 640
    names = [_short(b.label) for b in bars]
    # Room for the longest name (a vote's options can be long), within reason.
    left = min(max(76, max((_width(n) for n in names), default=0) + 16), 280)
    right, top, bottom = 80, 34, 30
    plot_w = width - left - right
    height = top + row * len(bars) + bottom
    scale = max(total, 1)
    _, step = nice_scale(scale)
    parts = [_open(width, height, label)]
    axis_y = top + row * len(bars)
    for tick in range(0, scale + 1, step):
        x = left + plot_w * tick / scale
        parts.append(_line(x, top - 4, x, axis_y, GRID))
        parts.append(_text(x, axis_y + 18, str(tick)))
    parts.append(_text(width - 6, axis_y + 18, unit, anchor="end", muted=True))
    for i, (bar, name) in enumerate(zip(bars, names, strict=True)):
        y = top + row * i
        w = plot_w * min(bar.value, scale) / scale
        parts.append(_text(left - 8, y + row / 2 + 5, name, anchor="end"))
        parts.append(_rect(left, y + 8, w, row - 16, bar.tone, f"{bar.label} {bar.value}{unit}"))
        parts.append(
            _text(left + w + 6, y + row / 2 + 5, f"{bar.value} {unit}", anchor="start", bold=True)
        )
    parts.append(_line(left, top - 4, left, axis_y, INK))
    if marker is not None and total > 0:
        x = left + plot_w * min(marker.value, scale) / scale
        parts.append(_line(x, top - 10, x, axis_y, TONES["bad"], dashed=True, width=2))
        parts.append(_text(x, top - 14, marker.label, bold=True))
    parts.append("</svg>")
    return Markup("".join(parts))


# --- drawing --------------------------------------------------------------------------

MAX_LABEL = 16


def _width(text: str) -> int:
    """Roughly how wide ``text`` is drawn: a Chinese character is about twice a digit."""
    return math.ceil(sum(FONT if ord(c) > 0x2E80 else FONT * 0.6 for c in text))


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _open(width: int, height: int, label: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
        f'font-size="{FONT}" font-family="system-ui, sans-serif">'
        f"<title>{escape(label)}</title>"
    )


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _line(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    colour: str,
    *,
    dashed: bool = False,
    width: float = 1,
) -> str:
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    return (
        f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" '
        f'stroke="{colour}" stroke-width="{_n(width)}"{dash}/>'
    )


def _rect(x: float, y: float, w: float, h: float, tone: str, name: str) -> str:
    fill = TONES.get(tone, TONES["main"])
    return (
        f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" fill="{fill}">'
        f"<title>{escape(name)}</title></rect>"
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "middle",
    bold: bool = False,
    muted: bool = False,
) -> str:
    weight = ' font-weight="700"' if bold else ""
    colour = "#59636e" if muted else INK
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="{colour}"{weight}>'
        f"{escape(text)}</text>"
    )
