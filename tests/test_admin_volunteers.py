"""Staff run volunteer activities and points through /admin/api/, on every backend.

Residents act through the real webhook (报名, 积分, 兑换, a QR scan); staff act through the
admin API; what each side sees of the other's actions is what these tests check.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from bot import keys
from bot.wechat.client import SHOWQRCODE_URL
from bot.wechat.fake_api import FakeWeChatAPI
from storage.activities import DONE, ActivityRepo
from tests.conftest import ADMIN_TOKEN, Harness

TZ = ZoneInfo("Asia/Shanghai")  # the default [scheduler] timezone the harness runs with
HOUR = 3600.0
DAY = 24 * HOUR


def _local(harness: Harness, hours_from_now: float) -> str:
    """A time as staff type it: local, no offset, to the minute."""
    at = datetime.fromtimestamp(harness.clock.now + hours_from_now * HOUR, TZ)
    return at.strftime("%Y-%m-%dT%H:%M")


async def _create(harness: Harness, starts_in_hours: float = 48, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "夜跑巡逻",
        "place": "社区东门",
        "starts_at": _local(harness, starts_in_hours),
        "ends_at": _local(harness, starts_in_hours + 2),
        "capacity": 2,
        "points": 10,
    }
    body.update(fields)
    status, activity = await harness.admin("POST", "/activities", body=body, operator="李社工")
    assert status == 201, activity
    assert isinstance(activity, dict)
    return activity


async def _sign_up(harness: Harness, openid: str) -> str:
    """The resident signs up for the first activity listed; returns the bot's answer."""
    resident = harness.resident(openid)
    assert "近期志愿活动" in (await resident.say("报名") or "")
    await resident.say("1")
    return await resident.say("1") or ""


async def _raw(
    harness: Harness,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    **query: str,
) -> tuple[int, dict[str, str], bytes]:
    """An admin call whose answer is not (only) JSON: status, headers, body bytes."""
    assert harness.session is not None
    sent = {"Authorization": f"Bearer {ADMIN_TOKEN}", **(headers or {})}
    async with harness.session.request(
        method, harness.url(f"/admin/api{path}"), params=query, json=body, headers=sent
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def _audit(harness: Harness) -> list[tuple[str, str, str]]:
    status, page = await harness.admin("GET", "/audit")
    assert status == 200
    return [(e["actor"], e["action"], e["target"]) for e in page["items"]]


# --- activities -----------------------------------------------------------------------


async def test_creating_an_activity_makes_its_check_in_qr_code(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    starts = _local(harness, 48)
    activity = await _create(harness, starts_at=starts, ends_at=_local(harness, 50))
    assert activity["number"] == 1
    assert activity["starts_at"] == f"{starts}+08:00"
    assert (activity["signed_up"], activity["places_left"], activity["status"]) == (0, 2, "open")
    qr = activity["qr"]
    assert qr["scene"] == "act:1"
    assert qr["url"] == SHOWQRCODE_URL + quote(qr["ticket"], safe="")  # the image to print
    assert qr["expires_at"] is not None  # a temporary code, as it is needed for two days
    assert fake_api.qrcode_scene(qr["ticket"]) == "act:1"
    (call,) = fake_api.calls_to("qrcode_create")
    assert call.body["action_name"] == "QR_STR_SCENE"
    assert call.body["action_info"] == {"scene": {"scene_str": "act:1"}}
    assert call.body["expire_seconds"] <= 30 * DAY

    # Needed for more than WeChat's 30 days: a permanent code.
    later = await _create(harness, starts_in_hours=40 * 24, title="缝纫课")
    assert later["qr"]["scene"] == "act:2" and later["qr"]["expires_at"] is None
    assert fake_api.calls_to("qrcode_create")[-1].body["action_name"] == "QR_LIMIT_STR_SCENE"
    assert fake_api.calls_to("qrcode_create")[-1].body["action_info"] == {
        "scene": {"scene_str": "act:2"}
    }

    status, again = await harness.admin("GET", "/activities/1")
    assert status == 200 and again["qr"] == qr and again["title"] == "夜跑巡逻"


async def test_times_may_carry_an_offset_or_be_epoch_seconds(harness: Harness) -> None:
    starts = datetime.fromtimestamp(harness.clock.now + 3 * DAY, TZ).replace(
        second=0, microsecond=0
    )
    activity = await _create(
        harness,
        starts_at=starts.astimezone(ZoneInfo("UTC")).isoformat(),  # the same instant, in UTC
        ends_at=starts.timestamp() + 2 * HOUR,
        remind_before_hours=2,
        description="请穿运动鞋",
    )
    assert activity["starts_at"] == starts.isoformat(timespec="minutes")
    assert activity["ends_at"] == (starts + timedelta(hours=2)).isoformat(timespec="minutes")
    assert activity["starts_at"].endswith("+08:00")
    assert (activity["remind_before_hours"], activity["description"]) == (2, "请穿运动鞋")


async def test_a_bad_activity_is_refused_in_chinese_and_nothing_is_created(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    good: dict[str, Any] = {
        "title": "夜跑巡逻",
        "place": "社区东门",
        "starts_at": _local(harness, 48),
        "ends_at": _local(harness, 50),
        "capacity": 10,
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"title": None}, "需要填写活动名称（title，文字）"),
        (
            {"starts_at": "明天晚上七点"},
            "starts_at 不是有效的时间：明天晚上七点（格式如 2026-12-05T19:00）",
        ),
        ({"ends_at": _local(harness, 47)}, "结束时间必须晚于开始时间"),
        ({"starts_at": _local(harness, -2), "ends_at": _local(harness, -1)}, "开始时间必须在将来"),
        ({"capacity": 0}, "名额（capacity）必须在 1 到 2000 之间"),
        ({"capacity": "10"}, "需要填写名额（capacity，整数）"),
    ]
    for change, message in cases:
        body = {k: v for k, v in {**good, **change}.items() if v is not None}
        status, answer = await harness.admin("POST", "/activities", body=body)
        assert (status, answer["error"]) == (400, message)
    assert (await harness.admin("POST", "/activities", body=b"[]"))[0] == 400
    assert fake_api.calls_to("qrcode_create") == []
    assert (await harness.admin("GET", "/activities"))[1]["items"] == []
    assert await _audit(harness) == []


async def test_when_wechat_refuses_the_qr_code_no_activity_is_created(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    fake_api.fail_next("qrcode_create", 45009)
    status, answer = await harness.admin(
        "POST",
        "/activities",
        body={
            "title": "夜跑巡逻",
            "place": "社区东门",
            "starts_at": _local(harness, 48),
            "ends_at": _local(harness, 50),
            "capacity": 10,
        },
    )
    assert status == 502 and "45009" in answer["error"]
    assert (await harness.admin("GET", "/activities"))[1]["items"] == []
    assert "近期没有可以报名的志愿活动" in (await harness.resident("o_a").say("报名") or "")


async def test_the_list_counts_sign_ups_and_the_waitlist(harness: Harness) -> None:
    await _create(harness)
    assert (await _sign_up(harness, "o_a")).startswith("报名成功")
    assert (await _sign_up(harness, "o_b")).startswith("报名成功")
    assert "已为您加入候补，排第1位" in await _sign_up(harness, "o_c")

    status, page = await harness.admin("GET", "/activities")
    assert status == 200
    (item,) = page["items"]
    assert {k: item[k] for k in ("signed_up", "waitlist", "checked_in", "places_left")} == {
        "signed_up": 2,
        "waitlist": 1,
        "checked_in": 0,
        "places_left": 0,
    }
    assert item["status"] == "open" and item["ends_at"].endswith("+08:00")
    status, detail = await harness.admin("GET", "/activities/1")
    assert status == 200
    assert detail["roster"] == {"members": ["o_a", "o_b"], "waitlist": ["o_c"], "checked_in": {}}

    assert (await harness.admin("GET", "/activities/99")) == (
        404,
        {"error": "没有编号为 99 的活动"},
    )
    assert (await harness.admin("GET", "/activities/abc"))[0] == 404
    assert (await harness.admin("GET", "/activities/²"))[0] == 404
    assert (await harness.admin("GET", "/activities", include_past="maybe"))[0] == 400


async def test_an_ended_activity_drops_out_of_the_current_list(harness: Harness) -> None:
    await _create(harness, starts_in_hours=2, title="早场")
    await _create(harness, starts_in_hours=48, title="晚场")
    harness.clock.advance(5 * HOUR)
    _, everything = await harness.admin("GET", "/activities")
    _, current = await harness.admin("GET", "/activities", include_past="false")
    assert [a["title"] for a in everything["items"]] == ["早场", "晚场"]
    assert [a["title"] for a in current["items"]] == ["晚场"]


async def test_more_places_promote_the_waitlist_and_fewer_than_signed_up_are_refused(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await _create(harness)
    for openid in ("o_a", "o_b", "o_c"):
        await _sign_up(harness, openid)

    status, answer = await harness.admin("PATCH", "/activities/1", body={"capacity": 1})
    assert (status, answer["error"]) == (409, "已有2人报名，名额不能少于2")
    status, answer = await harness.admin("PATCH", "/activities/1", body={"capacity": "3"})
    assert status == 400 and "capacity" in answer["error"]
    assert fake_api.sent_texts("o_c") == []

    status, edited = await harness.admin(
        "PATCH", "/activities/1", body={"capacity": 3, "place": "社区西门"}, operator="王主任"
    )
    assert status == 200
    assert (edited["capacity"], edited["place"], edited["title"]) == (3, "社区西门", "夜跑巡逻")
    assert edited["roster"]["members"] == ["o_a", "o_b", "o_c"] and edited["waitlist"] == 0
    (notice,) = fake_api.sent_texts("o_c")
    assert notice.startswith("好消息") and "《夜跑巡逻》" in notice and "社区西门" in notice
    assert fake_api.sent_texts("o_a") == []
    assert ("王主任", "activity.edit", "activity/1") in await _audit(harness)
    mine = await harness.resident("o_c").say("我的报名")
    assert "《夜跑巡逻》" in (mine or "") and "已报名" in (mine or "")

    assert (await harness.admin("PATCH", "/activities/7", body={"capacity": 3}))[0] == 404


async def test_cancelling_tells_everyone_signed_up_or_waiting(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await _create(harness)
    for openid in ("o_a", "o_b", "o_c"):
        await _sign_up(harness, openid)

    status, cancelled = await harness.admin(
        "POST", "/activities/1/cancel", body={"reason": "暴雨预警"}, operator="王主任"
    )
    assert status == 200
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "暴雨预警")
    for openid in ("o_a", "o_b", "o_c"):
        (notice,) = fake_api.sent_texts(openid)
        assert "《夜跑巡逻》" in notice and "已取消" in notice and "原因：暴雨预警" in notice
    assert fake_api.sent_texts("o_other") == []
    assert "近期没有可以报名的志愿活动" in (await harness.resident("o_d").say("报名") or "")

    status, answer = await harness.admin("POST", "/activities/1/cancel", body={"reason": "x"})
    assert (status, answer["error"]) == (409, "活动已经取消过了")
    status, answer = await harness.admin("PATCH", "/activities/1", body={"capacity": 5})
    assert (status, answer["error"]) == (409, "活动已取消，不能修改")
    assert (await harness.admin("POST", "/activities/1/cancel", body={"reason": 3}))[0] == 400
    assert len(fake_api.sent_texts("o_a")) == 1


async def test_attendance_is_exported_as_csv_for_excel_and_as_json(harness: Harness) -> None:
    await _create(harness, starts_in_hours=2, title="垃圾分类宣传")
    for openid in ("o_a", "o_b", "o_c"):
        await _sign_up(harness, openid)
    harness.clock.advance(1.5 * HOUR)  # check-in opens an hour before the start
    scan = await harness.resident("o_a").event("SCAN", EventKey="act:1", Ticket="t")
    assert (scan or "").startswith("签到成功")

    status, headers, body = await _raw(harness, "GET", "/activities/1/attendance")
    assert status == 200
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="activity-1-attendance.csv"')
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "垃圾分类宣传-签到表.csv"
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["openid", "状态", "已签到", "签到时间", "积分"]
    checked_in_at = datetime.fromtimestamp(harness.clock.now, TZ).isoformat(timespec="minutes")
    assert rows[1:] == [
        ["o_a", "confirmed", "是", checked_in_at, "10"],
        ["o_b", "confirmed", "否", "", "0"],
        ["o_c", "waitlisted #1", "否", "", "0"],
    ]

    status, report = await harness.admin("GET", "/activities/1/attendance", format="json")
    assert status == 200
    assert report["activity"]["checked_in"] == 1
    assert [(r["openid"], r["checked_in"], r["points"]) for r in report["rows"]] == [
        ("o_a", True, 10),
        ("o_b", False, 0),
        ("o_c", False, 0),
    ]
    _, detail = await harness.admin("GET", "/activities/1")
    assert detail["roster"]["checked_in"] == {"o_a": checked_in_at}
    assert (await harness.admin("GET", "/activities/1/attendance", format="xlsx"))[0] == 400
    assert (await harness.admin("GET", "/activities/5/attendance", format="json"))[0] == 404


# --- points -----------------------------------------------------------------------------


async def test_awards_and_corrections_are_new_entries_that_sum_to_the_balance(
    harness: Harness,
) -> None:
    await _create(harness, starts_in_hours=2)
    await _sign_up(harness, "o_a")
    harness.clock.advance(1.5 * HOUR)
    await harness.resident("o_a").event("SCAN", EventKey="act:1", Ticket="t")

    status, award = await harness.admin(
        "POST", "/points/o_a/entries", body={"amount": 30, "reason": "清理楼道"}, operator="李社工"
    )
    assert status == 201
    assert (award["openid"], award["amount"], award["balance"]) == ("o_a", 30, 40)
    assert (award["kind"], award["by"]) == ("award", "李社工")
    status, fix = await harness.admin(
        "POST", "/points/o_a/entries", body={"amount": -5, "reason": "重复登记"}
    )
    assert status == 201 and (fix["kind"], fix["balance"]) == ("correction", 35)
    status, answer = await harness.admin(
        "POST", "/points/o_a/entries", body={"amount": -36, "reason": "更正"}
    )
    assert (status, answer["error"]) == (409, "该居民现有35积分，更正-36后会变成负数")

    status, ledger = await harness.admin("GET", "/points/o_a")
    assert status == 200 and ledger["balance"] == 35 and ledger["total"] == 3
    assert [(e["kind"], e["amount"]) for e in ledger["items"]] == [
        ("correction", -5),
        ("award", 30),
        ("checkin", 10),
    ]
    assert sum(e["amount"] for e in ledger["items"]) == ledger["balance"]
    assert ledger["items"][0]["balance"] == ledger["balance"]
    assert "您的志愿积分：35分" in (await harness.resident("o_a").say("积分") or "")

    _, first = await harness.admin("GET", "/points/o_a", limit="2")
    assert [e["seq"] for e in first["items"]] == [3, 2] and first["next"] == 2
    _, rest = await harness.admin("GET", "/points/o_a", skip="2", limit="2")
    assert [e["seq"] for e in rest["items"]] == [1] and rest["next"] is None

    for bad in ({"amount": 0, "reason": "x"}, {"amount": 5}, {"amount": "5", "reason": "x"}):
        assert (await harness.admin("POST", "/points/o_a/entries", body=bad))[0] == 400
    assert (await harness.admin("GET", "/points/o_a"))[1]["balance"] == 35
    _, nobody = await harness.admin("GET", "/points/o_nobody")
    assert (nobody["balance"], nobody["items"], nobody["next"]) == (0, [], None)


async def test_a_retried_award_posts_once(harness: Harness) -> None:
    body = {"amount": 20, "reason": "社区义诊帮忙", "key": "form-7"}
    status, first = await harness.admin("POST", "/points/o_a/entries", body=body)
    assert status == 201
    status, again = await harness.admin("POST", "/points/o_a/entries", body=body)
    assert status == 200 and again == first

    header = {"Idempotency-Key": "retry-42"}
    award = {"amount": 5, "reason": "发放传单"}
    s1, _, b1 = await _raw(harness, "POST", "/points/o_a/entries", headers=header, body=award)
    s2, _, b2 = await _raw(harness, "POST", "/points/o_a/entries", headers=header, body=award)
    assert (s1, s2) == (201, 200) and b1 == b2

    _, ledger = await harness.admin("GET", "/points/o_a")
    assert ledger["balance"] == 25 and [e["amount"] for e in ledger["items"]] == [5, 20]
    assert [a for _, a, _ in await _audit(harness)] == ["points.award", "points.award"]
    bad_key = {**award, "key": 7}
    assert (await harness.admin("POST", "/points/o_a/entries", body=bad_key))[0] == 400


async def test_a_key_reused_for_a_different_award_is_refused_not_silently_replayed(
    harness: Harness,
) -> None:
    body = {"amount": 20, "reason": "社区义诊帮忙", "key": "form-8"}
    assert (await harness.admin("POST", "/points/o_a/entries", body=body))[0] == 201
    status, error = await harness.admin("POST", "/points/o_a/entries", body={**body, "amount": 200})
    assert status == 409 and "幂等键" in error["error"]
    _, ledger = await harness.admin("GET", "/points/o_a")
    assert ledger["balance"] == 20


async def test_check_in_points_reach_the_leaderboard_at_once(harness: Harness) -> None:
    await harness.admin("POST", "/points/o_a/entries", body={"amount": 5, "reason": "发传单"})
    assert [i["openid"] for i in (await harness.admin("GET", "/leaderboard"))[1]["items"]] == [
        "o_a"
    ]
    await _create(harness, starts_in_hours=0.5, points=10)
    await harness.resident("o_b").event("SCAN", EventKey="act:1", Ticket="t")
    _, board = await harness.admin("GET", "/leaderboard")
    assert [(i["openid"], i["balance"]) for i in board["items"]] == [("o_b", 10), ("o_a", 5)]


async def test_an_activity_cannot_be_edited_once_started_nor_its_points_after_check_ins(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await _create(harness, starts_in_hours=0.5, capacity=1, points=10)
    await _sign_up(harness, "o_a")
    await _sign_up(harness, "o_b")  # waiting
    await harness.resident("o_a").event("SCAN", EventKey="act:1", Ticket="t")
    status, error = await harness.admin("PATCH", "/activities/1", body={"points": 50})
    assert status == 409 and "已有人签到" in error["error"]
    harness.clock.advance(HOUR)
    status, error = await harness.admin("PATCH", "/activities/1", body={"capacity": 5})
    assert status == 409 and error["error"] == "活动已经开始，不能修改"
    assert fake_api.sent_texts("o_b") == []  # no false promise of a place
    status, error = await harness.admin(
        "PATCH", "/activities/1", body={"starts_at": _local(harness, -3)}
    )
    assert status in (400, 409)


async def test_a_retried_restock_counts_once(harness: Harness) -> None:
    status, item = await harness.admin(
        "POST", "/catalogue", body={"name": "环保袋", "cost": 10, "stock": 5}
    )
    assert status == 201 and item["stock"] == 5
    body = {"amount": 10, "reason": "补货", "key": "delivery-3"}
    for _ in range(2):
        status, stocked = await harness.admin("POST", "/catalogue/1/stock", body=body)
        assert status == 200 and stocked["stock"] == 15
    status, _ = await harness.admin("POST", "/catalogue/1/stock", body={**body, "amount": 1})
    assert status == 409


async def test_non_ascii_digits_in_numbers_are_refused_cleanly(harness: Harness) -> None:
    assert (await harness.admin("GET", "/feedback", limit="²"))[0] == 400
    assert (await harness.admin("GET", "/feedback/²"))[0] == 404
    assert (await harness.admin("GET", "/activities/²"))[0] == 404


async def test_the_leaderboard_ranks_residents_by_balance(harness: Harness) -> None:
    for openid, amount in (("o_a", 10), ("o_b", 30), ("o_c", 20), ("o_d", 20)):
        body = {"amount": amount, "reason": "志愿服务"}
        assert (await harness.admin("POST", f"/points/{openid}/entries", body=body))[0] == 201
    status, board = await harness.admin("GET", "/leaderboard")
    assert status == 200
    assert [(i["rank"], i["openid"], i["balance"]) for i in board["items"]] == [
        (1, "o_b", 30),
        (2, "o_c", 20),
        (2, "o_d", 20),
        (4, "o_a", 10),
    ]
    await harness.admin("POST", "/points/o_b/entries", body={"amount": -25, "reason": "更正"})
    _, top = await harness.admin("GET", "/leaderboard", limit="2")
    assert [(i["rank"], i["openid"]) for i in top["items"]] == [(1, "o_c"), (1, "o_d")]


# --- the catalogue and redemptions --------------------------------------------------------


async def test_staff_keep_the_catalogue_and_its_stock(harness: Harness) -> None:
    status, item = await harness.admin(
        "POST", "/catalogue", body={"name": "环保袋", "cost": 20, "stock": 5}, operator="李社工"
    )
    assert status == 201
    assert {k: item[k] for k in ("number", "name", "cost", "stock", "active")} == {
        "number": 1,
        "name": "环保袋",
        "cost": 20,
        "stock": 5,
        "active": True,
    }
    status, answer = await harness.admin("POST", "/catalogue", body={"name": "毛巾", "stock": 1})
    assert (status, answer["error"]) == (400, "所需积分（cost）必须是1到10000之间的整数")

    status, item = await harness.admin(
        "PATCH", "/catalogue/1", body={"name": "帆布袋", "cost": 15}, operator="李社工"
    )
    assert status == 200 and (item["name"], item["cost"], item["stock"]) == ("帆布袋", 15, 5)
    for bad in ({"active": "no"}, {"cost": "15"}, {"name": 3}, {"cost": 0}):
        assert (await harness.admin("PATCH", "/catalogue/1", body=bad))[0] == 400
    assert (await harness.admin("PATCH", "/catalogue/9", body={"cost": 5}))[0] == 404

    status, item = await harness.admin(
        "POST", "/catalogue/1/stock", body={"amount": 3, "reason": "采购"}, operator="李社工"
    )
    assert status == 200 and item["stock"] == 8
    status, answer = await harness.admin(
        "POST", "/catalogue/1/stock", body={"amount": -9, "reason": "盘点"}
    )
    assert (status, answer["error"]) == (409, "库存只有8件，不能减少9件")
    status, item = await harness.admin(
        "POST", "/catalogue/1/stock", body={"amount": -8, "reason": "盘点"}
    )
    assert status == 200 and item["stock"] == 0
    assert (await harness.admin("POST", "/catalogue/9/stock", body={"amount": 1, "reason": "x"}))[
        0
    ] == 404
    await harness.admin("POST", "/catalogue/1/stock", body={"amount": 2, "reason": "采购"})
    offer = await harness.resident("o_a").say("兑换")
    assert "帆布袋｜15积分｜剩余2件" in (offer or "")

    status, item = await harness.admin("PATCH", "/catalogue/1", body={"active": False})
    assert status == 200 and item["active"] is False
    status, listing = await harness.admin("GET", "/catalogue")
    assert [(i["name"], i["stock"], i["active"]) for i in listing["items"]] == [
        ("帆布袋", 2, False)
    ]
    offer = await harness.resident("o_a").say("兑换")
    assert "帆布袋" not in (offer or "") and "目前没有可以兑换的物品" in (offer or "")


async def _redeem(harness: Harness, openid: str) -> str:
    """The resident redeems the first item of the catalogue; returns the voucher code."""
    resident = harness.resident(openid)
    await resident.say("兑换")
    await resident.say("1")
    reply = await resident.say("1") or ""
    found = re.search(r"兑换码：(\w+)", reply)
    assert found, reply
    return found.group(1)


async def test_staff_confirm_a_voucher_once(harness: Harness) -> None:
    await harness.admin("POST", "/points/o_a/entries", body={"amount": 50, "reason": "巡逻"})
    await harness.admin("POST", "/catalogue", body={"name": "环保袋", "cost": 20, "stock": 1})
    code = await _redeem(harness, "o_a")

    status, issued = await harness.admin("GET", "/redemptions")
    assert status == 200
    assert [(r["code"], r["openid"], r["name"], r["state"]) for r in issued["items"]] == [
        (code, "o_a", "环保袋", "issued")
    ]
    status, used = await harness.admin(
        "POST", f"/redemptions/{code}/confirm", operator="服务站小张"
    )
    assert status == 200 and (used["state"], used["confirmed_by"]) == ("used", "服务站小张")
    status, answer = await harness.admin("POST", f"/redemptions/{code}/confirm")
    assert (status, answer["error"]) == (409, f"兑换码 {code} 已经使用过，不能重复兑换")
    status, answer = await harness.admin("POST", "/redemptions/NOSUCH22/confirm")
    assert (status, answer["error"]) == (404, "没有兑换码 NOSUCH22")

    assert (await harness.admin("GET", "/redemptions"))[1]["items"] == []
    _, done = await harness.admin("GET", "/redemptions", state="used")
    assert [r["code"] for r in done["items"]] == [code]
    assert (await harness.admin("GET", "/redemptions", state="lost"))[0] == 400
    _, listing = await harness.admin("GET", "/catalogue")
    assert listing["items"][0]["stock"] == 0
    assert ("服务站小张", "redemption.confirm", f"redemption/{code}") in await _audit(harness)


async def test_a_redemption_shows_in_the_residents_ledger(harness: Harness) -> None:
    await harness.admin("POST", "/points/o_a/entries", body={"amount": 50, "reason": "巡逻"})
    await harness.admin("POST", "/catalogue", body={"name": "环保袋", "cost": 20, "stock": 1})
    code = await _redeem(harness, "o_a")
    _, ledger = await harness.admin("GET", "/points/o_a")
    assert ledger["balance"] == 30
    assert (ledger["items"][0]["amount"], ledger["items"][0]["ref"]) == (-20, f"redemption/{code}")


# --- the audit log and the token ---------------------------------------------------------


async def test_every_change_is_in_the_audit_log_with_who_made_it(harness: Harness) -> None:
    who = "李社工"
    await _create(harness)  # as 李社工
    award = {"amount": 10, "reason": "巡逻", "key": "k1"}
    fix = {"amount": -4, "reason": "更正"}
    steps: list[tuple[str, str, dict[str, Any], int]] = [
        ("PATCH", "/activities/1", {"capacity": 5}, 200),
        ("PATCH", "/activities/1", {"capacity": 0}, 400),
        ("POST", "/activities/1/cancel", {"reason": "改期"}, 200),
        ("POST", "/points/o_a/entries", award, 201),
        ("POST", "/points/o_a/entries", award, 200),  # a retry
        ("POST", "/points/o_a/entries", fix, 201),
        ("POST", "/points/o_a/entries", {**fix, "amount": -99}, 409),
        ("POST", "/catalogue", {"name": "毛巾", "cost": 5, "stock": 2}, 201),
        ("PATCH", "/catalogue/1", {"cost": 6}, 200),
    ]
    for method, path, body, expected in steps:
        harness.clock.advance(1)  # staff act seconds apart; the log is in time order
        assert (await harness.admin(method, path, body=body, operator=who))[0] == expected
    harness.clock.advance(1)
    restock = {"amount": 1, "reason": "x"}
    assert (await harness.admin("POST", "/catalogue/1/stock", body=restock))[0] == 200

    assert await _audit(harness) == [
        (who, "activity.create", "activity/1"),
        (who, "activity.edit", "activity/1"),
        (who, "activity.cancel", "activity/1"),
        (who, "points.award", "points/o_a"),
        (who, "points.correct", "points/o_a"),
        (who, "catalogue.add", "catalogue/1"),
        (who, "catalogue.edit", "catalogue/1"),
        ("api", "catalogue.stock", "catalogue/1"),  # no X-Operator header
    ]
    _, page = await harness.admin("GET", "/audit")
    details = [e["detail"] for e in page["items"]]
    assert details[1] == {"capacity": 5} and details[2] == {"reason": "改期"}
    assert details[4]["amount"] == -4


async def test_every_new_route_needs_the_bearer_token(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    calls = [
        ("POST", "/activities", {"title": "x"}),
        ("GET", "/activities", None),
        ("GET", "/activities/1", None),
        ("PATCH", "/activities/1", {"capacity": 3}),
        ("POST", "/activities/1/cancel", {"reason": "x"}),
        ("GET", "/activities/1/attendance", None),
        ("GET", "/points/o_a", None),
        ("POST", "/points/o_a/entries", {"amount": 5, "reason": "x"}),
        ("GET", "/leaderboard", None),
        ("GET", "/catalogue", None),
        ("POST", "/catalogue", {"name": "x", "cost": 1, "stock": 1}),
        ("PATCH", "/catalogue/1", {"cost": 2}),
        ("POST", "/catalogue/1/stock", {"amount": 1, "reason": "x"}),
        ("GET", "/redemptions", None),
        ("POST", "/redemptions/ABCDEFGH/confirm", None),
    ]
    for method, path, body in calls:
        status, answer = await harness.admin(method, path, body=body, token=None)
        assert (status, answer) == (401, {"error": "missing or wrong bearer token"}), path
        assert (await harness.admin(method, path, body=body, token="wrong"))[0] == 401
    assert (await harness.admin("GET", "/points/o_a"))[1]["balance"] == 0
    assert (await harness.admin("GET", "/catalogue"))[1]["items"] == []
    assert fake_api.calls_to("qrcode_create") == []


async def test_the_list_keeps_the_newest_activities_after_five_hundred_finished_ones(
    plain: Harness,
) -> None:
    """Regression: the list read each status with a 500-record look-up, oldest first, so
    after 500 finished activities the newest finished ones silently dropped out."""
    first = await _create(plain)
    repo = ActivityRepo(plain.app[keys.STORE])
    template = await repo.get(first["number"])
    assert template is not None
    for number in range(first["number"] + 1, first["number"] + 502):
        await repo.insert(replace(template, number=number, status=DONE, title=f"活动{number}"))
    status, listed = await plain.admin("GET", "/activities", include_past="true")
    assert status == 200
    numbers = [a["number"] for a in listed["items"]]
    assert len(numbers) == 502
    assert numbers[-1] == first["number"] + 501
