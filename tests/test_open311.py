"""City systems read reports through Open311 GeoReport v2, with no one's identity in it.

Public, read-only, JSON only; residents and workers act through the real webhook.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot import keys
from bot.admin.open311 import MAX_RESULTS, service_code
from bot.config import ReportsConfig
from bot.wechat.fake_api import FakeWeChatAPI
from storage.reports import Report, ReportRepo, Transition
from tests.conftest import Harness
from tests.test_reports import ADMIN, IN_EAST, IN_WEST, NEAR_IN_WEST, report, with_grids

TZ = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0
DAY = 24 * HOUR
CATEGORIES = ReportsConfig().categories
REQUEST_FIELDS = {
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "requested_datetime",
    "updated_datetime",
    "address",
    "lat",
    "long",
}
# Shaped like a real openid (28 characters): staff sometimes paste one into a note.
PASTED_OPENID = "oWx3" + "Qz9_" * 6


async def _open311(harness: Harness, path: str, **query: str) -> tuple[int, Any, str]:
    """GET /open311/v2{path} without any token: the status, parsed JSON and the raw body."""
    status, text = await harness.get(f"/open311/v2{path}", **query)
    return status, json.loads(text), text


async def _ids(harness: Harness, **query: str) -> list[str]:
    status, items, _ = await _open311(harness, "/requests.json", **query)
    assert status == 200, items
    return [item["service_request_id"] for item in items]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, TZ).isoformat(timespec="seconds")


def _day(at: float, days: int = 0) -> str:
    return (datetime.fromtimestamp(at, TZ) + timedelta(days=days)).date().isoformat()


async def test_services_are_the_configured_categories_with_stable_codes(
    harness: Harness,
) -> None:
    status, services, _ = await _open311(harness, "/services.json")
    assert status == 200
    assert [s["service_name"] for s in services] == list(CATEGORIES)
    for s in services:
        assert (s["metadata"], s["type"], s["group"]) == (False, "realtime", "社区报事")
        assert re.fullmatch(r"cat-[0-9a-f]{8}", s["service_code"])
        assert s["service_code"] == service_code(s["service_name"])
    codes = {s["service_name"]: s["service_code"] for s in services}
    assert len(set(codes.values())) == len(CATEGORIES)
    # Reordering or extending the configured categories keeps every code.
    await with_grids(harness, categories=("新能源车充电", *reversed(CATEGORIES)))
    _, reordered, _ = await _open311(harness, "/services.json")
    assert {
        s["service_name"]: s["service_code"] for s in reordered if s["service_name"] in codes
    } == (codes)

    # JSON only, and GeoReport's error list for anything else.
    status, error, _ = await _open311(harness, "/services.xml")
    assert status == 400 and error[0]["code"] == 400 and "JSON" in error[0]["description"]
    status, error, _ = await _open311(harness, "/requests.xml")
    assert status == 400 and "only JSON" in error[0]["description"]
    status, error, _ = await _open311(harness, "/discovery.json")
    assert status == 404 and error[0]["code"] == 404
    assert harness.session is not None
    async with harness.session.post(harness.url("/open311/v2/requests.json"), data=b"") as resp:
        assert resp.status == 405 and (await resp.json())[0]["code"] == 405


async def test_states_map_to_open_and_closed_and_no_identity_is_shown(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    filed = harness.clock.now
    await report(harness.resident("o_res_a"), category="1")  # 1: reported
    await report(harness.resident("o_res_b"), text="下水道堵了，电话13812345678")  # 2: accepted
    await report(harness.resident("o_res_c"), category="3", point=IN_EAST)  # 3: resolved
    await report(harness.resident("o_res_d"), category="4", point=None, address="清源路12号")
    # A neighbour follows report 1 rather than filing it again.
    await report(harness.resident("o_res_e"), category="1", point=NEAR_IN_WEST, same_as="1")
    harness.clock.advance(HOUR)
    await harness.resident("o_worker_w1").say("接单 2")
    await harness.resident("o_worker_e1").say("办结 3 已清理完毕")
    await harness.resident(ADMIN).say(f"退回 4 不属于本社区，已转告 {PASTED_OPENID}")

    status, items, body = await _open311(harness, "/requests.json")
    assert status == 200
    # Filed at the same moment: the highest number (the last filed) first.
    assert [i["service_request_id"] for i in items] == ["4", "3", "2", "1"]
    by_id = {i["service_request_id"]: i for i in items}
    assert all(set(i) == REQUEST_FIELDS for i in items)  # no media_url, nobody's identity
    assert {k: i["status"] for k, i in by_id.items()} == {
        "1": "open",
        "2": "open",
        "3": "closed",
        "4": "closed",
    }
    assert by_id["3"]["status_notes"] == "已清理完毕"
    assert by_id["4"]["status_notes"] == "不属于本社区，已转告 [已隐去]"
    assert by_id["1"]["status_notes"] == by_id["2"]["status_notes"] == ""
    assert by_id["2"]["description"] == "下水道堵了，电话[电话已隐去]"
    first = by_id["1"]
    assert first == {
        "service_request_id": "1",
        "status": "open",
        "status_notes": "",
        "service_name": "环境卫生",
        "service_code": service_code("环境卫生"),
        "description": "3栋门口下水道堵了",
        "agency_responsible": "一网格",
        "requested_datetime": _iso(filed),
        "updated_datetime": _iso(filed),
        "address": "清源路12号",
        "lat": IN_WEST[0],
        "long": IN_WEST[1],
    }
    assert by_id["3"]["updated_datetime"] == _iso(filed + HOUR)
    assert by_id["3"]["requested_datetime"].endswith("+08:00")
    assert (by_id["4"]["lat"], by_id["4"]["long"], by_id["4"]["agency_responsible"]) == (
        None,
        None,
        "社区",
    )

    assert await _ids(harness, status="open") == ["2", "1"]
    assert await _ids(harness, status="closed") == ["4", "3"]
    assert await _ids(harness, status="open,closed") == ["4", "3", "2", "1"]
    assert await _ids(harness, service_code=service_code("排水")) == ["2"]
    codes = f"{service_code('排水')},{service_code('车辆停放')}"
    assert await _ids(harness, service_code=codes, status="open") == ["2"]
    assert await _ids(harness, service_code="cat-00000000") == []
    # A list of ids overrides every other parameter.
    assert await _ids(harness, service_request_id="1,3,99", status="open") == ["3", "1"]

    status, single, single_body = await _open311(harness, "/requests/3.json")
    assert status == 200 and single == [by_id["3"]]  # one request is a one-element list too
    bodies = [body, single_body]
    for path in ("/requests/99.json", "/requests/abc.json", "/requests/3"):
        status, error, text = await _open311(harness, path)
        assert status == 404 and error[0]["code"] == 404, path
        bodies.append(text)
    status, error, text = await _open311(harness, "/requests/3.xml")
    assert status == 400 and "JSON" in error[0]["description"]
    for query in ({"status": "pending"}, {"service_request_id": "1,two"}):
        status, error, text = await _open311(harness, "/requests.json", **query)
        assert status == 400 and error[0]["code"] == 400, query
        bodies.append(text)
    for query in ({}, {"status": "open"}, {"service_request_id": "1,2,3,4"}):
        bodies.append((await _open311(harness, "/requests.json", **query))[2])
    bodies.append((await _open311(harness, "/services.json"))[2])

    # Nobody's identity anywhere: residents', followers', workers', admins', pasted ones.
    for text in bodies:
        assert "o_" not in text and PASTED_OPENID not in text and "13812345678" not in text


async def test_the_date_window_is_the_last_90_days_unless_asked(harness: Harness) -> None:
    await with_grids(harness)
    harness.clock.advance(-(harness.clock.now % 1))  # whole seconds: times below are exact
    first = harness.clock.now
    await report(harness.resident("o_res_a"), category="1")  # 1
    harness.clock.advance(100 * DAY)
    later = harness.clock.now
    await report(harness.resident("o_res_b"), category="2")  # 2
    harness.clock.advance(HOUR)
    await report(harness.resident("o_res_c"), category="3")  # 3

    assert await _ids(harness) == ["3", "2"]  # newest first, report 1 is too old
    assert await _ids(harness, start_date=_day(first), end_date=_day(first)) == ["1"]
    assert await _ids(harness, start_date=_day(first, -1)) == ["1"]  # 90 days from then
    assert await _ids(harness, end_date=_day(first, 50)) == ["1"]  # 90 days up to then
    assert await _ids(harness, start_date=_day(later)) == ["3", "2"]
    # Times with an offset, in UTC too; both ends count.
    utc = datetime.fromtimestamp(later, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert await _ids(harness, start_date=utc) == ["3", "2"]
    assert await _ids(harness, start_date=_iso(later + 1)) == ["3"]
    assert await _ids(harness, end_date=utc) == ["2"]
    assert await _ids(harness, start_date=_day(first), end_date=_day(first, 89)) == ["1"]

    for query, words in [
        ({"start_date": _day(first), "end_date": _day(first, 90)}, "90 days"),
        ({"start_date": _day(first, 2), "end_date": _day(first)}, "start_date"),
        ({"start_date": "last week"}, "start_date"),
    ]:
        status, error, _ = await _open311(harness, "/requests.json", **query)
        assert status == 400 and words in error[0]["description"], query


async def test_at_most_the_newest_thousand_requests_are_listed(harness: Harness) -> None:
    repo = ReportRepo(harness.app[keys.STORE])
    now = harness.clock.now
    count = MAX_RESULTS + 205  # more than two pages of the store's scan

    def filed(n: int) -> Report:
        at = now - (count - n) * 60
        return Report(
            number=n,
            reporter=f"o_res_{n}",
            category="排水",
            text="下水道堵了",
            created_at=at,
            label="清源路12号",
            history=(Transition(at, f"o_res_{n}", "filed", "reported"),),
        )

    # Stored directly, as the webhook would take minutes to file this many.
    await asyncio.gather(*(repo.insert(filed(n)) for n in range(1, count + 1)))
    ids = await _ids(harness)
    assert len(ids) == MAX_RESULTS
    assert ids[0] == str(count) and ids[-1] == str(count - MAX_RESULTS + 1)
    assert ids == [str(n) for n in range(count, count - MAX_RESULTS, -1)]
