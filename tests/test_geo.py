"""Grid geometry: GeoJSON areas, point-in-polygon routing and distances (bot.domain.geo).

Shapes are real-sized grids around a Chengdu community (lng 104.06, lat 30.67).
GeoJSON positions are ``[lng, lat]``; every point argument is ``(lat, lng)``, the
order of WeChat's Location_X / Location_Y. The antimeridian and the poles are out of
scope: an area crossing 180° is refused (tested below), nothing else about them is.
"""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from itertools import pairwise
from typing import Any

import pytest

from bot.domain.errors import Invalid
from bot.domain.geo import (
    EARTH_RADIUS_M,
    MAX_POSITIONS,
    Area,
    GridIndex,
    distance_m,
    parse_area,
    within,
)

LNG, LAT = 104.06, 30.67  # a community in Chengdu


def box(west: float, south: float, east: float, north: float) -> list[list[float]]:
    """A counterclockwise rectangle ring, ``[lng, lat]`` positions."""
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def polygon(*rings: Any) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def square(west: float, south: float, size: float) -> Area:
    return parse_area(polygon(box(west, south, west + size, south + size)))


# ---------------------------------------------------------------- shapes


# An L: 1 km × 1.1 km with the north-east quarter cut away (the notch).
L_SHAPE = polygon(
    [
        [104.060, 30.670],
        [104.070, 30.670],
        [104.070, 30.675],
        [104.065, 30.675],
        [104.065, 30.680],
        [104.060, 30.680],
        [104.060, 30.670],
    ]
)


def test_concave_l_shaped_grid_excludes_its_notch() -> None:
    area = parse_area(L_SHAPE)
    assert area.contains(30.672, 104.062)  # the corner
    assert area.contains(30.672, 104.068)  # the east arm
    assert area.contains(30.678, 104.062)  # the north arm
    assert not area.contains(30.678, 104.068)  # the notch
    assert not area.contains(30.6799, 104.0699)  # deep in the notch, inside the bbox
    assert not area.contains(30.671, 104.071)  # east of everything
    # Rays through the reflex vertex (104.065, 30.675) and along the notch's edge.
    assert area.contains(30.675, 104.062)
    assert not area.contains(30.675, 104.058)
    assert not area.contains(30.675, 104.072)
    assert not area.contains(30.680, 104.058)  # ray along the top edge
    assert not area.contains(30.670, 104.050)  # ray along the bottom edge


def test_polygon_with_a_hole() -> None:
    area = parse_area(
        polygon(box(104.060, 30.670, 104.070, 30.680), box(104.064, 30.674, 104.066, 30.676))
    )
    assert not area.contains(30.675, 104.065)  # in the hole (a courtyard)
    assert area.contains(30.672, 104.062)  # between the hole and the outer ring
    assert area.contains(30.677, 104.068)
    assert area.contains(30.675, 104.061)  # level with the hole, west of it
    assert not area.contains(30.675, 104.071)
    assert area.contains(30.674, 104.065)  # on the hole's edge
    assert area.contains(30.676, 104.066)  # on the hole's vertex


def test_multipolygon_of_two_separate_parts() -> None:
    area = parse_area(
        {
            "type": "MultiPolygon",
            "coordinates": [
                [box(104.060, 30.670, 104.063, 30.673)],
                [box(104.067, 30.677, 104.070, 30.680)],
            ],
        }
    )
    assert area.contains(30.671, 104.061)
    assert area.contains(30.679, 104.069)
    assert not area.contains(30.675, 104.065)  # between the parts, inside the bbox
    assert not area.contains(30.671, 104.069)
    assert area.bbox == (104.060, 30.670, 104.070, 30.680)


def test_overlapping_grids_the_smallest_wins() -> None:
    community = parse_area(polygon(box(104.050, 30.660, 104.080, 30.690)))
    estate = parse_area(polygon(box(104.060, 30.670, 104.065, 30.675)))
    building = parse_area(polygon(box(104.062, 30.672, 104.063, 30.673)))
    index = GridIndex([("社区", community), ("小区", estate), ("楼栋", building)])
    assert index.locate(30.6725, 104.0625) == "楼栋"
    assert index.locate(30.671, 104.061) == "小区"
    assert index.locate(30.685, 104.075) == "社区"
    assert index.locate(30.672, 104.062) == "楼栋"  # a vertex of all but the community
    # The same area twice: the smaller grid id wins, whatever the input order.
    twin = parse_area(polygon(box(104.060, 30.670, 104.065, 30.675)))
    assert GridIndex([("b", twin), ("a", estate)]).locate(30.671, 104.061) == "a"
    assert GridIndex([(7, estate), (3, twin), (5, community)]).locate(30.671, 104.061) == 3


def test_points_on_edges_and_vertices_are_inside() -> None:
    area = parse_area(polygon(box(104.060, 30.670, 104.070, 30.680)))
    for lat, lng in [(30.670, 104.060), (30.670, 104.070), (30.680, 104.070), (30.680, 104.060)]:
        assert area.contains(lat, lng)
    for lat, lng in [(30.670, 104.065), (30.675, 104.070), (30.680, 104.065), (30.675, 104.060)]:
        assert area.contains(lat, lng)
    assert area.contains(30.675, 104.060 - 1e-10)  # within the 0.1 mm tolerance
    assert not area.contains(30.675, 104.060 - 1e-7)  # 1 cm out
    assert not area.contains(30.670 - 1e-7, 104.065)
    # A slanted edge: its float midpoint is on it.
    triangle = parse_area(
        polygon([[104.061, 30.671], [104.069, 30.673], [104.064, 30.679], [104.061, 30.671]])
    )
    assert triangle.contains((30.673 + 30.679) / 2, (104.069 + 104.064) / 2)
    assert triangle.contains(30.679, 104.064)


def test_the_edge_tolerance_is_about_a_tenth_of_a_millimetre() -> None:
    area = parse_area(L_SHAPE)  # the notch's edges are inside the bounding box
    assert area.contains(30.6775, 104.065 + 5e-10)
    assert not area.contains(30.6775, 104.065 + 1e-8)  # 1 mm into the notch
    assert area.contains(30.675 + 5e-10, 104.0675)
    assert not area.contains(30.675 + 1e-8, 104.0675)
    # Off a slanted edge, along its outward normal.
    triangle = parse_area(
        polygon([[104.061, 30.671], [104.069, 30.673], [104.064, 30.679], [104.061, 30.671]])
    )
    nx, ny = 0.006 / math.hypot(0.006, 0.005), 0.005 / math.hypot(0.006, 0.005)
    mid_lng, mid_lat = (104.069 + 104.064) / 2, (30.673 + 30.679) / 2
    assert triangle.contains(mid_lat + 5e-10 * ny, mid_lng + 5e-10 * nx)
    assert not triangle.contains(mid_lat + 1e-8 * ny, mid_lng + 1e-8 * nx)
    assert triangle.contains(mid_lat - 1e-8 * ny, mid_lng - 1e-8 * nx)


def test_the_index_finds_a_point_within_the_tolerance_across_a_cell_boundary() -> None:
    # Half-degree squares: the index's cells are half a degree, their edges exact in binary.
    grids = [
        (f"{i}{j}", square(104.0 + i * 0.5, 30.5 + j * 0.5, 0.5))
        for i in range(2)
        for j in range(2)
    ]
    index = GridIndex(grids)
    assert index.locate(30.75, 104.5 + 5e-10) == "00"  # just east of 00, in 10's cell
    assert index.locate(30.75, 104.5 + 1e-6) == "10"
    assert index.locate(31.0 + 5e-10, 104.25) == "01"
    assert index.locate(31.5 + 5e-10, 104.25) == "01"  # beyond the north edge by 0.05 mm
    assert index.locate(31.5 + 1e-8, 104.25) is None


def test_a_point_on_a_shared_edge_goes_to_one_grid_deterministically() -> None:
    west = square(104.060, 30.670, 0.005)
    east = square(104.065, 30.670, 0.005)
    assert west.contains(30.672, 104.065) and east.contains(30.672, 104.065)
    for grids in ([("东", east), ("西", west)], [("西", west), ("东", east)]):
        assert GridIndex(grids).locate(30.672, 104.065) == min("东", "西")
    assert GridIndex([("东", east), ("西", west)]).locate(30.672, 104.0651) == "东"


def test_a_point_outside_every_grid_is_none() -> None:
    index = GridIndex([("一网格", parse_area(L_SHAPE)), ("二网格", square(104.080, 30.670, 0.005))])
    assert index.locate(30.678, 104.068) is None  # the L's notch
    assert index.locate(30.700, 104.060) is None
    assert index.locate(-30.67, -104.06) is None
    assert index.locate(math.nan, 104.06) is None
    assert index.locate(30.67, math.inf) is None
    assert GridIndex[str]([]).locate(LAT, LNG) is None
    assert len(index) == 2


def test_duplicate_grid_ids_are_refused() -> None:
    with pytest.raises(Invalid, match="网格编号重复：a"):
        GridIndex([("a", parse_area(L_SHAPE)), ("b", parse_area(L_SHAPE)), ("a", square(0, 0, 1))])


def test_index_agrees_with_brute_force_over_thousands_of_grids() -> None:
    # 60 × 60 blocks of about 110 m, plus wide grids that span many index cells.
    step = 0.001
    grids: list[tuple[str, Area]] = [
        (f"g{i:02d}{j:02d}", square(104.0 + i * step, 30.6 + j * step, step))
        for i in range(60)
        for j in range(60)
    ]
    grids.append(("district", square(103.9, 30.5, 0.3)))
    grids.append(("street", square(104.01, 30.61, 0.03)))
    grids.append(
        (
            "ring",
            parse_area(polygon(box(104.0, 30.6, 104.06, 30.66), box(104.01, 30.61, 104.05, 30.65))),
        )
    )
    index = GridIndex(grids)
    ranked = sorted(grids, key=lambda g: (g[1].area_m2, g[0]))

    def brute(lat: float, lng: float) -> str | None:
        return next((gid for gid, area in ranked if area.contains(lat, lng)), None)

    rng = random.Random(20260505)
    points = [(rng.uniform(30.55, 30.70), rng.uniform(103.95, 104.10)) for _ in range(300)]
    points += [
        (30.6 + rng.randrange(61) * step, 104.0 + rng.randrange(61) * step) for _ in range(100)
    ]
    for lat, lng in points:
        assert index.locate(lat, lng) == brute(lat, lng), (lat, lng)


# ---------------------------------------------------------------- normalised GeoJSON and area


def test_to_geojson_is_a_normalised_multipolygon() -> None:
    clockwise = [
        [104.06, 30.67],
        [104.06, 30.68, 500.0],
        [104.07, 30.68],
        [104.07, 30.68],
        [104.07, 30.67],
        [104.06, 30.67],
    ]
    hole_ccw = box(104.064, 30.674, 104.066, 30.676)
    area = parse_area(
        {
            "type": "Feature",
            "properties": {"name": "一网格"},
            "geometry": polygon(clockwise, hole_ccw),
        }
    )
    out = area.to_geojson()
    assert out["type"] == "MultiPolygon"
    [[outer, hole]] = out["coordinates"]
    assert outer == [
        [104.06, 30.67],
        [104.07, 30.67],
        [104.07, 30.68],
        [104.06, 30.68],
        [104.06, 30.67],
    ]
    assert hole == [
        [104.064, 30.674],
        [104.064, 30.676],
        [104.066, 30.676],
        [104.066, 30.674],
        [104.064, 30.674],
    ]
    again = parse_area(json.loads(json.dumps(out)))
    assert again == area and again.to_geojson() == out


def test_feature_collection_is_the_union_of_its_features() -> None:
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": None,
                "geometry": polygon(box(104.060, 30.670, 104.063, 30.673)),
            },
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "MultiPolygon",
                    "coordinates": [[box(104.067, 30.677, 104.070, 30.680)]],
                },
            },
        ],
    }
    area = parse_area(collection)
    assert len(area.to_geojson()["coordinates"]) == 2
    assert area.contains(30.671, 104.061) and area.contains(30.679, 104.069)
    assert not area.contains(30.675, 104.065)


def test_area_in_square_metres() -> None:
    size = 0.01
    expected = (
        EARTH_RADIUS_M**2
        * math.radians(size)
        * (math.sin(math.radians(LAT + size)) - math.sin(math.radians(LAT)))
    )
    whole = square(LNG, LAT, size)
    assert whole.area_m2 == pytest.approx(expected, rel=1e-6)
    assert whole.area_m2 == pytest.approx(1_063_500, rel=1e-3)  # about 1.06 km²
    holed = parse_area(
        polygon(
            box(LNG, LAT, LNG + size, LAT + size),
            box(LNG + 0.002, LAT + 0.002, LNG + 0.007, LAT + 0.007),
        )
    )
    assert holed.area_m2 == pytest.approx(expected * 0.75, rel=1e-3)
    l_shape = parse_area(L_SHAPE)
    assert l_shape.area_m2 == pytest.approx(expected * 0.75, rel=1e-3)


# ---------------------------------------------------------------- distance


def test_distance_known_values() -> None:
    assert distance_m(LAT, LNG, LAT + 0.001, LNG) == pytest.approx(111.195, abs=0.001)
    assert distance_m(0, 0, 0, 1) == pytest.approx(111_195.08, abs=0.01)  # 1° on the equator
    assert distance_m(0, 0, 90, 0) == pytest.approx(math.pi / 2 * EARTH_RADIUS_M)
    assert distance_m(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert distance_m(LAT, LNG, LAT, LNG) == 0.0
    # East–west shrinks with the latitude: 0.001° of longitude here is about 95.6 m.
    assert distance_m(LAT, LNG, LAT, LNG + 0.001) == pytest.approx(95.64, abs=0.01)
    a, b = (30.6574, 104.0658), (30.6720, 104.0430)  # Tianfu Square, a point to its north-west
    assert distance_m(*a, *b) == pytest.approx(distance_m(*b, *a))
    assert 2_700 < distance_m(*a, *b) < 2_800


def test_within_a_radius() -> None:
    def north(metres: float) -> float:
        return LAT + math.degrees(metres / EARTH_RADIUS_M)

    near = within(LAT, LNG, 100)
    assert near.contains(north(99.9), LNG)
    assert near.contains(north(100.0) - 1e-12, LNG)
    assert not near.contains(north(101), LNG)
    assert near.contains(LAT, LNG)
    # About 100 m to the north-east (70 m north, 70 m east): inside; 101 m: outside.
    east = math.degrees(70 / (EARTH_RADIUS_M * math.cos(math.radians(LAT))))
    assert 98 < distance_m(LAT, LNG, north(70), LNG + east) < 100
    assert near.contains(north(70), LNG + east)
    assert not near.contains(north(72), LNG + east * 72 / 70)
    reports = [(1, north(101), LNG), (2, north(50), LNG), (3, LAT, LNG), (4, north(99), LNG)]
    assert [key for key, _ in near.select(reports)] == [3, 2, 4]
    assert near.select(reports)[1][1] == pytest.approx(50)


def test_within_bbox_holds_the_whole_circle() -> None:
    rng = random.Random(7)
    for lat in (LAT, 0.0, -60.0, 89.0):
        circle = within(lat, LNG, 500)
        west, south, east, north = circle.bbox
        for _ in range(200):
            bearing, metres = rng.uniform(0, 2 * math.pi), 500 * math.sqrt(rng.random())
            d = metres / EARTH_RADIUS_M
            phi = math.radians(lat)
            lat2 = math.asin(
                math.sin(phi) * math.cos(d) + math.cos(phi) * math.sin(d) * math.cos(bearing)
            )
            lng2 = math.radians(LNG) + math.atan2(
                math.sin(bearing) * math.sin(d) * math.cos(phi),
                math.cos(d) - math.sin(phi) * math.sin(lat2),
            )
            p = (math.degrees(lat2), math.degrees(lng2))
            assert south <= p[0] <= north and west <= p[1] <= east, (lat, p)
            assert circle.contains(*p) == (distance_m(lat, LNG, *p) <= 500)
    assert within(89.999, 0, 500).bbox[0::2] == (-180.0, 180.0)  # reaches the pole


@pytest.mark.parametrize(
    ("lat", "lng", "radius", "message"),
    [
        (91, 0, 1, "纬度超出范围"),
        (0, -181, 1, "经度超出范围"),
        (0, 0, -1, "半径"),
        (0, 0, math.nan, "半径"),
        (math.nan, 0, 1, "纬度"),
    ],
)
def test_within_refuses_bad_arguments(lat: float, lng: float, radius: float, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        within(lat, lng, radius)


# ---------------------------------------------------------------- validation

RING = box(104.060, 30.670, 104.070, 30.680)


def ring_of(n: int, radius: float = 0.005) -> list[list[float]]:
    """A closed ring of ``n`` positions (``n - 1`` distinct) on a circle (0.005° ≈ 500 m)."""
    points = [
        [
            LNG + radius * math.cos(2 * math.pi * k / (n - 1)),
            LAT + radius * math.sin(2 * math.pi * k / (n - 1)),
        ]
        for k in range(n - 1)
    ]
    return [*points, points[0]]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([[104.06, 30.67]], "必须是GeoJSON对象"),
        ('{"type": "Polygon"}', "必须是GeoJSON对象"),
        (None, "必须是GeoJSON对象"),
        ({"type": "Point", "coordinates": [104.06, 30.67]}, "不支持的类型：Point"),
        ({"type": "LineString", "coordinates": RING}, "不支持的类型：LineString"),
        ({"type": "GeometryCollection", "geometries": []}, "不支持的类型：GeometryCollection"),
        ({"coordinates": [RING]}, "不支持的类型：缺失"),
        ({"type": "Feature", "geometry": None}, "要素没有几何图形"),
        (
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [104.06, 30.67]}},
            "不支持的类型：Point",
        ),
        ({"type": "Feature", "geometry": [RING]}, "几何图形必须是GeoJSON对象"),
        ({"type": "FeatureCollection", "features": []}, "FeatureCollection中没有要素"),
        ({"type": "FeatureCollection"}, "缺少features列表"),
        ({"type": "FeatureCollection", "features": [polygon(RING)]}, "第1个要素：不是Feature对象"),
        (
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "geometry": polygon(RING)},
                    {"type": "Feature", "geometry": {"type": "LineString", "coordinates": RING}},
                ],
            },
            "第2个要素：不支持的类型：LineString",
        ),
        ({"type": "Polygon", "coordinates": RING[0]}, "外环：环必须是坐标点的列表"),
        ({"type": "Polygon", "coordinates": "[]"}, "coordinates必须是环的列表"),
        ({"type": "Polygon"}, "coordinates必须是环的列表"),
        ({"type": "MultiPolygon", "coordinates": {}}, "MultiPolygon的coordinates必须是列表"),
        ({"type": "MultiPolygon", "coordinates": []}, "MultiPolygon中没有多边形"),
        (polygon(RING[:3]), "外环：环至少需要4个坐标点（首尾相同），现有3个"),
        (
            polygon([[104.06, 30.67], [104.07, 30.67], [104.07, 30.68], [104.06, 30.68]]),
            "外环：环未闭合",
        ),
        (
            polygon(RING, [[104.064, 30.674], [104.066, 30.674], [104.064, 30.674]]),
            "第1个内环：环至少需要4个坐标点",
        ),
        (polygon([[104.06, 30.67], [104.07, 30.67], [104.08, 30.67], [104.06, 30.67]]), "面积为零"),
        (polygon([[104.06, 30.67], [104.06, 30.67], [104.06, 30.67], [104.06, 30.67]]), "面积为零"),
        (
            polygon([[104.06, 30.67], ["104.07", 30.67], [104.07, 30.68], [104.06, 30.67]]),
            "外环第2个点：经度不是数字",
        ),
        (
            polygon([[104.06, 30.67], [104.07, None], [104.07, 30.68], [104.06, 30.67]]),
            "外环第2个点：纬度不是数字",
        ),
        (
            polygon([[104.06, 30.67], [104.07, True], [104.07, 30.68], [104.06, 30.67]]),
            "纬度不是数字",
        ),
        (
            polygon([[104.06, 30.67], [math.nan, 30.67], [104.07, 30.68], [104.06, 30.67]]),
            "经度不是有限的数字",
        ),
        (
            polygon([[104.06, 30.67], [104.07, math.inf], [104.07, 30.68], [104.06, 30.67]]),
            "纬度不是有限的数字",
        ),
        (
            polygon([[104.06, 30.67], [181, 30.67], [104.07, 30.68], [104.06, 30.67]]),
            r"经度超出范围（-180～180）：181",
        ),
        (
            polygon([[104.06, 30.67], [104.07, -90.5], [104.07, 30.68], [104.06, 30.67]]),
            r"纬度超出范围（-90～90）：-90.5",
        ),
        (
            polygon([[30.67, 104.06], [30.67, 104.07], [30.68, 104.07], [30.67, 104.06]]),
            r"纬度超出范围.*\[经度, 纬度\]",
        ),
        (
            polygon([[104.06, 30.67], [10**400, 30.67], [104.07, 30.68], [104.06, 30.67]]),
            "经度超出范围（-180～180）：数值过大",
        ),
        (
            polygon([[104.06, 30.67], [104.07], [104.07, 30.68], [104.06, 30.67]]),
            r"外环第2个点：坐标必须是\[经度, 纬度\]",
        ),
        (
            polygon([[104.06, 30.67], [104.07, 30.67, "1"], [104.07, 30.68], [104.06, 30.67]]),
            "外环第2个点：高度不是数字",
        ),
        (
            polygon([[104.06, 30.67], [104.07, 30.67, 0, 0], [104.07, 30.68], [104.06, 30.67]]),
            "坐标必须是",
        ),
        (
            polygon([[104.06, 30.67], {"lng": 104.07}, [104.07, 30.68], [104.06, 30.67]]),
            "坐标必须是",
        ),
        (
            polygon([[179.9, 0.0], [-179.9, 0.0], [-179.9, 1.0], [179.9, 0.0]]),
            "跨越180°经线的区域不受支持",
        ),
        ({"type": "Polygon", "coordinates": []}, "多边形缺少外环"),
        ({"type": "MultiPolygon", "coordinates": [[RING], []]}, "第2个多边形：多边形缺少外环"),
        (polygon(RING, box(104.075, 30.674, 104.078, 30.676)), "第1个内环：洞不在外环之内"),
        (polygon(RING, box(104.066, 30.674, 104.072, 30.676)), "第1个内环：洞不在外环之内"),
        (
            polygon(ring_of(MAX_POSITIONS + 1)),
            f"外环：顶点过多：全部环合计最多{MAX_POSITIONS}个坐标点",
        ),
        (
            polygon(ring_of(MAX_POSITIONS // 2), ring_of(MAX_POSITIONS // 2 + 1)),
            "第1个内环：顶点过多",
        ),
        (
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": polygon(ring_of(MAX_POSITIONS // 2))}]
                * 3,
            },
            "第3个要素.*顶点过多",
        ),
    ],
)
def test_validation_errors(obj: object, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_area(obj)


def test_a_hole_in_the_notch_of_its_outer_ring_is_refused() -> None:
    # Its bounding box is inside the L's, but the hole itself is not inside the L.
    notch = box(104.066, 30.676, 104.069, 30.679)
    with pytest.raises(Invalid, match="第1个内环：洞不在外环之内"):
        parse_area(polygon(L_SHAPE["coordinates"][0], notch))
    corner = box(104.061, 30.671, 104.064, 30.674)
    assert not parse_area(polygon(L_SHAPE["coordinates"][0], corner)).contains(30.672, 104.062)


def test_large_rings_and_comb_shapes() -> None:
    # 10,000-position rings: the hole check uses banded edges, not every pair.
    big = parse_area(polygon(ring_of(10_000), ring_of(9_000, radius=0.002)))
    assert big.contains(LAT + 0.003, LNG) and not big.contains(LAT + 0.001, LNG)
    assert big.contains(LAT + 0.002, LNG)  # a vertex of the hole
    poking = ring_of(9_000, radius=0.002)
    poking[100] = [LNG + 0.006, LAT]
    with pytest.raises(Invalid, match="洞不在外环之内"):
        parse_area(polygon(ring_of(10_000), poking))
    # A comb: 200 tall teeth on a base, each edge spanning almost the whole height.
    w = 0.0001
    comb = [[LNG, LAT]]
    for i in range(200):
        x = LNG + 2 * i * w
        top, bottom = LAT + 0.01, LAT + 0.001
        comb += [[x, top], [x + w, top], [x + w, bottom], [x + 2 * w, bottom]]
    comb += [[LNG + 400 * w, LAT], [LNG, LAT]]
    base_hole = box(LNG + w, LAT + 0.0002, LNG + 300 * w, LAT + 0.0008)
    area = parse_area(polygon(comb, base_hole))
    assert area.contains(LAT + 0.005, LNG + 20.5 * w)  # in a tooth
    assert not area.contains(LAT + 0.005, LNG + 21.5 * w)  # between two teeth
    assert not area.contains(LAT + 0.0005, LNG + 100 * w)  # in the hole
    assert area.contains(LAT + 0.0005, LNG + 350 * w)  # in the base beside it
    gap_hole = box(LNG + 21.2 * w, LAT + 0.004, LNG + 21.8 * w, LAT + 0.006)
    with pytest.raises(Invalid, match="洞不在外环之内"):
        parse_area(polygon(comb, gap_hole))


def test_the_position_cap_is_inclusive() -> None:
    area = parse_area(polygon(ring_of(MAX_POSITIONS)))
    assert area.contains(LAT, LNG)
    assert not area.contains(LAT + 0.006, LNG)


def test_an_empty_area_is_refused() -> None:
    with pytest.raises(Invalid, match="区域为空"):
        Area(())


# ---------------------------------------------------------------- property: agrees with a slow reference

Point = tuple[Fraction, Fraction]


def ref_side(ring: list[Point], p: Point) -> int | None:
    """Exact winding number of ``ring`` around ``p`` (Sunday's crossing rule), None on an edge."""
    px, py = p
    winding = 0
    for (x1, y1), (x2, y2) in pairwise(ring):
        cross = (x2 - x1) * (py - y1) - (px - x1) * (y2 - y1)
        if cross == 0 and min(x1, x2) <= px <= max(x1, x2) and min(y1, y2) <= py <= max(y1, y2):
            return None
        if y1 <= py < y2 and cross > 0:
            winding += 1
        elif y2 <= py < y1 and cross < 0:
            winding -= 1
    return winding


def ref_contains(outer: list[Point], hole: list[Point], p: Point) -> bool:
    w_outer, w_hole = ref_side(outer, p), ref_side(hole, p)
    if w_outer is None or w_hole is None:
        return True
    return w_outer != 0 and w_hole == 0


def star(rng: random.Random, n: int, low: float, high: float) -> list[tuple[int, int]]:
    """A random star-shaped (so simple, and usually concave) ring on the integer lattice."""
    points = []
    for k in range(n):
        angle = 2 * math.pi * (k + rng.uniform(0, 0.6)) / n
        radius = rng.uniform(low, high)
        points.append((round(radius * math.cos(angle)), round(radius * math.sin(angle))))
    if rng.random() < 0.5:
        points.reverse()  # either winding
    return [*points, points[0]]


def is_concave(ring: list[tuple[int, int]]) -> bool:
    """Whether the turns along the closed ring go both ways (a reflex vertex)."""
    points = ring[:-1]
    turns: set[bool] = set()
    for k in range(len(points)):
        (x0, y0), (x1, y1), (x2, y2) = points[k - 2], points[k - 1], points[k]
        cross = (x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1)
        if cross:
            turns.add(cross > 0)
    return len(turns) == 2


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_contains_agrees_with_a_winding_number_reference(seed: int) -> None:
    rng = random.Random(seed)
    unit = 0.0001  # lattice step in degrees, about 10 m

    def lng_of(x: float) -> float:
        return LNG + x * unit

    def lat_of(y: float) -> float:
        return LAT + y * unit

    outer, hole = star(rng, 16, 30, 100), star(rng, 6, 8, 14)
    area = parse_area(
        polygon(*[[[lng_of(x), lat_of(y)] for x, y in ring] for ring in (outer, hole)])
    )
    assert is_concave(outer)

    # Random points, compared exactly on the very floats given to contains().
    exact_outer = [(Fraction(lng_of(x)), Fraction(lat_of(y))) for x, y in outer]
    exact_hole = [(Fraction(lng_of(x)), Fraction(lat_of(y))) for x, y in hole]
    inside = 0
    for _ in range(300):
        lng, lat = lng_of(rng.uniform(-110, 110)), lat_of(rng.uniform(-110, 110))
        expected = ref_contains(exact_outer, exact_hole, (Fraction(lng), Fraction(lat)))
        assert area.contains(lat, lng) == expected, (lat, lng)
        inside += expected
    assert 30 < inside < 270  # both answers were exercised

    # Lattice points, many exactly on edges and vertices: the reference works in the
    # exact lattice, contains() on the rounded degrees; on an edge must be inside.
    lattice_outer = [(Fraction(x), Fraction(y)) for x, y in outer]
    lattice_hole = [(Fraction(x), Fraction(y)) for x, y in hole]
    samples = [(x, y) for x, y in outer + hole]
    samples += [(rng.randint(-105, 105), rng.randint(-105, 105)) for _ in range(300)]
    on_edge = 0
    for x, y in samples:
        p = (Fraction(x), Fraction(y))
        on_edge += ref_side(lattice_outer, p) is None or ref_side(lattice_hole, p) is None
        assert area.contains(lat_of(y), lng_of(x)) == ref_contains(
            lattice_outer, lattice_hole, p
        ), (x, y)
    assert on_edge >= len(outer) + len(hole) - 2
