"""The 坝坝会 pages: the next meeting's answers against the quorum, meetings made and
changed through forms, agenda suggestions, votes and objections as staff see them.

Residents act through the chat (绑定, 坝坝会, 议题, 投票, 异议); the page must show what
the desk counts, the moment it counts it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import keys
from bot.domain.assembly import AssemblyDesk
from tests.conftest import Harness
from tests.test_assembly import evening, open_vote, schedule
from tests.test_households import bind
from tests.web.conftest import ADMIN_NAME, ADMIN_PASSWORD, Staff, browser_log_in, screenshot

TZ = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0


def desk(site: Harness) -> AssemblyDesk:
    return site.app[keys.SERVICES].assembly


async def answer(site: Harness, openid: str, choice: str) -> None:
    resident = site.resident(openid)
    await resident.say("坝坝会")
    reply = await resident.say(choice)
    assert reply is not None and ("登记" in reply or "转告" in reply), reply


def section(html: str, heading: str) -> str:
    """The page's text from ``heading`` up to the next heading of any level."""
    start = html.index(heading)
    end = re.compile(r"<h[1-4][ >]").search(html, start + len(heading))
    return html[start : end.start() if end else len(html)]


async def test_an_rsvp_sent_in_the_chat_is_counted_on_reload(site: Harness, page: Any) -> None:
    await bind(site, "o_wang", name="王阿姨")
    await schedule(site)
    await browser_log_in(page)
    await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="坝坝会").click()
    await page.get_by_role("heading", name="下一次坝坝会").wait_for()
    await page.get_by_text("参加 0 户 / 共 1 户，法定人数 1 户，尚差 1 户", exact=True).wait_for()
    await page.get_by_role("row", name="参加 0", exact=True).wait_for()
    chart = page.get_by_role("img", name=re.compile("户主坝坝会的答复"))
    assert await chart.count() == 1

    resident = site.resident("o_wang")
    assert "请为全家答复" in (await resident.say("坝坝会") or "")
    assert (await resident.say("1") or "").startswith("已为您家（3栋2单元501）登记：参加")

    await page.reload()
    await page.get_by_text(
        "参加 1 户 / 共 1 户，法定人数 1 户，已达到法定人数", exact=True
    ).wait_for()
    await page.get_by_role("row", name="参加 1", exact=True).wait_for()
    assert "尚差" not in await page.locator("main").inner_text()
    await screenshot(page, "assemblies")


async def test_staff_schedule_edit_and_cancel_a_meeting_with_the_forms(
    admin: Staff, site: Harness
) -> None:
    starts = evening(site.clock, 5).strftime("%Y-%m-%dT%H:%M")
    await admin.get("/admin/assemblies")
    status, where = await admin.post(
        "/admin/assemblies",
        {
            "title": "户主坝坝会",
            "starts_at": starts,
            "ends_at": "",
            "place": "清源社区院坝",
            "agenda": "选举共治委员会\n\n评选最美居民户\n",
        },
    )
    assert (status, where) == (303, "/admin/assemblies/1")
    shown = await admin.follow(where)
    assert "已安排坝坝会（编号 1）" in shown
    assert "清源社区院坝" in shown and "<li>评选最美居民户</li>" in shown
    meeting = await desk(site).meeting(1)
    assert datetime.fromtimestamp(meeting.starts_at, TZ).strftime("%Y-%m-%dT%H:%M") == starts
    assert meeting.ends_at - meeting.starts_at == 2 * HOUR
    assert meeting.agenda == ("选举共治委员会", "评选最美居民户")
    # The form comes back filled in, times as the datetime-local inputs take them.
    assert f'value="{starts}"' in shown

    status, where = await admin.post(
        "/admin/assemblies/1/edit",
        {"title": "户主坝坝会", "starts_at": starts, "place": "社区活动室", "agenda": "选举"},
    )
    assert "已保存会议的修改" in await admin.follow(where)
    meeting = await desk(site).meeting(1)
    assert (meeting.place, meeting.agenda) == ("社区活动室", ("选举",))
    assert meeting.ends_at - meeting.starts_at == 2 * HOUR  # kept, not reset

    status, where = await admin.post("/admin/assemblies/1/cancel", {"reason": "场地维修"})
    shown = await admin.follow(where)
    assert "已取消这次坝坝会" in shown and "原因：场地维修" in shown
    assert "修改会议" not in shown  # a cancelled meeting has no edit form
    # The desk's rule refuses a change to a cancelled meeting, and staff read why.
    status, where = await admin.post("/admin/assemblies/1/edit", {"place": "别处"})
    assert status == 303
    assert "会议已取消，不能修改" in await admin.follow(where)

    entries = await site.app[keys.AUDIT].page(after=None, limit=50)
    assert [(e.actor, e.action) for e in entries if e.target == "meeting/1"] == [
        ("web:wangfang", "meeting.create"),
        ("web:wangfang", "meeting.edit"),
        ("web:wangfang", "meeting.cancel"),
    ]


async def test_a_meeting_form_without_a_time_or_with_a_past_time_is_explained(
    admin: Staff, site: Harness
) -> None:
    await admin.get("/admin/assemblies")
    status, where = await admin.post("/admin/assemblies", {"starts_at": "", "place": "院坝"})
    assert status == 303
    assert "请填写“开始时间”" in await admin.follow(where)
    past = datetime.fromtimestamp(site.clock.now - HOUR, TZ).strftime("%Y-%m-%dT%H:%M")
    status, where = await admin.post("/admin/assemblies", {"starts_at": past, "place": "院坝"})
    assert "开始时间必须在将来" in await admin.follow(where)
    assert await desk(site).meetings() == []


async def test_the_meeting_page_lists_households_by_answer_with_members_suggestions(
    admin: Staff, site: Harness
) -> None:
    number = await schedule(site)
    await bind(site, "o_wang", "3栋2单元501", name="王阿姨")
    await bind(site, "o_xiaowang", "3栋2单元501", name="小王")
    await bind(site, "o_li", "4栋1单元101")
    await bind(site, "o_zhao", "5栋1单元202")
    await answer(site, "o_xiaowang", "3")  # a member's suggestion, not the household's answer
    await answer(site, "o_wang", "1")
    await answer(site, "o_li", "2")

    status, html = await admin.get(f"/admin/assemblies/{number}")
    assert status == 200
    assert "参加 1 户 / 共 3 户，法定人数 2 户，尚差 1 户" in html
    attending = section(html, "参加（1 户）")
    assert "3栋2单元501" in attending and "小王：待定" in attending
    assert "4栋1单元101" in section(html, "不参加（1 户）")
    assert "没有。" in section(html, "待定（0 户）")
    assert "未答复 1 户" in html
    # The same figures as the desk's, which the JSON API also gives.
    counts = await desk(site).counts(await desk(site).meeting(number))
    assert (counts.attend, counts.absent, counts.maybe, counts.unanswered) == (1, 1, 0, 1)


async def test_agenda_suggestions_votes_and_objections_appear(admin: Staff, site: Harness) -> None:
    await site.resident("o_li").say("议题 楼道堆物清理")  # before any meeting
    number = await schedule(site)
    await bind(site, "o_wang")
    await site.resident("o_wang").say("议题 停车位太少")
    vote = await open_vote(site, hours=1, publicity_days=3)
    running = await open_vote(site, hours=48, title="优秀共治卫士", options=["陈阿姨", "刘师傅"])
    rep = site.resident("o_wang")
    await rep.say("投票")
    await rep.say("1")  # the soonest-closing vote first
    await rep.say("1")
    assert (await rep.say("1") or "").startswith("投票成功！")

    status, html = await admin.get("/admin/assemblies")
    assert status == 200, html
    topics = section(html, "议题建议（2）")
    assert "楼道堆物清理" in topics and "待安排" in topics
    assert "停车位太少" in topics and f"第 {number} 号" in topics and "3-2-501" in topics
    open_card = section(html, "12月最美居民户")
    assert "投票中" in open_card
    assert "张家（3栋2单元501）：" not in html  # no running tally while households vote
    assert re.search(r"<dt>已投票</dt><dd>1 户</dd>", html)

    site.clock.advance(2 * HOUR)
    await admin.log_in(ADMIN_NAME, ADMIN_PASSWORD)  # two idle hours end the session
    objection = await site.resident("o_wang").say("异议 李家不住本社区，不符合条件")
    assert objection is not None and "（编号 1）" in objection

    status, html = await admin.get("/admin/assemblies")
    assert status == 200, html
    # Newest first: the running vote, then the closed one.
    still_open = html[html.index(f'id="vote-{running}-h"') : html.index(f'id="vote-{vote}-h"')]
    closed = html[html.index(f'id="vote-{vote}-h"') : html.index('id="all-h"')]
    assert "已截止，公示中" in closed
    assert "张家（3栋2单元501）：1票（当选）" in closed and "共1户投票。" in closed
    assert "李家不住本社区，不符合条件" in closed and "异议（1）" in closed
    assert 'role="img"' in closed and "得票" in closed
    assert "投票中" in still_open and "异议（0）" in still_open


async def test_the_assembly_pages_are_for_admins_only(
    grid_worker: Staff, anonymous: Staff, site: Harness
) -> None:
    number = await schedule(site)
    for path in ("/admin/assemblies", f"/admin/assemblies/{number}"):
        assert (await grid_worker.get(path))[0] == 403
        status, where = await anonymous.get(path)
        assert status == 303 and where.startswith("/admin/login")
    status, _ = await grid_worker.post(f"/admin/assemblies/{number}/cancel", {"reason": "x"})
    assert status == 403
    assert (await desk(site).meeting(number)).status == "scheduled"


async def test_a_form_post_without_the_token_changes_nothing(admin: Staff, site: Harness) -> None:
    number = await schedule(site)
    status, html = await admin.post(
        f"/admin/assemblies/{number}/cancel", {"reason": "x"}, csrf=False
    )
    assert status == 403 and "表单已过期" in html
    assert (await desk(site).meeting(number)).status == "scheduled"


async def test_an_unknown_meeting_is_a_plain_not_found_page(admin: Staff) -> None:
    status, html = await admin.get("/admin/assemblies/99")
    assert status == 404 and "没有编号为 99 的会议" in html
    assert (await admin.get("/admin/assemblies/abc"))[0] == 404
