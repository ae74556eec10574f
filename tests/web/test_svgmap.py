"""Drawing grids and report points as SVG: projection, holes, degenerate extents, escaping."""

from __future__ import annotations

import re

import pytest

from bot.domain.geo import parse_area
from bot.web import svgmap
from bot.web.svgmap import Point, Shape


def square(west: float, south: float, size: float) -> list[list[float]]:
    return [
        [west, south],
        [west + size, south],
        [west + size, south + size],
        [west, south + size],
        [west, south],
    ]


def grid(name: str, *polygons: list[list[list[float]]]) -> Shape:
    return Shape(name, parse_area({"type": "MultiPolygon", "coordinates": list(polygons)}))


def corners(svg: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML]([\d.]+) ([\d.]+)", svg)]


def point(lat: float, lng: float, kind: str = "reported", n: int = 1) -> Point:
    return Point(lat, lng, kind, f"/admin/reports/{n}", f"编号 {n}")


def test_nothing_to_draw_is_none() -> None:
    assert svgmap.draw([], [], label="报事地图") is None


def test_longitude_is_scaled_by_the_cosine_of_latitude_and_north_is_up() -> None:
    # One degree by one degree at 60° north: on the ground half as wide as it is tall.
    svg = str(svgmap.draw([grid("北", [square(10.0, 59.5, 1.0)])], [], label="图"))
    xs = [x for x, _ in corners(svg)]
    ys = [y for _, y in corners(svg)]
    width, height = max(xs) - min(xs), max(ys) - min(ys)
    assert height / width == pytest.approx(1 / 0.5, rel=0.01)
    # The first corner is the south-west one: at the bottom (largest y) and the left.
    first = corners(svg)[0]
    assert first == (min(xs), max(ys))


def test_a_single_point_is_drawn_in_the_middle_of_a_widened_extent() -> None:
    svg = str(svgmap.draw([], [point(30.672, 104.062)], label="一件报事"))
    found = re.search(r'<circle cx="([\d.]+)" cy="([\d.]+)"', svg)
    assert found is not None
    box = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg)
    assert box is not None
    assert float(found.group(1)) == pytest.approx(float(box.group(1)) / 2, abs=0.1)
    assert float(found.group(2)) == pytest.approx(float(box.group(2)) / 2, abs=0.1)


def test_points_on_one_line_of_longitude_still_have_a_scale() -> None:
    svg = str(
        svgmap.draw(
            [], [point(30.670, 104.062, n=1), point(30.674, 104.062, "resolved", 2)], label="图"
        )
    )
    assert "nan" not in svg and "inf" not in svg
    assert '<a href="/admin/reports/2" class="pt resolved"><polygon ' in svg


def test_a_multipolygon_with_a_hole_is_one_path_cut_by_the_even_odd_rule() -> None:
    outer = square(104.070, 30.670, 0.004)
    hole = square(104.0715, 30.6715, 0.001)
    island = square(104.080, 30.670, 0.001)
    svg = str(svgmap.draw([grid("三网格", [outer, hole], [island])], [], label="图"))
    [d] = re.findall(r'<path class="grid" d="([^"]+)"', svg)
    assert d.count("M") == 3 and d.count("Z") == 3
    assert 'fill-rule="evenodd"' in svg
    assert svg.count('paint-order="stroke">三网格</text>') == 1


def test_names_and_titles_are_escaped_and_the_drawing_is_labelled() -> None:
    shape = grid("<b>网格</b>", [square(104.06, 30.67, 0.004)])
    evil = Point(30.672, 104.062, "accepted", "/admin/reports/1", '"><script>x</script>')
    svg = str(svgmap.draw([shape], [evil], label="报事地图：1 个网格"))
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;b&gt;网格&lt;/b&gt;" in svg
    assert svg.startswith('<svg class="map" xmlns="http://www.w3.org/2000/svg"')
    assert 'role="img" aria-label="报事地图：1 个网格"><title>报事地图：1 个网格</title>' in svg


def test_each_state_has_its_own_colour_and_shape_in_the_legend() -> None:
    key = svgmap.legend()
    assert [state for state, _, _ in key] == ["reported", "accepted", "resolved", "rejected"]
    assert len({colour for _, colour, _ in key}) == 4
    shapes = [re.search(r"<(circle|rect|polygon) ", str(m)) for _, _, m in key]
    assert [s.group(1) for s in shapes if s] == ["circle", "rect", "polygon", "polygon"]
