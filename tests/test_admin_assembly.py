"""Staff run households, assemblies and votes through /admin/api/, on every backend.

Residents act through the real webhook (绑定, 坝坝会, 议题, 投票, 异议); staff act through
the admin API; what each side sees of the other's actions is what these tests check.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot import keys
from bot.wechat.fake_api import FakeWeChatAPI
from tests.conftest import ADMIN_TOKEN, Harness
from tests.test_households import bind

TZ = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0
DAY = 24 * HOUR


def _local(harness: Harness, hours_from_now: float) -> str:
    at = datetime.fromtimestamp(harness.clock.now + hours_from_now * HOUR, TZ)
    return at.strftime("%Y-%m-%dT%H:%M")


async def _audit(harness: Harness) -> list[tuple[str, str, str]]:
    status, page = await harness.admin("GET", "/audit")
    assert status == 200
    return [(e["actor"], e["action"], e["target"]) for e in page["items"]]


async def _post_csv(
    harness: Harness, body: bytes, content_type: str = "text/csv; charset=utf-8"
) -> tuple[int, Any]:
    assert harness.session is not None
    headers = {
        "Authorization": f"Bearer {ADMIN_TOKEN}",
        "Content-Type": content_type,
        "X-Operator": "李社工",
    }
    async with harness.session.post(
        harness.url("/admin/api/households/import"), data=io.BytesIO(body), headers=headers
    ) as resp:
        return resp.status, await resp.json()


# --- households -------------------------------------------------------------------------


async def test_a_csv_import_reports_what_each_row_did(harness: Harness) -> None:
    await bind(harness, "o_bound_elsewhere", "9栋1单元101")
    csv_text = (
        "3,2,501,o_rep_501\n"
        "3,2,502\n"
        "\n"
        "03,2,0503,\n"  # leading zeros: the same address as 3-2-503
        "3,2,501\n"  # a duplicate of line 1
        "3,,\n"  # no room
        "3,2,5#1\n"  # a room that is not an address
        "3,2,504,o bad openid\n"
        "3,2,505,o_bound_elsewhere\n"
        "3,2,506,o_x,extra\n"
        "9,1,101\n"  # exists already (bound by a resident)
    )
    status, report = await _post_csv(harness, ("\ufeff" + csv_text).encode())
    assert status == 200, report
    assert (report["created"], report["skipped"], report["invalid"]) == (3, 2, 5)
    assert [(r["line"], r["result"], r["household"], r["reason"]) for r in report["rows"]] == [
        (1, "created", "3-2-501", ""),
        (2, "created", "3-2-502", ""),
        (4, "created", "3-2-503", ""),
        (5, "skipped", "3-2-501", "与第1行重复"),
        (6, "invalid", "", "缺少房号"),
        (7, "invalid", "", "房号“5#1”只能是1到6位数字或字母"),
        (8, "invalid", "", "户代表 openid“o bad openid”格式不对"),
        (9, "invalid", "3-2-505", "户代表已绑定9栋1单元101"),
        (10, "invalid", "", "多余的列（每行：楼栋,单元,房号[,户代表openid]）"),
        (11, "skipped", "9-1-101", "已存在"),
    ]
    # Importing the same file again creates nothing.
    status, again = await _post_csv(harness, csv_text.encode())
    assert (again["created"], again["skipped"], again["invalid"]) == (0, 5, 5)

    status, household = await harness.admin("GET", "/households/3-2-501")
    assert status == 200
    assert household["label"] == "3栋2单元501" and household["representative"] == "o_rep_501"
    assert [m["openid"] for m in household["members"]] == ["o_rep_501"]
    assert household["created_by"] == "import:李社工"
    status, page = await harness.admin("GET", "/households", limit="2")
    assert status == 200 and page["total"] == 4 and len(page["items"]) == 2
    status, rest = await harness.admin("GET", "/households", after=page["next"])
    assert [h["id"] for h in page["items"] + rest["items"]] == [
        "3-2-501",
        "3-2-502",
        "3-2-503",
        "9-1-101",
    ]
    status, building = await harness.admin("GET", "/households", building="3")
    assert [h["id"] for h in building["items"]] == ["3-2-501", "3-2-502", "3-2-503"]
    assert (await harness.admin("GET", "/households/3-2-999"))[0] == 404

    # The imported representative answers for the household in the chat at once.
    view = await harness.resident("o_rep_501").say("我的家庭")
    assert view is not None and "您家：3栋2单元501" in view and "户代表：您" in view
    assert await _audit(harness) == [
        ("李社工", "household.import", "households"),
        ("李社工", "household.import", "households"),
    ]


async def test_an_import_may_name_its_columns_and_come_from_excel_in_gbk(
    harness: Harness,
) -> None:
    csv_text = "楼栋,单元,房号,户代表,网格,标签\n1,1,101,o_a,g1,党员户;低保户\n1,1,102,o_b,g2,\n2,1,101,o_c,g1,\n"
    status, report = await _post_csv(harness, csv_text.encode("gb18030"), "text/csv; charset=gbk")
    assert status == 200 and report["created"] == 3, report
    desk = harness.app[keys.SERVICES].assembly
    assert sorted(await desk.households_for("grid:g1")) == ["o_a", "o_c"]
    assert await desk.households_for("tag:党员户") == ["o_a"]
    assert sorted(await desk.households_for("building:1")) == ["o_a", "o_b"]
    status, listed = await harness.admin("GET", "/households", grid="g2")
    assert [h["id"] for h in listed["items"]] == ["1-1-102"]

    status, body = await _post_csv(harness, "楼栋,门禁卡\n1,2\n".encode())
    assert (status, body["error"]) == (400, "不认识的列名：门禁卡")
    status, body = await _post_csv(harness, b"", "text/csv")
    assert (status, body["error"]) == (400, "CSV 是空的")
    status, body = await _post_csv(harness, b"<xml/>", "application/xml")
    assert status == 400
    status, body = await _post_csv(harness, b"1,1,1\n" * 800_000)
    assert status == 413 and "import_max_bytes" in body["error"]
    status, report = await harness.admin("POST", "/households/import", body={"csv": "5,1,101\n"})
    assert status == 200 and report["created"] == 1


async def test_staff_change_the_representative_and_remove_a_member(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await bind(harness, "o_wang", name="王阿姨")
    await bind(harness, "o_xiaowang", name="小王")
    await bind(harness, "o_other", "4栋1单元101")
    status, household = await harness.admin(
        "PUT",
        "/households/3-2-501/representative",
        body={"openid": "o_xiaowang"},
        operator="李社工",
    )
    assert status == 200 and household["representative"] == "o_xiaowang"
    assert fake_api.sent_texts("o_xiaowang") == [
        "您现在是3栋2单元501的户代表：坝坝会的参会答复和投票由您代表全家。回复“我的家庭”查看。"
    ]
    status, body = await harness.admin(
        "PUT", "/households/3-2-501/representative", body={"openid": "o_other"}
    )
    assert status == 409 and body["error"] == "该居民已绑定4栋1单元101，请先让其解除绑定"
    status, body = await harness.admin("PUT", "/households/3-2-501/representative", body={})
    assert status == 400
    # Someone not yet bound is bound to the household and represents it.
    status, household = await harness.admin(
        "PUT",
        "/households/3-2-501/representative",
        body={"openid": "o_newcomer"},
        operator="李社工",
    )
    assert status == 200 and household["representative"] == "o_newcomer"
    assert [m["openid"] for m in household["members"]] == ["o_wang", "o_xiaowang", "o_newcomer"]
    status, household = await harness.admin(
        "DELETE", "/households/3-2-501/members/o_newcomer", operator="李社工"
    )
    assert status == 200 and household["representative"] == "o_wang"
    assert fake_api.sent_texts("o_wang")[-1].startswith("您现在是3栋2单元501的户代表")
    assert (await harness.admin("DELETE", "/households/3-2-501/members/o_nobody"))[0] == 404
    assert await _audit(harness) == [
        ("李社工", "household.representative", "household/3-2-501"),
        ("李社工", "household.representative", "household/3-2-501"),
        ("李社工", "household.remove_member", "household/3-2-501"),
    ]


# --- meetings ---------------------------------------------------------------------------


async def test_staff_schedule_an_assembly_and_see_who_comes_against_the_quorum(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    status, meeting = await harness.admin(
        "POST",
        "/meetings",
        body={
            "starts_at": _local(harness, 72),
            "place": "清源社区院坝",
            "agenda": "选举共治委员会\n评选最美居民户\n",
        },
        operator="李社工",
    )
    assert status == 201, meeting
    assert meeting["title"] == "户主坝坝会" and meeting["agenda"] == [
        "选举共治委员会",
        "评选最美居民户",
    ]
    assert meeting["ends_at"] == (
        datetime.fromisoformat(meeting["starts_at"]) + timedelta(hours=2)
    ).isoformat(timespec="minutes")
    for openid, address, answer in (
        ("o_a", "1栋1单元101", "1"),
        ("o_b", "1栋1单元102", "1"),
        ("o_c", "1栋1单元103", "3"),
        ("o_d", "1栋1单元104", "2"),
        ("o_e", "1栋1单元105", ""),
    ):
        await bind(harness, openid, address)
        if answer:
            resident = harness.resident(openid)
            await resident.say("坝坝会")
            await resident.say(answer)
    status, one = await harness.admin("GET", "/meetings/1")
    assert status == 200
    assert one["rsvp"] == {
        "households": 5,
        "attend": 2,
        "absent": 1,
        "maybe": 1,
        "unanswered": 1,
        "quorum": {"ratio": 0.5, "needed": 3, "reached": False},
    }
    status, coming = await harness.admin("GET", "/meetings/1/rsvps", answer="attend")
    assert status == 200
    assert [(r["household"], r["answer"], r["by"]) for r in coming["items"]] == [
        ("1-1-101", "attend", "o_a"),
        ("1-1-102", "attend", "o_b"),
    ]
    status, every = await harness.admin("GET", "/meetings/1/rsvps")
    assert len(every["items"]) == 4
    assert (await harness.admin("GET", "/meetings/1/rsvps", answer="yes"))[0] == 400

    status, edited = await harness.admin(
        "PATCH", "/meetings/1", body={"place": "社区活动中心二楼"}, operator="李社工"
    )
    assert status == 200 and edited["place"] == "社区活动中心二楼"
    view = await harness.resident("o_a").say("坝坝会")
    assert view is not None and "地点：社区活动中心二楼" in view
    status, listed = await harness.admin("GET", "/meetings")
    assert status == 200 and listed["upcoming"] == 1 and len(listed["items"]) == 1
    status, body = await harness.admin(
        "PATCH", "/meetings/1", body={"starts_at": "2000-01-01T09:00"}
    )
    assert (status, body["error"]) == (400, "开始时间必须在将来")
    assert (await harness.admin("GET", "/meetings/9"))[0] == 404
    assert (await harness.admin("POST", "/meetings", body={"place": "院坝"}))[0] == 400

    status, cancelled = await harness.admin(
        "POST", "/meetings/1/cancel", body={"reason": "暴雨"}, operator="李社工"
    )
    assert status == 200 and cancelled["status"] == "cancelled"
    for told in ("o_a", "o_b", "o_c"):
        assert fake_api.sent_texts(told)[-1].endswith("户主坝坝会取消了。原因：暴雨")
    assert fake_api.sent_texts("o_d") == []
    assert (await harness.admin("POST", "/meetings/1/cancel", body={}))[0] == 409
    assert await _audit(harness) == [
        ("李社工", "meeting.create", "meeting/1"),
        ("李社工", "meeting.edit", "meeting/1"),
        ("李社工", "meeting.cancel", "meeting/1"),
    ]


async def test_staff_read_the_agenda_suggestions(harness: Harness) -> None:
    await harness.resident("o_li").say("议题 楼道堆物清理")
    status, meeting = await harness.admin(
        "POST", "/meetings", body={"starts_at": _local(harness, 48), "place": "院坝"}
    )
    assert status == 201
    await harness.resident("o_zhao").say("议题 停车难")
    status, page = await harness.admin("GET", "/agenda-suggestions")
    assert status == 200
    assert [(i["number"], i["meeting"], i["openid"], i["text"]) for i in page["items"]] == [
        (1, None, "o_li", "楼道堆物清理"),
        (2, meeting["number"], "o_zhao", "停车难"),
    ]
    status, only = await harness.admin("GET", "/agenda-suggestions", meeting="0")
    assert [i["number"] for i in only["items"]] == [1]


# --- votes ------------------------------------------------------------------------------


async def test_staff_open_a_vote_and_read_results_and_objections(harness: Harness) -> None:
    body = {
        "title": "优秀共治卫士",
        "options": ["刘大爷", "陈阿姨", "周师傅"],
        "closes_at": _local(harness, 24),
        "publicity_days": 5,
        "seats": 2,
    }
    for bad, message in (
        ({**body, "options": ["刘大爷"]}, "options 必须是2到12个候选（文字）"),
        ({**body, "options": ["刘大爷", "刘大爷"]}, "options 中有重复的候选"),
        ({**body, "closes_at": "2000-01-01T00:00"}, "截止时间必须在将来"),
        ({**body, "seats": 3}, "seats 必须是 1 到 2 之间的整数"),
        ({k: v for k, v in body.items() if k != "title"}, "需要字段 title（文字）"),
    ):
        status, error = await harness.admin("POST", "/votes", body=bad)
        assert (status, error["error"]) == (400, message)
    status, vote = await harness.admin("POST", "/votes", body=body, operator="李社工")
    assert status == 201, vote
    assert vote["status"] == "open" and vote["results"] is None and vote["turnout"] == 0

    for openid, address, pick in (
        ("o_a", "1栋1单元101", "1"),
        ("o_b", "1栋1单元102", "2"),
        ("o_c", "1栋1单元103", "2"),
    ):
        await bind(harness, openid, address)
        resident = harness.resident(openid)
        await resident.say("投票")
        await resident.say(pick)
        await resident.say("1")
    status, running = await harness.admin("GET", "/votes/1")
    assert running["turnout"] == 3 and running["results"] is None

    harness.clock.advance(25 * HOUR)
    status, closed = await harness.admin("GET", "/votes/1")
    assert status == 200 and closed["status"] == "closed"
    assert closed["results"] == [
        {"option": "刘大爷", "votes": 1, "winner": True},
        {"option": "陈阿姨", "votes": 2, "winner": True},
        {"option": "周师傅", "votes": 0, "winner": False},
    ]
    assert closed["results_text"].startswith("【投票结果】优秀共治卫士\n1. 刘大爷：1票（当选）")
    await harness.resident("o_a").say("异议 周师傅的票没算上")
    status, objections = await harness.admin("GET", "/votes/1/objections")
    assert status == 200
    assert [(o["openid"], o["household"], o["text"]) for o in objections["items"]] == [
        ("o_a", "1-1-101", "周师傅的票没算上")
    ]
    status, listed = await harness.admin("GET", "/votes")
    assert [v["number"] for v in listed["items"]] == [1]
    assert (await harness.admin("GET", "/votes/7"))[0] == 404
    assert (await harness.admin("GET", "/votes/7/objections"))[0] == 404
    assert await _audit(harness) == [("李社工", "vote.create", "vote/1")]


async def test_every_new_route_needs_the_bearer_token(harness: Harness) -> None:
    calls = [
        ("POST", "/households/import"),
        ("GET", "/households"),
        ("GET", "/households/3-2-501"),
        ("PUT", "/households/3-2-501/representative"),
        ("DELETE", "/households/3-2-501/members/o_a"),
        ("POST", "/meetings"),
        ("GET", "/meetings"),
        ("GET", "/meetings/1"),
        ("PATCH", "/meetings/1"),
        ("POST", "/meetings/1/cancel"),
        ("GET", "/meetings/1/rsvps"),
        ("GET", "/agenda-suggestions"),
        ("POST", "/votes"),
        ("GET", "/votes"),
        ("GET", "/votes/1"),
        ("GET", "/votes/1/objections"),
    ]
    for method, path in calls:
        status, body = await harness.admin(method, path, body={}, token=None)
        assert (status, body["error"]) == (401, "missing or wrong bearer token"), path
        assert (await harness.admin(method, path, body={}, token="wrong"))[0] == 401, path
    assert await _audit(harness) == []
