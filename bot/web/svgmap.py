"""A map-like plot of grids and report points, drawn as inline SVG from our own data.

No tile server is reachable, so the map is the grids' polygons (GeoJSON areas parsed
by :func:`bot.domain.geo.parse_area`) and the reports' points on a plain background.

**Projection.** Equirectangular about the middle latitude: x = longitude × cos(latitude),
y = latitude, then y is flipped (SVG's y grows downwards). Exact enough for a community
a few kilometres across, and it keeps angles and distances looking right there.

**Degenerate extents.** One point, or points on a line, have no width or height: the
extent is widened to at least :data:`MIN_SPAN_DEG` around its centre so the drawing has
a scale. With nothing to draw, :func:`draw` returns None and the page says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from markupsafe import Markup

from bot.domain.geo import Area, BBox, Ring

WIDTH = 800.0
PADDING = 28.0
MIN_SPAN_DEG = 0.002  # about 200 m: the narrowest extent drawn
MIN_ASPECT, MAX_ASPECT = 0.45, 1.1  # height / width of the drawing
MARKER = 7.0
LABEL_DROP = 22.0  # the label's baseline below the top of its grid
# A marker differs by shape as well as colour, so the state does not rest on colour alone.
STYLES = {
    "reported": ("#cf222e", "circle"),
    "accepted": ("#9a6700", "square"),
    "resolved": ("#1a7f37", "diamond"),
    "rejected": ("#59636e", "triangle"),
}
GRID_FILL = "#dbe9f8"
GRID_STROKE = "#0b5cad"


@dataclass(frozen=True, slots=True)
class Shape:
    """A grid to draw: its name (the label) and its area."""

    name: str
    area: Area


@dataclass(frozen=True, slots=True)
class Point:
    """A report to draw: where, what state (colour and shape), its link and tooltip."""

    lat: float
    lng: float
    kind: str
    href: str
    title: str


@dataclass(frozen=True, slots=True)
class Frame:
    """Maps (lng, lat) to SVG user units."""

    west: float
    north: float
    kx: float  # cos(middle latitude): a degree of longitude is this much of one of latitude
    scale: float  # SVG units per degree of latitude
    dx: float
    dy: float
    height: float

    def xy(self, lng: float, lat: float) -> tuple[float, float]:
        return (
            self.dx + (lng - self.west) * self.kx * self.scale,
            self.dy + (self.north - lat) * self.scale,
        )


def extent(shapes: Sequence[Shape], points: Sequence[Point]) -> BBox | None:
    """``(west, south, east, north)`` of everything to draw, None if there is nothing."""
    boxes = [s.area.bbox for s in shapes] + [(p.lng, p.lat, p.lng, p.lat) for p in points]
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def frame(box: BBox, width: float = WIDTH) -> Frame:
    """Fit ``box`` (widened if degenerate) into ``width`` units, keeping its proportions."""
    west, south, east, north = _widened(box)
    kx = math.cos(math.radians((south + north) / 2))
    span_x = (east - west) * kx
    span_y = north - south
    inner_w = width - 2 * PADDING
    aspect = min(MAX_ASPECT, max(MIN_ASPECT, span_y / span_x))
    height = round(width * aspect, 1)
    inner_h = height - 2 * PADDING
    scale = min(inner_w / span_x, inner_h / span_y)
    # Centre the drawing in whichever direction it does not fill.
    dx = PADDING + (inner_w - span_x * scale) / 2
    dy = PADDING + (inner_h - span_y * scale) / 2
    return Frame(west, north, kx, scale, dx, dy, height)


def _widened(box: BBox) -> BBox:
    west, south, east, north = box
    if east - west < MIN_SPAN_DEG:
        middle = (west + east) / 2
        west, east = middle - MIN_SPAN_DEG / 2, middle + MIN_SPAN_DEG / 2
    if north - south < MIN_SPAN_DEG:
        middle = (south + north) / 2
        south, north = middle - MIN_SPAN_DEG / 2, middle + MIN_SPAN_DEG / 2
    return west, south, east, north


def draw(
    shapes: Sequence[Shape], points: Sequence[Point], *, label: str, width: float = WIDTH
) -> Markup | None:
    """The SVG (``role="img"``, ``label`` as its accessible name), or None with nothing to draw."""
    box = extent(shapes, points)
    if box is None:
        return None
    f = frame(box, width)
    parts = [
        Markup(
            '<svg class="map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" '
            'role="img" aria-label="{}"><title>{}</title>'
        ).format(_n(width), _n(f.height), label, label)
    ]
    parts += [_shape(s, f) for s in shapes]
    parts += [_label(s, f) for s in shapes]
    parts += [_point(p, f) for p in points]
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _n(value: float) -> str:
    """A coordinate to one decimal: enough for the screen, short in the page."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _ring_path(ring: Ring, f: Frame) -> str:
    corners = [f.xy(lng, lat) for lng, lat in ring[:-1]]  # the closing position is "Z"
    head, *rest = corners
    return f"M{_n(head[0])} {_n(head[1])}" + "".join(f"L{_n(x)} {_n(y)}" for x, y in rest) + "Z"


def _shape(shape: Shape, f: Frame) -> Markup:
    # One path per grid: holes are sub-paths, cut out by the even-odd rule.
    d = "".join(
        _ring_path(ring, f)
        for polygon in shape.area.polygons
        for ring in (polygon.outer, *polygon.holes)
    )
    return Markup(
        '<path class="grid" d="{}" fill="{}" fill-opacity="0.6" fill-rule="evenodd" '
        'stroke="{}" stroke-width="2"><title>{}</title></path>'
    ).format(d, GRID_FILL, GRID_STROKE, shape.name)


def _label(shape: Shape, f: Frame) -> Markup:
    x, y = _label_at(shape, f)
    return Markup(
        '<text class="grid-label" x="{}" y="{}" text-anchor="middle" font-size="15" '
        'font-weight="600" fill="#1f2328" stroke="#fff" stroke-width="4" '
        'paint-order="stroke">{}</text>'
    ).format(_n(x), _n(y), shape.name)


def _label_at(shape: Shape, f: Frame) -> tuple[float, float]:
    """Where the grid's name goes: across the centroid of its largest outer ring, near the
    ring's top (the middle is where report points gather)."""
    rings = [[f.xy(lng, lat) for lng, lat in p.outer] for p in shape.area.polygons]
    best = max(rings, key=lambda r: abs(_twice_area(r)))
    xs, ys = zip(*best, strict=True)
    top, bottom = min(ys), max(ys)
    y = min(top + LABEL_DROP, (top + bottom) / 2)
    twice = _twice_area(best)
    if abs(twice) < 1e-9:
        return sum(xs) / len(xs), y
    cx = 0.0
    for (x1, y1), (x2, y2) in pairwise(best):
        cx += (x1 + x2) * (x1 * y2 - x2 * y1)
    return cx / (3 * twice), y


def _twice_area(ring: Sequence[tuple[float, float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairwise(ring))


def _point(point: Point, f: Frame) -> Markup:
    x, y = f.xy(point.lng, point.lat)
    colour, form = STYLES.get(point.kind, ("#0b5cad", "circle"))
    return Markup('<a href="{}" class="pt {}">{}<title>{}</title></a>').format(
        point.href, point.kind, _marker(form, x, y, colour), point.title
    )


def _marker(form: str, x: float, y: float, colour: str) -> Markup:
    r = MARKER
    paint = Markup('fill="{}" stroke="#fff" stroke-width="2"').format(colour)
    if form == "circle":
        return Markup('<circle cx="{}" cy="{}" r="{}" {}/>').format(_n(x), _n(y), _n(r), paint)
    if form == "square":
        side = r * 1.7
        return Markup('<rect x="{}" y="{}" width="{}" height="{}" {}/>').format(
            _n(x - side / 2), _n(y - side / 2), _n(side), _n(side), paint
        )
    if form == "diamond":
        corners = [(x, y - r * 1.3), (x + r * 1.3, y), (x, y + r * 1.3), (x - r * 1.3, y)]
    else:  # triangle
        corners = [(x, y - r * 1.3), (x + r * 1.2, y + r), (x - r * 1.2, y + r)]
    spots = " ".join(f"{_n(cx)},{_n(cy)}" for cx, cy in corners)
    return Markup('<polygon points="{}" {}/>').format(spots, paint)


def legend() -> list[tuple[str, str, Markup]]:
    """``(state, colour, small SVG marker)`` for each state, for the key beside the map."""
    return [
        (
            state,
            colour,
            Markup(
                '<svg class="key" viewBox="0 0 20 20" width="20" height="20" aria-hidden="true">{}</svg>'
            ).format(_marker(form, 10, 10, colour)),
        )
        for state, (colour, form) in STYLES.items()
    ]
