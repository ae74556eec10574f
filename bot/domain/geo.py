"""Grid geometry for reports (报事): GeoJSON areas, point-in-polygon routing, distances.

Pure and standard library only: no I/O, no storage.

**Axis order.** GeoJSON positions are ``[longitude, latitude]`` (RFC 7946 §3.1.1), but
every function here that takes a point takes ``(lat, lng)``, the order of WeChat's
location message: ``Location_X`` is the *latitude*, ``Location_Y`` the *longitude*.
So a WeChat location goes in as ``contains(float(msg.Location_X), float(msg.Location_Y))``
and a GeoJSON position ``[lng, lat]`` must be swapped before it is passed as a point.

**Planar model.** Containment treats longitude/latitude as plane coordinates
(x = longitude, y = latitude), as GeoJSON does (edges are straight lines in lon/lat).
That is exact enough for community-sized grids. Out of scope: areas crossing the
antimeridian (refused: an edge may not span more than 180° of longitude) and areas
around a pole (not detected). Self-intersecting rings are *not* detected (that check
is quadratic); they are still handled deterministically by the even-odd rule. A hole
must lie in its outer ring: its vertices are checked, not its edges.

**Boundaries.** A point on an edge or a vertex (of an outer ring or of a hole), to
within :data:`EDGE_TOLERANCE_DEG` (about 0.1 mm), is inside. Two grids that share an
edge therefore both contain a point on it; :class:`GridIndex` then picks one
deterministically (smallest area, then smallest grid id).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Generic, TypeVar

from bot.domain.errors import Invalid

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), metres."""

MAX_POSITIONS = 20_000
"""Most positions an area may have, over all its rings (closing positions included)."""

EDGE_TOLERANCE_DEG = 1e-9
"""A point this close (in degrees, about 0.1 mm) to an edge is on it, hence inside."""

Position = tuple[float, float]
"""``(lng, lat)``: GeoJSON order (RFC 7946), *not* the ``(lat, lng)`` of function arguments."""

Ring = tuple[Position, ...]
"""A closed ring: at least four positions, the last equal to the first."""

BBox = tuple[float, float, float, float]
"""``(west, south, east, north)`` = ``(min_lng, min_lat, max_lng, max_lat)``, as GeoJSON's bbox."""

Edge = tuple[float, float, float, float]
"""``(x1, y1, x2, y2)``: one edge of a ring, x = longitude, y = latitude."""

GridId = TypeVar("GridId", str, int)
T = TypeVar("T")

_EPS = EDGE_TOLERANCE_DEG
_MIN_RING_AREA_DEG2 = 1e-15  # below this (about 10 mm²) a ring is degenerate
_HOLE_CHECK_BUDGET = 1_000_000  # edge visits spent checking that holes lie in their outer ring
_GEOMETRY_TYPES = "Polygon、MultiPolygon、Feature或FeatureCollection"


# --------------------------------------------------------------------------- areas


@dataclass(frozen=True, slots=True)
class Polygon:
    """One polygon: an outer ring and its holes, positions ``(lng, lat)``.

    Rings are closed and normalised as RFC 7946 recommends: the outer ring
    counterclockwise, holes clockwise, no repeated consecutive positions.
    """

    outer: Ring
    holes: tuple[Ring, ...] = ()
    bbox: BBox = field(init=False, compare=False)
    _outer_edges: tuple[Edge, ...] = field(init=False, compare=False, repr=False)
    _holes: tuple[tuple[BBox, tuple[Edge, ...]], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bbox", _ring_bbox(self.outer))
        object.__setattr__(self, "_outer_edges", _edges(self.outer))
        holes = tuple((_ring_bbox(h), _edges(h)) for h in self.holes)
        object.__setattr__(self, "_holes", holes)

    def contains(self, lat: float, lng: float) -> bool:
        """Inside the outer ring and not inside any hole; on any edge counts as inside."""
        if not _in_box(self.bbox, lng, lat):
            return False
        where = _side(self._outer_edges, lng, lat)
        if where <= 0:
            return where == 0
        for box, edges in self._holes:
            if _in_box(box, lng, lat):
                where = _side(edges, lng, lat)
                if where >= 0:
                    return where == 0
        return True

    @property
    def area_m2(self) -> float:
        """Approximate area on the sphere: the outer ring's less its holes'."""
        inner = sum(_ring_area_m2(h) for h in self.holes)
        return max(0.0, _ring_area_m2(self.outer) - inner)


@dataclass(frozen=True, slots=True)
class Area:
    """A grid's area: one or more polygons (a MultiPolygon), built by :func:`parse_area`.

    Points are passed as ``(lat, lng)`` (WeChat's ``Location_X``, ``Location_Y``);
    stored positions are ``(lng, lat)`` (GeoJSON).
    """

    polygons: tuple[Polygon, ...]
    bbox: BBox = field(init=False, compare=False)
    area_m2: float = field(init=False, compare=False)
    """Approximate area in m² (spherical excess of the lon/lat rings), to rank overlapping
    grids; overlapping parts of several polygons are counted once per polygon."""

    def __post_init__(self) -> None:
        if not self.polygons:
            raise Invalid("区域为空：至少需要一个多边形")
        boxes = [p.bbox for p in self.polygons]
        object.__setattr__(
            self,
            "bbox",
            (
                min(b[0] for b in boxes),
                min(b[1] for b in boxes),
                max(b[2] for b in boxes),
                max(b[3] for b in boxes),
            ),
        )
        object.__setattr__(self, "area_m2", sum(p.area_m2 for p in self.polygons))

    def contains(self, lat: float, lng: float) -> bool:
        """Whether the point (latitude, longitude) lies in the area (edges and vertices included).

        Even-odd ray casting per polygon, after a bounding-box check. NaN never matches.
        """
        if not _in_box(self.bbox, lng, lat):
            return False
        return any(p.contains(lat, lng) for p in self.polygons)

    def to_geojson(self) -> dict[str, Any]:
        """The normalised GeoJSON MultiPolygon (``[lng, lat]`` positions) to store and serve."""
        return {
            "type": "MultiPolygon",
            "coordinates": [
                [[[lng, lat] for lng, lat in ring] for ring in (p.outer, *p.holes)]
                for p in self.polygons
            ],
        }


def parse_area(obj: object) -> Area:
    """Read and validate a grid's area from decoded GeoJSON.

    Accepts a ``Polygon``, a ``MultiPolygon``, a ``Feature`` holding one of those, or a
    ``FeatureCollection`` whose features all hold one (the area is their union).
    Positions are ``[longitude, latitude]`` (RFC 7946), optionally with an altitude,
    which is dropped. Rings may wind either way; they are normalised.

    Raises :class:`~bot.domain.errors.Invalid` with a short Chinese message saying
    what is wrong and where.
    """
    budget = _Budget()
    if not isinstance(obj, Mapping):
        raise Invalid("区域必须是GeoJSON对象")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise Invalid("FeatureCollection缺少features列表")
        if not features:
            raise Invalid("FeatureCollection中没有要素")
        polygons: list[Polygon] = []
        for i, feature in enumerate(features, 1):
            polygons.extend(_feature(feature, f"第{i}个要素", budget))
        return Area(tuple(polygons))
    if kind == "Feature":
        return Area(_feature(obj, "", budget))
    return Area(_geometry(obj, "", budget))


class _Budget:
    """Counts positions over the whole area, to refuse oversized input early."""

    def __init__(self) -> None:
        self.used = 0

    def take(self, count: int, where: str) -> None:
        self.used += count
        if self.used > MAX_POSITIONS:
            raise Invalid(f"{_where(where)}顶点过多：全部环合计最多{MAX_POSITIONS}个坐标点")


def _where(*parts: str) -> str:
    label = "".join(parts)
    return f"{label}：" if label else ""


def _feature(obj: object, where: str, budget: _Budget) -> tuple[Polygon, ...]:
    if not isinstance(obj, Mapping) or obj.get("type") != "Feature":
        raise Invalid(f"{_where(where)}不是Feature对象")
    geometry = obj.get("geometry")
    if geometry is None:
        raise Invalid(f"{_where(where)}要素没有几何图形（geometry）")
    return _geometry(geometry, where, budget)


def _geometry(obj: object, where: str, budget: _Budget) -> tuple[Polygon, ...]:
    if not isinstance(obj, Mapping):
        raise Invalid(f"{_where(where)}几何图形必须是GeoJSON对象")
    kind = obj.get("type")
    coordinates = obj.get("coordinates")
    if kind == "Polygon":
        return (_polygon(coordinates, where, budget),)
    if kind == "MultiPolygon":
        if not isinstance(coordinates, list | tuple):
            raise Invalid(f"{_where(where)}MultiPolygon的coordinates必须是列表")
        if not coordinates:
            raise Invalid(f"{_where(where)}MultiPolygon中没有多边形")
        return tuple(
            _polygon(c, f"{where}第{i}个多边形", budget) for i, c in enumerate(coordinates, 1)
        )
    shown = kind if isinstance(kind, str) else "缺失"
    raise Invalid(f"{_where(where)}不支持的类型：{shown[:40]}（需要{_GEOMETRY_TYPES}）")


def _polygon(coordinates: object, where: str, budget: _Budget) -> Polygon:
    if not isinstance(coordinates, list | tuple):
        raise Invalid(f"{_where(where)}多边形的coordinates必须是环的列表")
    if not coordinates:
        raise Invalid(f"{_where(where)}多边形缺少外环（洞必须跟在外环之后）")
    rings = [
        _ring(c, f"{where}{'外环' if i == 0 else f'第{i}个内环'}", budget)
        for i, c in enumerate(coordinates)
    ]
    outer = _orient(rings[0], ccw=True)
    holes = tuple(_orient(h, ccw=False) for h in rings[1:])
    if holes:
        bands = _Bands(_edges(outer))
        box = _ring_bbox(outer)
        for i, hole in enumerate(holes, 1):
            if not _hole_inside(hole, box, bands):
                raise Invalid(
                    f"{_where(where, f'第{i}个内环')}洞不在外环之内（洞必须在其外环内；独立的区域请用MultiPolygon）"
                )
    return Polygon(outer, holes)


def _hole_inside(hole: Ring, box: BBox, bands: _Bands) -> bool:
    """Whether every vertex of ``hole`` is inside or on the outer ring (``box``, ``bands``).

    Edges crossing the outer ring between vertices are not looked for. A ring so large
    and convoluted that checking every vertex would cost more than the budget is
    checked on its bounding box and an even sample of its vertices.
    """
    west, south, east, north = _ring_bbox(hole)
    if not (_in_box(box, west, south) and _in_box(box, east, north)):
        return False
    candidates = [bands.at(y) for _, y in hole]
    stride = max(1, math.ceil(sum(map(len, candidates)) / _HOLE_CHECK_BUDGET))
    return all(_side(candidates[k], *hole[k]) >= 0 for k in range(0, len(hole), stride))


class _Bands:
    """A ring's edges in horizontal bands: only the edges of a point's band matter to it.

    About four edges a band; fewer bands when tall edges would be copied into too
    many of them (a comb-shaped ring), down to one band holding every edge.
    """

    def __init__(self, edges: Sequence[Edge]) -> None:
        spans = [(min(e[1], e[3]) - _EPS, max(e[1], e[3]) + _EPS) for e in edges]
        self._low = min(lo for lo, _ in spans)
        high = max(hi for _, hi in spans)
        self._count = max(1, len(edges) // 4)
        while True:
            self._height = (high - self._low) / self._count or 1.0
            ranges = [(self._band(lo), self._band(hi)) for lo, hi in spans]
            copies = sum(b1 - b0 + 1 for b0, b1 in ranges)
            if self._count == 1 or copies <= 8 * len(edges):
                break
            self._count = max(1, self._count // 4)
        self._bands: list[list[Edge]] = [[] for _ in range(self._count)]
        for e, (b0, b1) in zip(edges, ranges, strict=True):
            for b in range(b0, b1 + 1):
                self._bands[b].append(e)

    def _band(self, y: float) -> int:
        return min(self._count - 1, max(0, math.floor((y - self._low) / self._height)))

    def at(self, y: float) -> list[Edge]:
        """Every edge whose latitude range reaches ``y`` (within the tolerance), and maybe more."""
        return self._bands[self._band(y)]


def _ring(raw: object, where: str, budget: _Budget) -> Ring:
    if not isinstance(raw, list | tuple):
        raise Invalid(f"{_where(where)}环必须是坐标点的列表")
    budget.take(len(raw), where)
    if len(raw) < 4:
        raise Invalid(f"{_where(where)}环至少需要4个坐标点（首尾相同），现有{len(raw)}个")
    positions = [_position(p, where, i) for i, p in enumerate(raw, 1)]
    if positions[0] != positions[-1]:
        raise Invalid(f"{_where(where)}环未闭合：最后一个点必须与第一个点相同")
    ring: list[Position] = [positions[0]]
    for p in positions[1:]:
        if p != ring[-1]:
            ring.append(p)
    for (x1, _), (x2, _) in pairwise(ring):
        if abs(x2 - x1) > 180:
            raise Invalid(f"{_where(where)}跨越180°经线的区域不受支持")
    if abs(_signed_area_deg2(tuple(ring))) < _MIN_RING_AREA_DEG2:
        raise Invalid(f"{_where(where)}环的面积为零（点重合或共线）")
    return tuple(ring)


def _position(raw: object, where: str, index: int) -> Position:
    here = _where(where, f"第{index}个点")
    if not isinstance(raw, list | tuple) or not 2 <= len(raw) <= 3:
        raise Invalid(f"{here}坐标必须是[经度, 纬度]")
    lng, lat = raw[0], raw[1]
    for value, name in zip(raw, ("经度", "纬度", "高度"), strict=False):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{here}{name}不是数字")
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"{here}{name}不是有限的数字")
    if not -180 <= lng <= 180:
        raise Invalid(
            f"{here}经度超出范围（-180～180）：{_show(lng)}（GeoJSON坐标顺序是[经度, 纬度]）"
        )
    if not -90 <= lat <= 90:
        raise Invalid(
            f"{here}纬度超出范围（-90～90）：{_show(lat)}（GeoJSON坐标顺序是[经度, 纬度]）"
        )
    return (float(lng), float(lat))


def _show(value: int | float) -> str:
    return f"{value:.10g}" if abs(value) < 1e12 else "数值过大"


def _orient(ring: Ring, *, ccw: bool) -> Ring:
    return ring if (_signed_area_deg2(ring) > 0) == ccw else ring[::-1]


def _signed_area_deg2(ring: Ring) -> float:
    """Shoelace area in degrees² (x = lng, y = lat); positive when counterclockwise."""
    x0, y0 = ring[0]
    total = 0.0
    for (x1, y1), (x2, y2) in pairwise(ring):
        total += (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    return total / 2


def _ring_area_m2(ring: Ring) -> float:
    """Area enclosed by a closed ring on the sphere (Chamberlain & Duquette, 2007)."""
    points = ring[:-1]
    n = len(points)
    total = 0.0
    for i in range(n):
        lng_before = points[i - 1][0]
        lng_after = points[(i + 1) % n][0]
        total += math.radians(lng_after - lng_before) * math.sin(math.radians(points[i][1]))
    return abs(total) * EARTH_RADIUS_M**2 / 2


def _ring_bbox(ring: Ring) -> BBox:
    xs = [x for x, _ in ring]
    ys = [y for _, y in ring]
    return (min(xs), min(ys), max(xs), max(ys))


def _in_box(box: BBox, x: float, y: float) -> bool:
    return box[0] - _EPS <= x <= box[2] + _EPS and box[1] - _EPS <= y <= box[3] + _EPS


def _edges(ring: Ring) -> tuple[Edge, ...]:
    return tuple((x1, y1, x2, y2) for (x1, y1), (x2, y2) in pairwise(ring))


def _side(edges: Iterable[Edge], x: float, y: float) -> int:
    """1 inside the ring, 0 on it (within the tolerance), -1 outside: even-odd ray casting.

    The ray goes from the point towards +x (east); an edge counts when it straddles
    the point's y half-open (one end strictly above, the other at or below), so a
    vertex on the ray is counted once.
    """
    inside = False
    for x1, y1, x2, y2 in edges:
        if (y1 - _EPS <= y <= y2 + _EPS or y2 - _EPS <= y <= y1 + _EPS) and _on_segment(
            x, y, x1, y1, x2, y2
        ):
            return 0
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return 1 if inside else -1


def _on_segment(x: float, y: float, x1: float, y1: float, x2: float, y2: float) -> bool:
    if not (min(x1, x2) - _EPS <= x <= max(x1, x2) + _EPS):
        return False
    dx, dy = x2 - x1, y2 - y1
    cross = (x - x1) * dy - (y - y1) * dx
    return abs(cross) <= _EPS * math.hypot(dx, dy)


# --------------------------------------------------------------------------- routing


class GridIndex(Generic[GridId]):
    """Finds the grid containing a point among many (thousands) of grids.

    Grids' bounding boxes are bucketed in a uniform lon/lat cell index (the cell
    about the size of a typical grid); a grid spanning too many cells is kept in a
    short list checked for every point. Candidates are tried most specific first.
    """

    MAX_CELLS_PER_GRID = 64

    def __init__(self, grids: Iterable[tuple[GridId, Area]]) -> None:
        ranked = sorted(grids, key=lambda g: (g[1].area_m2, g[0]))
        repeated = sorted(gid for gid, n in Counter(gid for gid, _ in ranked).items() if n > 1)
        if repeated:
            raise Invalid(f"网格编号重复：{repeated[0]}")
        self._ranked: list[tuple[GridId, Area]] = ranked
        sizes = sorted(max(a.bbox[2] - a.bbox[0], a.bbox[3] - a.bbox[1]) for _, a in ranked)
        typical = sizes[len(sizes) // 2] if sizes else 0.01
        self._cell = min(max(typical, 1e-3), 1.0)
        self._buckets: dict[tuple[int, int], list[tuple[int, GridId, Area]]] = {}
        self._wide: list[tuple[int, GridId, Area]] = []
        for rank, (gid, area) in enumerate(ranked):
            west, south, east, north = area.bbox
            ix0, iy0 = self._key(west - _EPS, south - _EPS)
            ix1, iy1 = self._key(east + _EPS, north + _EPS)
            entry = (rank, gid, area)
            if (ix1 - ix0 + 1) * (iy1 - iy0 + 1) > self.MAX_CELLS_PER_GRID:
                self._wide.append(entry)
                continue
            for ix in range(ix0, ix1 + 1):
                for iy in range(iy0, iy1 + 1):
                    self._buckets.setdefault((ix, iy), []).append(entry)

    def __len__(self) -> int:
        return len(self._ranked)

    def _key(self, lng: float, lat: float) -> tuple[int, int]:
        return (math.floor(lng / self._cell), math.floor(lat / self._cell))

    def locate(self, lat: float, lng: float) -> GridId | None:
        """The grid containing the point (latitude, longitude), or ``None`` if none does.

        Of several overlapping grids the one with the smallest area wins (the most
        specific), then the smallest grid id.
        """
        if not (math.isfinite(lat) and math.isfinite(lng)):
            return None
        best: tuple[int, GridId] | None = None
        for entries in (self._buckets.get(self._key(lng, lat), ()), self._wide):
            for rank, gid, area in entries:  # each list is in rank order
                if best is not None and rank > best[0]:
                    break
                if area.contains(lat, lng):
                    best = (rank, gid)
                    break
        return None if best is None else best[1]


# --------------------------------------------------------------------------- distance


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres (haversine, mean Earth radius 6,371,008.8 m)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlam = math.radians(lng2 - lng1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, h))))


@dataclass(frozen=True, slots=True)
class Circle:
    """Everything within ``radius_m`` metres of (``lat``, ``lng``); see :func:`within`.

    ``bbox`` (west, south, east, north) contains the whole circle: use it to narrow a
    storage query, then :meth:`contains` or :meth:`select` for the exact test. Near
    the antimeridian its longitudes may pass ±180 (out of scope, not wrapped).
    """

    lat: float
    lng: float
    radius_m: float
    bbox: BBox = field(init=False, compare=False)

    def __post_init__(self) -> None:
        for value, name, limit in ((self.lat, "纬度", 90), (self.lng, "经度", 180)):
            if not (math.isfinite(value) and -limit <= value <= limit):
                raise Invalid(f"{name}超出范围（-{limit}～{limit}）：{value}")
        if not (math.isfinite(self.radius_m) and self.radius_m >= 0):
            raise Invalid(f"半径必须是非负的米数：{self.radius_m}")
        angle = self.radius_m / EARTH_RADIUS_M  # radians of arc
        dlat = math.degrees(angle) * (1 + 1e-9) + _EPS
        south, north = max(-90.0, self.lat - dlat), min(90.0, self.lat + dlat)
        cos_lat = math.cos(math.radians(self.lat))
        if angle >= math.pi / 2 or math.sin(angle) >= cos_lat:
            west, east = -180.0, 180.0  # the circle reaches a pole
        else:
            dlng = math.degrees(math.asin(math.sin(angle) / cos_lat)) * (1 + 1e-9) + _EPS
            west, east = self.lng - dlng, self.lng + dlng
        object.__setattr__(self, "bbox", (west, south, east, north))

    def contains(self, lat: float, lng: float) -> bool:
        """Whether the point is at most ``radius_m`` metres from the centre."""
        west, south, east, north = self.bbox
        if not (south <= lat <= north and west <= lng <= east):
            return False
        return distance_m(self.lat, self.lng, lat, lng) <= self.radius_m

    def select(self, items: Iterable[tuple[T, float, float]]) -> list[tuple[T, float]]:
        """Of ``(key, lat, lng)`` items, those inside, as ``(key, metres)``, nearest first.

        Equal distances keep the input order.
        """
        found = [
            (key, distance_m(self.lat, self.lng, lat, lng))
            for key, lat, lng in items
            if self.contains(lat, lng)
        ]
        found.sort(key=lambda kd: kd[1])
        return found


def within(lat: float, lng: float, radius_m: float) -> Circle:
    """The disc of ``radius_m`` metres around (latitude, longitude), e.g. for duplicates.

    ``within(lat, lng, 100).select(open_reports)`` gives the open reports within
    100 m, nearest first. Raises :class:`Invalid` for an out-of-range centre or a
    negative radius.
    """
    return Circle(lat, lng, radius_m)


__all__ = [
    "EARTH_RADIUS_M",
    "EDGE_TOLERANCE_DEG",
    "MAX_POSITIONS",
    "Area",
    "BBox",
    "Circle",
    "GridIndex",
    "Polygon",
    "Position",
    "Ring",
    "distance_m",
    "parse_area",
    "within",
]
