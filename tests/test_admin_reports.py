"""Staff follow and steer reports (报事) and load grids through /admin/api/, on every backend.

Residents and grid workers act through the real webhook (报事, 接单, 办结, 退回); staff act
through the admin API; each side sees the other's actions.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from bot.wechat.fake_api import FakeWeChatAPI
from tests.conftest import ADMIN_TOKEN, Harness
from tests.test_reports import ADMIN, IN_EAST, IN_WEST, report, settled, with_grids

TZ = ZoneInfo("Asia/Shanghai")  # the default [scheduler] timezone the harness runs with
MINUTE = 60.0
HOUR = 3600.0
DAY = 24 * HOUR
# A grid with a courtyard cut out of it, east of the two grids with_grids sets up.
NORTH = [
    [104.070, 30.670],
    [104.074, 30.670],
    [104.074, 30.674],
    [104.070, 30.674],
    [104.070, 30.670],
]
COURTYARD = [
    [104.0715, 30.6715],
    [104.0715, 30.6725],
    [104.0725, 30.6725],
    [104.0725, 30.6715],
    [104.0715, 30.6715],
]
IN_NORTH_RING = (30.6705, 104.0705)
IN_COURTYARD = (30.672, 104.072)
CSV_HEADERS = [
    "编号",
    "状态",
    "类别",
    "描述",
    "网格编号",
    "网格",
    "地址",
    "纬度",
    "经度",
    "报事人openid",
    "关注人数",
    "处理人",
    "评分",
    "照片数",
    "重新处理过",
    "合并到",
    "报事时间",
    "接单时间",
    "办结时间",
    "关闭时间",
    "最新处理说明",
]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, TZ).isoformat(timespec="seconds")


def _day(at: float, days: int = 0) -> str:
    """The local date ``days`` after ``at``, as staff type it."""
    return (datetime.fromtimestamp(at, TZ) + timedelta(days=days)).date().isoformat()


async def _numbers(harness: Harness, **query: str) -> list[int]:
    status, page = await harness.admin("GET", "/reports", **query)
    assert status == 200, page
    return [item["number"] for item in page["items"]]


async def _audit(harness: Harness) -> list[tuple[str, str, str]]:
    status, page = await harness.admin("GET", "/audit")
    assert status == 200
    return [(e["actor"], e["action"], e["target"]) for e in page["items"]]


async def _raw(harness: Harness, path: str, **query: str) -> tuple[int, dict[str, str], bytes]:
    assert harness.session is not None
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with harness.session.get(
        harness.url(f"/admin/api{path}"), params=query, headers=headers
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


# --- listing and history ------------------------------------------------------------------


async def test_staff_list_reports_and_the_filters_combine(harness: Harness) -> None:
    await with_grids(harness)
    first_day = harness.clock.now
    await report(harness.resident("o_res_a"))  # 1: 排水, 一网格
    await report(harness.resident("o_res_b"), category="1", point=IN_EAST)  # 2: 环境卫生, 二网格
    harness.clock.advance(2 * DAY)
    await report(harness.resident("o_res_c"), category="3", point=None, address="清源路12号3栋")
    await report(harness.resident("o_res_d"), point=IN_EAST)  # 4: 排水, 二网格
    assert (await harness.resident("o_worker_e1").say("接单 2") or "").startswith("已接单")

    status, page = await harness.admin("GET", "/reports")
    assert status == 200 and page["next"] is None
    assert [i["number"] for i in page["items"]] == [1, 2, 3, 4]
    first, second, third = page["items"][:3]
    assert (first["reporter"], first["category"], first["grid"], first["grid_name"]) == (
        "o_res_a",
        "排水",
        "west",
        "一网格",
    )
    assert (first["state"], first["state_name"], first["created_at"]) == (
        "reported",
        "待受理",
        _iso(first_day),
    )
    assert (second["state"], second["assignee"], second["accepted_at"]) == (
        "accepted",
        "o_worker_e1",
        _iso(first_day + 2 * DAY),
    )
    assert (third["grid"], third["grid_name"], third["label"], third["lat"]) == (
        "",
        "社区默认队列",
        "清源路12号3栋",
        None,
    )

    assert await _numbers(harness, state="accepted") == [2]
    assert await _numbers(harness, state="reported") == [1, 3, 4]
    assert await _numbers(harness, grid="east") == [2, 4]
    assert await _numbers(harness, grid="二网格") == [2, 4]  # by name, as workers say it
    assert await _numbers(harness, grid="@default") == [3]
    assert await _numbers(harness, category="排水") == [1, 4]
    assert await _numbers(harness, category="排水", grid="east") == [4]
    assert await _numbers(harness, category="排水", state="accepted") == []
    assert await _numbers(harness, since=_day(first_day, 2)) == [3, 4]
    assert await _numbers(harness, until=_day(first_day)) == [1, 2]  # the whole day
    assert await _numbers(harness, since=_day(first_day), until=_day(first_day, 1)) == [1, 2]
    just_after = datetime.fromtimestamp(first_day + 1, TZ).strftime("%Y-%m-%dT%H:%M:%S")
    assert await _numbers(harness, since=just_after) == [3, 4]
    assert await _numbers(harness, since=_day(first_day, 2), grid="east") == [4]

    status, page = await harness.admin("GET", "/reports", limit="2")
    assert [i["number"] for i in page["items"]] == [1, 2] and page["next"] == 2
    status, page = await harness.admin("GET", "/reports", after="2", limit="2")
    assert [i["number"] for i in page["items"]] == [3, 4] and page["next"] == 4
    status, page = await harness.admin("GET", "/reports", after="4", limit="2")
    assert page == {"items": [], "next": None}
    status, page = await harness.admin("GET", "/reports", state="reported", limit="2")
    assert [i["number"] for i in page["items"]] == [1, 3] and page["next"] == 3
    assert await _numbers(harness, state="reported", after="3") == [4]

    for query, error in [
        ({"state": "closed"}, "参数 state 必须是 reported / accepted / resolved / rejected 之一"),
        ({"since": "昨天"}, "since 不是有效的时间：昨天（格式如 2026-12-05T19:00）"),
        ({"since": _day(first_day, 1), "until": _day(first_day)}, "since 不能晚于 until"),
        ({"after": "two"}, "参数 after 必须是数字"),
    ]:
        status, body = await harness.admin("GET", "/reports", **query)
        assert (status, body["error"]) == (400, error), query


async def test_a_report_shows_its_photos_and_whole_history_who_when_what_why(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    fake_api.add_media("photo-1", b"\xff\xd8jpeg-bytes")
    filed = harness.clock.now
    await report(harness.resident("o_res_li"), photo="photo-1")
    await settled(harness)  # the photo is fetched into our folder in the background
    worker = harness.resident("o_worker_w1")
    harness.clock.advance(10 * MINUTE)
    await worker.say("接单 1")
    harness.clock.advance(HOUR)
    await worker.say("办结 1 已疏通下水道")

    status, detail = await harness.admin("GET", "/reports/1")
    assert status == 200
    assert [(h["by"], h["at"], h["action"], h["state"], h["note"]) for h in detail["history"]] == [
        ("o_res_li", _iso(filed), "filed", "reported", "分派到网格“一网格”"),
        ("o_worker_w1", _iso(filed + 10 * MINUTE), "accepted", "accepted", ""),
        ("o_worker_w1", _iso(filed + 70 * MINUTE), "resolved", "resolved", "已疏通下水道"),
    ]
    assert detail["photos"] == [
        {"media_id": "photo-1", "pic_url": "http://mmbiz.example/photo-1", "stored": True}
    ]
    assert (detail["photo_count"], detail["latest_note"], detail["assignee"]) == (
        1,
        "已疏通下水道",
        "o_worker_w1",
    )
    assert (detail["resolved_at"], detail["closed_at"]) == (
        _iso(filed + 70 * MINUTE),
        _iso(filed + 70 * MINUTE),
    )
    # The list shows a report without its history.
    _, page = await harness.admin("GET", "/reports")
    assert "history" not in page["items"][0] and page["items"][0]["photo_count"] == 1

    for path, error in [
        ("/reports/99", "没有编号为 99 的报事"),
        ("/reports/abc", "没有编号为 abc 的报事"),
    ]:
        status, body = await harness.admin("GET", path)
        assert (status, body["error"]) == (404, error)


# --- acting on reports ----------------------------------------------------------------------


async def test_staff_change_a_reports_state_with_a_note_and_it_is_audited(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_a"))
    await report(harness.resident("o_res_b"), category="1", point=IN_EAST)
    before = await _audit(harness)

    status, body = await harness.admin(
        "POST",
        "/reports/1/state",
        body={"state": "resolved", "note": "物业已清理"},
        operator="王主任",
    )
    assert status == 200 and body["state"] == "resolved"
    assert {k: body["history"][-1][k] for k in ("by", "action", "note", "at")} == {
        "by": "王主任",
        "action": "resolved",
        "note": "物业已清理",
        "at": _iso(harness.clock.now),
    }
    assert fake_api.sent_texts("o_res_a")[-1].startswith("您的报事（编号 1）已办结：物业已清理")

    status, body = await harness.admin(
        "POST",
        "/reports/2/state",
        body={"state": "rejected", "note": "不属于本社区"},
        operator="王主任",
    )
    assert status == 200 and body["state"] == "rejected" and body["latest_note"] == "不属于本社区"
    # A rejected report cannot be resolved: 409, and nothing changes or is logged.
    status, body = await harness.admin(
        "POST", "/reports/2/state", body={"state": "resolved", "note": "已处理"}, operator="王主任"
    )
    assert status == 409 and "已退回" in body["error"]
    _, again = await harness.admin("GET", "/reports/2")
    assert again["state"] == "rejected" and len(again["history"]) == 2

    # Staff may reopen a closed report: its grid is alerted again.
    status, body = await harness.admin(
        "POST",
        "/reports/1/state",
        body={"state": "reported", "note": "居民说仍有异味"},
        operator="李社工",
    )
    assert status == 200 and body["state"] == "reported"
    assert (body["history"][-1]["action"], body["history"][-1]["by"]) == ("reopened", "李社工")

    assert (await _audit(harness))[len(before) :] == [
        ("王主任", "report.resolved", "report/1"),
        ("王主任", "report.rejected", "report/2"),
        ("李社工", "report.reported", "report/1"),
    ]
    _, audit = await harness.admin("GET", "/audit")
    assert audit["items"][-1]["detail"] == {"note": "居民说仍有异味"}

    for number, sent, status_code, error in [
        (1, {"state": "done"}, 400, "state 必须是 reported / accepted / resolved / rejected 之一"),
        (1, {"note": "x"}, 400, "需要字段 state（reported / accepted / resolved / rejected）"),
        (1, {"state": "resolved"}, 400, "请写上办结说明"),
        (1, {"state": "resolved", "note": 5}, 400, "note 必须是文字"),
        (99, {"state": "accepted"}, 404, "没有编号为 99 的报事"),
    ]:
        status, body = await harness.admin("POST", f"/reports/{number}/state", body=sent)
        assert (status, body["error"]) == (status_code, error), sent
    status, body = await harness.admin("POST", "/reports/1/state", body=b"{state")
    assert (status, body["error"]) == (400, "请求体必须是 JSON")


async def test_staff_transfer_a_report_to_another_grid_whose_workers_are_alerted(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_a"))
    await settled(harness)
    before = await _audit(harness)

    status, body = await harness.admin(
        "POST", "/reports/1/transfer", body={"grid": "二网格"}, operator="王主任"
    )
    assert status == 200
    assert (body["grid"], body["grid_name"], body["state"]) == ("east", "二网格", "reported")
    last = body["history"][-1]
    assert (last["by"], last["action"], last["note"]) == (
        "王主任",
        "transferred",
        "转派到网格“二网格”",
    )
    await settled(harness)
    [alert] = fake_api.sent_texts("o_worker_e1")
    assert alert.startswith("【转派来的报事】编号 1")
    # The same transfer again changes nothing and is not logged twice.
    status, again = await harness.admin("POST", "/reports/1/transfer", body={"grid": "east"})
    assert status == 200 and len(again["history"]) == len(body["history"])
    assert (await _audit(harness))[len(before) :] == [("王主任", "report.transfer", "report/1")]

    status, error = await harness.admin("POST", "/reports/1/transfer", body={"grid": "三网格"})
    assert (status, error["error"]) == (404, "没有叫“三网格”的网格")
    status, error = await harness.admin("POST", "/reports/1/transfer", body={})
    assert (status, error["error"]) == (400, "需要字段 grid（网格编号或名称）")
    await harness.resident("o_worker_e1").say("办结 1 已处理")
    status, error = await harness.admin("POST", "/reports/1/transfer", body={"grid": "west"})
    assert status == 409 and "不能转派" in error["error"]


# --- export and summary -------------------------------------------------------------------


async def test_the_csv_export_has_a_bom_chinese_headers_and_the_filters(
    harness: Harness,
) -> None:
    await with_grids(harness)
    filed = harness.clock.now
    # Residents write the text: a spreadsheet must not run it as a formula.
    await report(harness.resident("o_res_a"), text="=HYPERLINK(1)下水道堵了")
    await report(harness.resident("o_res_b"), category="1", point=None, address="清源路12号3栋")
    worker = harness.resident("o_worker_w1")
    harness.clock.advance(30 * MINUTE)
    await worker.say("接单 1")
    await worker.say("办结 1 已疏通")

    status, headers, body = await _raw(harness, "/reports.csv")
    assert status == 200
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM: Excel then reads UTF-8
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    today = datetime.fromtimestamp(harness.clock.now, TZ).strftime("%Y%m%d")
    disposition = headers["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="reports-{today}.csv"')
    encoded = re.search(r"filename\*=UTF-8''(\S+)", disposition)
    assert encoded is not None and unquote(encoded.group(1)) == f"报事-{today}.csv"

    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == CSV_HEADERS
    first, second = (dict(zip(CSV_HEADERS, row, strict=True)) for row in rows[1:])
    minute = datetime.fromtimestamp(filed, TZ).strftime("%Y-%m-%d %H:%M")
    later = datetime.fromtimestamp(filed + 30 * MINUTE, TZ).strftime("%Y-%m-%d %H:%M")
    assert first == {
        "编号": "1",
        "状态": "已办结",
        "类别": "排水",
        "描述": "'=HYPERLINK(1)下水道堵了",
        "网格编号": "west",
        "网格": "一网格",
        "地址": "清源路12号",
        "纬度": str(IN_WEST[0]),
        "经度": str(IN_WEST[1]),
        "报事人openid": "o_res_a",
        "关注人数": "0",
        "处理人": "o_worker_w1",
        "评分": "",
        "照片数": "0",
        "重新处理过": "否",
        "合并到": "",
        "报事时间": minute,
        "接单时间": later,
        "办结时间": later,
        "关闭时间": later,
        "最新处理说明": "已疏通",
    }
    assert (second["编号"], second["状态"], second["网格"], second["纬度"]) == (
        "2",
        "待受理",
        "社区默认队列",
        "",
    )

    status, _, body = await _raw(harness, "/reports.csv", state="reported")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert [r[0] for r in rows] == ["编号", "2"]
    status, _, body = await _raw(harness, "/reports.csv", state="nope")
    assert status == 400


async def test_the_summary_counts_times_and_satisfaction_on_a_controlled_clock(
    harness: Harness,
) -> None:
    await with_grids(harness)
    start = harness.clock.now
    resident_a, resident_b = harness.resident("o_res_a"), harness.resident("o_res_b")
    await report(resident_a)  # 1: 排水, 一网格
    await report(resident_b, category="1")  # 2: 环境卫生, 一网格
    await report(harness.resident("o_res_c"), point=None, address="清源路12号")  # 3: 默认队列
    worker = harness.resident("o_worker_w1")
    harness.clock.advance(30 * MINUTE)
    await worker.say("接单 1")  # 30 minutes to accept
    harness.clock.advance(30 * MINUTE)
    await worker.say("接单 2")  # 60
    harness.clock.advance(60 * MINUTE)
    await worker.say("办结 1 已疏通")  # 120 minutes to resolve
    harness.clock.advance(120 * MINUTE)
    await worker.say("办结 2 已清扫")  # 240
    assert (await harness.resident(ADMIN).say("退回 3 不属于本社区") or "").startswith(
        "报事 3 已退回"
    )
    for resident, stars in ((resident_a, "5"), (resident_b, "2")):
        await resident.say("我的报事")
        await resident.say("1")
        assert await resident.say(stars) == f"谢谢您的评价（{stars}星）！"

    status, summary = await harness.admin("GET", "/reports/summary")
    assert status == 200
    assert summary == {
        "since": None,
        "until": None,
        "total": 3,
        "by_state": {"reported": 0, "accepted": 0, "resolved": 2, "rejected": 1},
        "by_category": {
            "环境卫生": 1,
            "排水": 2,
            "车辆停放": 0,
            "绿化": 0,
            "治安": 0,
            "设施损坏": 0,
            "其他": 0,
        },
        "accepted": 2,
        "median_minutes_to_accept": 45.0,
        "resolved": 2,
        "median_minutes_to_resolve": 180.0,
        "satisfaction": {
            "count": 2,
            "mean": 3.5,
            "distribution": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1},
        },
    }
    # A window that holds none of them: zeros, and no medians or mean rather than 0.
    status, empty = await harness.admin("GET", "/reports/summary", since=_day(start, 1))
    assert status == 200 and empty["since"] == f"{_day(start, 1)}T00:00:00+08:00"
    assert (empty["total"], empty["median_minutes_to_accept"], empty["satisfaction"]) == (
        0,
        None,
        {"count": 0, "mean": None, "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}},
    )
    status, same_day = await harness.admin("GET", "/reports/summary", until=_day(start))
    assert same_day["total"] == 3 and same_day["until"].startswith(f"{_day(start)}T23:59:59")
    status, error = await harness.admin("GET", "/reports/summary", until="soon")
    assert (status, error["error"]) == (
        400,
        "until 不是有效的时间：soon（格式如 2026-12-05T19:00）",
    )


# --- grids --------------------------------------------------------------------------------


async def test_staff_load_a_grid_with_a_hole_and_reports_are_routed_by_it(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    status, grids = await harness.admin("GET", "/grids")
    assert status == 200
    assert [(g["id"], g["name"], g["workers"], g["leader"]) for g in grids["items"]] == [
        ("east", "二网格", ["o_worker_e1"], "o_leader_e"),
        ("west", "一网格", ["o_worker_w1", "o_worker_w2"], "o_leader_w"),
    ]
    assert grids["items"][0]["area"]["type"] == "MultiPolygon"

    robot = f"{harness.config.wechat.api_base_url}/cgi-bin/webhook/send?key=ROBOT-NORTH"
    north: dict[str, Any] = {
        "name": "三网格",
        "area": {"type": "Polygon", "coordinates": [NORTH, COURTYARD]},
        "workers": ["o_worker_n1"],
        "leader": "o_leader_n",
        "wecom_url": robot,
    }
    status, saved = await harness.admin("PUT", "/grids/north", body=north, operator="李社工")
    assert status == 201
    assert (saved["id"], saved["name"], saved["workers"], saved["wecom_url"]) == (
        "north",
        "三网格",
        ["o_worker_n1"],
        robot,
    )
    assert len(saved["area"]["coordinates"][0]) == 2  # the outer ring and its hole
    assert saved["updated_at"] == _iso(harness.clock.now)
    status, _ = await harness.admin("PUT", "/grids/north", body=north, operator="李社工")
    assert status == 200  # replaced

    in_ring = await report(harness.resident("o_res_a"), point=IN_NORTH_RING)
    assert in_ring.startswith("报事已提交，编号 1。已转给“三网格”网格员")
    in_hole = await report(harness.resident("o_res_b"), point=IN_COURTYARD, category="1")
    assert in_hole.startswith("报事已提交，编号 2。已转给社区工作人员")
    await settled(harness)
    [alert] = fake_api.sent_texts("o_worker_n1")
    assert alert.startswith("【新报事】编号 1")
    [robot_message] = fake_api.robot_messages("ROBOT-NORTH")
    assert robot_message.content.startswith("【新报事】编号 1")
    assert await _numbers(harness, grid="north") == [1]

    unclosed = [*NORTH[:-1], [104.070, 30.671]]
    swapped = [[lat, lng] for lng, lat in NORTH]
    for grid_id, body, error in [
        (
            "north",
            {**north, "area": {"type": "Polygon", "coordinates": [unclosed]}},
            "外环：环未闭合：最后一个点必须与第一个点相同",
        ),
        (
            "north",
            {**north, "area": {"type": "Polygon", "coordinates": [swapped]}},
            "外环第1个点：纬度超出范围（-90～90）：104.07（GeoJSON坐标顺序是[经度, 纬度]）",
        ),
        ("north", {**north, "area": {"type": "Point", "coordinates": [104.07, 30.67]}}, None),
        ("north", {**north, "wecom_url": "ftp://example.com/x?key=1"}, None),
        ("north", {**north, "name": "一网格"}, "已有名为“一网格”的网格（west）"),
        ("north pole", north, "网格编号只能是1到32个字母、数字、-、_"),
    ]:
        status, answer = await harness.admin("PUT", f"/grids/{grid_id}", body=body)
        assert status == 400, (grid_id, body)
        if error is not None:
            assert answer["error"] == error
        else:
            assert re.search(r"[\u4e00-\u9fff]", answer["error"]), answer  # said in Chinese
    _, grids = await harness.admin("GET", "/grids")
    assert [g["id"] for g in grids["items"]] == ["east", "north", "west"]

    # A grid with an open report cannot go: nobody would see the report again.
    status, error = await harness.admin("DELETE", "/grids/north", operator="李社工")
    assert status == 409 and "还有1件未办结的报事" in error["error"]
    await harness.admin("POST", "/reports/1/transfer", body={"grid": "west"}, operator="李社工")
    status, gone = await harness.admin("DELETE", "/grids/north", operator="李社工")
    assert (status, gone) == (200, {"deleted": "north"})
    status, error = await harness.admin("DELETE", "/grids/north")
    assert (status, error["error"]) == (404, "没有编号为 north 的网格")
    _, grids = await harness.admin("GET", "/grids")
    assert [g["id"] for g in grids["items"]] == ["east", "west"]
    audit = await _audit(harness)
    assert [a for a in audit if a[2] == "grid/north"] == [
        ("李社工", "grid.put", "grid/north"),
        ("李社工", "grid.put", "grid/north"),
        ("李社工", "grid.delete", "grid/north"),
    ]


async def test_every_report_and_grid_route_needs_the_bearer_token(harness: Harness) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_a"))
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/reports", None),
        ("GET", "/reports.csv", None),
        ("GET", "/reports/summary", None),
        ("GET", "/reports/1", None),
        ("POST", "/reports/1/state", {"state": "resolved", "note": "x"}),
        ("POST", "/reports/1/transfer", {"grid": "east"}),
        ("GET", "/grids", None),
        ("PUT", "/grids/west", {"name": "x", "area": {}}),
        ("DELETE", "/grids/west", None),
    ]
    for method, path, body in calls:
        for token in (None, "wrong"):
            status, answer = await harness.admin(method, path, body=body, token=token)
            assert (status, answer["error"]) == (401, "missing or wrong bearer token"), path
    # Nothing changed.
    _, detail = await harness.admin("GET", "/reports/1")
    assert (detail["state"], detail["grid"]) == ("reported", "west")
    _, grids = await harness.admin("GET", "/grids")
    assert [g["id"] for g in grids["items"]] == ["east", "west"]
