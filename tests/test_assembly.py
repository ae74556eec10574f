"""The 户主坝坝会 in the chat: answers per household, 议题, votes, results and objections.

Every test runs on each backend (TinyDB, PostgreSQL, PostgreSQL + Redis) through the
real webhook; staff actions go through the same domain desk the admin API uses.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot import keys
from bot.domain.assembly import AlreadyVoted, AssemblyDesk
from bot.domain.households import NotRepresentative
from bot.wechat.fake_api import FakeWeChatAPI
from handlers.assembly import ASK_TOPIC, NO_PUBLICITY, NO_VOTE, NONE_SCHEDULED, RSVP_HINT
from tests.conftest import FakeClock, Harness
from tests.test_households import bind

TZ = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0
DAY = 24 * HOUR


def assembly(harness: Harness) -> AssemblyDesk:
    return harness.app[keys.SERVICES].assembly


def evening(clock: FakeClock, days: int) -> datetime:
    """19:00 local, ``days`` calendar days from the test's today."""
    today = datetime.fromtimestamp(clock.now, TZ).date()
    day = today + timedelta(days=days)
    return datetime(day.year, day.month, day.day, 19, 0, tzinfo=TZ)


async def schedule(harness: Harness, days: int = 3, **fields: Any) -> int:
    body: dict[str, Any] = {
        "starts_at": evening(harness.clock, days).isoformat(),
        "place": "清源社区院坝",
        "agenda": ["选举共治委员会", "评选最美居民户"],
    }
    body.update(fields)
    meeting = await assembly(harness).create_meeting(body, actor="李社工")
    return meeting.number


async def open_vote(harness: Harness, hours: float = 48, **fields: Any) -> int:
    closes = datetime.fromtimestamp(harness.clock.now + hours * HOUR, TZ)
    body: dict[str, Any] = {
        "title": "12月最美居民户",
        "options": ["张家（3栋2单元501）", "李家（4栋1单元101）", "赵家（5栋1单元202）"],
        "closes_at": closes.isoformat(),
        "publicity_days": 7,
    }
    body.update(fields)
    vote = await assembly(harness).create_vote(body, actor="李社工")
    return vote.number


# --- 坝坝会 ----------------------------------------------------------------------------


async def test_without_a_scheduled_assembly_the_resident_is_told_plainly(harness: Harness) -> None:
    assert await harness.resident().say("坝坝会") == NONE_SCHEDULED


async def test_an_unbound_resident_binds_first_then_answers(harness: Harness) -> None:
    await schedule(harness)
    resident = harness.resident("o_wang")
    first = await resident.say("坝坝会")
    assert first is not None
    assert first.startswith("【户主坝坝会】\n时间：")
    assert "地点：清源社区院坝\n议题：\n  1) 选举共治委员会\n  2) 评选最美居民户" in first
    assert "答复参会情况前，请先绑定您家的房屋（每户由户代表答复）。" in first
    assert first.endswith("例如“3栋2单元501”。\n回复“取消”退出。")
    await resident.say("3栋2单元501")
    await resident.say("王阿姨")
    bound = await resident.say("1")
    assert bound is not None
    assert bound.startswith("绑定成功！您是3栋2单元501的户代表")
    assert "【户主坝坝会】" in bound and "您家（3栋2单元501）的答复：还没有答复" in bound
    assert bound.endswith(
        "您是户代表，请为全家答复：\n1. 参加\n2. 不参加\n3. 待定\n回复“议题 内容”可以提议题。"
    )
    # Said as a word (by voice, often) as well as by its number.
    assert await resident.say("参加") == "已为您家（3栋2单元501）登记：参加。会前一天会提醒您。"


async def test_the_representative_answers_for_the_household_and_may_change_it(
    harness: Harness,
) -> None:
    number = await schedule(harness)
    await bind(harness, "o_wang", name="王阿姨")
    await bind(harness, "o_xiaowang", name="小王")
    rep = harness.resident("o_wang")
    await rep.say("坝坝会")
    assert await rep.say("5") == RSVP_HINT
    assert await rep.say("好的") == RSVP_HINT
    assert await rep.say("3") == "已为您家（3栋2单元501）登记：待定。会前一天会提醒您。"
    member_view = await harness.resident("o_xiaowang").say("坝坝会")
    assert member_view is not None and "您家（3栋2单元501）的答复：待定" in member_view
    assert "以户代表的答复为准；您的意见会转告户代表：" in member_view
    await rep.say("开会")
    assert await rep.say("二") == (
        "已把您家（3栋2单元501）的答复从“待定”改为“不参加”。如有变化，开会前回复“坝坝会”可以修改。"
    )
    meeting = await assembly(harness).meeting(number)
    counts = await assembly(harness).counts(meeting)
    assert (counts.households, counts.attend, counts.absent, counts.maybe) == (1, 0, 1, 0)


async def test_a_members_answer_is_a_suggestion_and_the_representative_is_told(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    number = await schedule(harness)
    await bind(harness, "o_wang", name="王阿姨")
    await bind(harness, "o_xiaowang", name="小王")
    member = harness.resident("o_xiaowang")
    await member.say("坝坝会")
    assert await member.say("1") == "已把您的意见（参加）转告户代表，您家的答复以户代表为准。"
    told = fake_api.sent_texts("o_wang")
    assert len(told) == 1
    assert told[0].startswith("您家成员“小王”对户主坝坝会（")
    assert "的意见是：参加。\n以户代表的答复为准：回复“坝坝会”查看并为全家答复。" in told[0]
    meeting = await assembly(harness).meeting(number)
    assert (await assembly(harness).counts(meeting)).attend == 0
    rsvp = await assembly(harness).answer_of(number, "3-2-501")
    assert rsvp is not None and rsvp.answer == ""
    assert [(s.openid, s.name, s.answer) for s in rsvp.suggestions] == [
        ("o_xiaowang", "小王", "attend")
    ]
    # The representative's own answer is what counts, and keeps the suggestion.
    rep = harness.resident("o_wang")
    view = await rep.say("坝坝会")
    assert view is not None and "还没有答复" in view
    await rep.say("2")
    rsvp = await assembly(harness).answer_of(number, "3-2-501")
    assert rsvp is not None and rsvp.answer == "absent" and len(rsvp.suggestions) == 1


async def test_a_member_is_told_when_the_representative_cannot_be_reached(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await schedule(harness)
    await bind(harness, "o_wang")
    await bind(harness, "o_xiaowang")
    member = harness.resident("o_xiaowang")
    await member.say("坝坝会")
    fake_api.fail_next("custom_send", 45015)
    assert await member.say("3") == (
        "已记下您的意见（待定），但暂时没能通知到户代表，请直接告诉TA。"
    )


async def test_answers_after_the_start_and_for_a_cancelled_assembly_are_refused(
    harness: Harness,
) -> None:
    soon = datetime.fromtimestamp(harness.clock.now + 300, TZ).isoformat()
    number = await schedule(harness, starts_at=soon)
    await bind(harness, "o_wang")
    rep = harness.resident("o_wang")
    await rep.say("坝坝会")
    harness.clock.advance(360)  # it starts while the resident is making up their mind
    assert await rep.say("1") == "户主坝坝会已经开始，不能再答复了。"
    view = await rep.say("坝坝会")
    assert view is not None and view.endswith("会议已经开始，不能再答复了。")
    harness.clock.advance(3 * HOUR)
    assert await rep.say("坝坝会") == NONE_SCHEDULED

    later = await schedule(harness, days=5)
    await rep.say("坝坝会")
    await assembly(harness).cancel_meeting(later, "场地维修", actor="李社工")
    assert await rep.say("1") == "户主坝坝会已取消。"
    assert number != later


# --- 议题 ------------------------------------------------------------------------------


async def test_residents_suggest_agenda_items_for_the_next_assembly(harness: Harness) -> None:
    resident = harness.resident("o_li")
    early = await resident.say("议题 楼道堆物清理")
    assert early == "已收到您的议题建议（编号 1），会转交下一次坝坝会的组织者。"
    number = await schedule(harness)
    await bind(harness, "o_wang")
    rep = harness.resident("o_wang")
    taken = await rep.say("议题：垃圾分类点挪个位置")
    assert taken is not None and taken.startswith(
        "已收到您的议题建议（编号 2），会转交户主坝坝会（"
    )
    assert await rep.say("议题") == ASK_TOPIC
    assert await rep.say("好") == "议题至少写两个字。请重新发送，或回复“取消”退出。"
    taken = await rep.say("停车位太少")
    assert taken is not None and taken.startswith("已收到您的议题建议（编号 3）")
    topics = await assembly(harness).topics()
    assert [(t.number, t.meeting, t.household, t.text) for t in topics] == [
        (1, 0, "", "楼道堆物清理"),
        (2, number, "3-2-501", "垃圾分类点挪个位置"),
        (3, number, "3-2-501", "停车位太少"),
    ]


# --- reminders (for the schedules) ----------------------------------------------------


async def test_reminders_go_to_households_that_said_attend_or_maybe_the_day_before(
    harness: Harness,
) -> None:
    number = await schedule(harness, days=3)
    answers = {
        "o_a": ("1栋1单元101", "1"),
        "o_b": ("1栋1单元102", "3"),
        "o_c": ("2栋1单元101", "2"),
    }
    for openid, (address, answer) in answers.items():
        await bind(harness, openid, address)
        resident = harness.resident(openid)
        await resident.say("坝坝会")
        await resident.say(answer)
    await bind(harness, "o_d", "2栋1单元102")  # never answers
    await bind(harness, "o_a2", "1栋1单元101")  # a member of o_a's household
    desk = assembly(harness)
    meeting = await desk.meeting(number)
    assert sorted(await desk.reminder_recipients(meeting)) == ["o_a", "o_b"]
    assert await desk.households_for("rsvp:coming") == []  # three days before
    harness.clock.advance(2 * DAY)
    assert sorted(await desk.households_for("rsvp:coming")) == ["o_a", "o_b"]
    harness.clock.advance(DAY)
    assert await desk.households_for("rsvp:coming") == []  # the day itself
    assert sorted(await desk.households_for("all")) == ["o_a", "o_b", "o_c", "o_d"]
    assert sorted(await desk.households_for("building:1")) == ["o_a", "o_b"]
    context = await desk.template_context()
    assert (
        context["place"] == "清源社区院坝" and context["agenda"] == "选举共治委员会；评选最美居民户"
    )
    assert context["time"].endswith("19:00")


# --- votes -----------------------------------------------------------------------------


async def test_the_representative_votes_once_for_the_household(harness: Harness) -> None:
    number = await open_vote(harness)
    await bind(harness, "o_wang", name="王阿姨")
    await bind(harness, "o_xiaowang", name="小王")
    rep = harness.resident("o_wang")
    listing = await rep.say("投票")
    assert listing is not None
    assert listing.startswith("【投票】12月最美居民户\n")
    assert "截止｜每户一票，由户代表投\n1. 张家（3栋2单元501）\n2. 李家（4栋1单元101）" in listing
    assert listing.endswith("请回复候选前面的序号投票；回复“取消”退出。")
    assert await rep.say("4") == "没有第4项，请回复 1–3 之间的序号。"
    ask = await rep.say("2")
    assert ask == (
        "您要为全家投给：2. 李家（4栋1单元101）\n每户只能投一次，投出后不能更改。\n1. 确认投票\n2. 重新选择"
    )
    again = await rep.say("2")
    assert again == listing
    await rep.say("2")
    done = await rep.say("确认")
    assert done is not None and done.startswith("投票成功！您家投给了：李家（4栋1单元101）。")

    second = await rep.say("投票")
    assert second is not None
    assert second.endswith("您家已经投过票了（投给：李家（4栋1单元101）），截止后公布结果。")
    member = await harness.resident("o_xiaowang").say("投票")
    assert member is not None and "您家已经投过票了（投给：李家（4栋1单元101））" in member
    with pytest.raises(AlreadyVoted, match="您家已经投过票了"):
        await assembly(harness).cast("o_wang", number, 0)


async def test_a_member_cannot_vote_and_is_told_who_does(harness: Harness) -> None:
    number = await open_vote(harness)
    await bind(harness, "o_wang", name="王阿姨")
    await bind(harness, "o_xiaowang", name="小王")
    member = harness.resident("o_xiaowang")
    listing = await member.say("投票")
    assert listing is not None and listing.endswith(
        "每户一票，由户代表投票。您家的户代表是“王阿姨”，请把您的意见告诉TA。"
    )
    with pytest.raises(NotRepresentative):
        await assembly(harness).cast("o_xiaowang", number, 0)
    stranger = await harness.resident("o_stranger").say("投票")
    assert stranger is not None and stranger.endswith("投票前请先绑定您家的房屋：回复“绑定”。")


async def test_a_late_vote_is_refused(harness: Harness) -> None:
    await open_vote(harness, hours=5 / 60)
    await bind(harness, "o_wang")
    rep = harness.resident("o_wang")
    await rep.say("投票")
    await rep.say("1")
    harness.clock.advance(360)  # it closes between the choice and the confirmation
    late = await rep.say("1")
    assert late is not None and late.startswith("《12月最美居民户》已于")
    assert late.endswith("截止，不能再投票了。回复“投票”可以查看结果。")
    results = await rep.say("投票")
    assert results is not None and results.startswith("【投票结果】12月最美居民户")
    assert "没有户投票。" in results


async def test_ballots_sent_at_once_count_once(harness: Harness) -> None:
    number = await open_vote(harness)
    await bind(harness, "o_wang")
    desk = assembly(harness)
    outcomes = await asyncio.gather(
        *(desk.cast("o_wang", number, i % 3) for i in range(6)), return_exceptions=True
    )
    assert sum(1 for o in outcomes if not isinstance(o, BaseException)) == 1
    assert all(isinstance(o, AlreadyVoted) for o in outcomes if isinstance(o, BaseException))
    assert await desk.turnout(await desk.vote(number)) == 1


async def test_results_are_counted_at_the_close_posted_and_handed_to_the_push(
    harness: Harness,
) -> None:
    number = await open_vote(harness, hours=24, seats=1)
    for openid, address, pick in (
        ("o_a", "1栋1单元101", "1"),
        ("o_b", "1栋1单元102", "1"),
        ("o_c", "1栋1单元103", "2"),
    ):
        await bind(harness, openid, address)
        resident = harness.resident(openid)
        await resident.say("投票")
        await resident.say(pick)
        await resident.say("1")
    desk = assembly(harness)
    assert await desk.close_due_votes() == []
    harness.clock.advance(25 * HOUR)
    closed = await desk.close_due_votes()
    assert [c.vote.number for c in closed] == [number]
    assert closed[0].campaign == f"vote-results:{number}"
    text = closed[0].text
    assert text.startswith(
        "【投票结果】12月最美居民户\n1. 张家（3栋2单元501）：2票（当选）\n"
        "2. 李家（4栋1单元101）：1票\n3. 赵家（5栋1单元202）：0票\n共3户投票。\n公示至"
    )
    assert text.endswith("如有异议，请回复“异议 内容”。")
    # Returned again until marked pushed (the push engine's claim keeps it to once).
    assert [c.vote.number for c in await desk.close_due_votes()] == [number]
    await desk.mark_results_pushed(number)
    assert await desk.close_due_votes() == []
    posted = await harness.resident("o_c").say("投票")
    assert posted == text
    harness.clock.advance(8 * DAY)
    await desk.close_due_votes()
    assert (await desk.vote(number)).status == "final"
    assert await harness.resident("o_c").say("投票") == NO_VOTE


async def test_an_objection_during_the_publicity_period_reaches_the_organiser(
    harness: Harness,
) -> None:
    number = await open_vote(harness, hours=1, publicity_days=3)
    await bind(harness, "o_wang")
    resident = harness.resident("o_wang")
    assert await resident.say("异议 票数不对") == NO_PUBLICITY  # still voting
    harness.clock.advance(2 * HOUR)
    taken = await resident.say("异议 李家不住本社区，不符合条件")
    assert taken == "已收到您对《12月最美居民户》结果的异议（编号 1），社区会在公示期内核实处理。"
    other = harness.resident("o_stranger")
    assert await other.say("异议") == (
        "请写明您对《12月最美居民户》结果的异议（最多300字）。\n回复“取消”退出。"
    )
    assert await other.say("啊") == "请写明异议的内容。请重新发送，或回复“取消”退出。"
    taken = await other.say("计票时间太短")
    assert taken is not None and "（编号 2）" in taken
    found = await assembly(harness).objections(number)
    assert [(o.openid, o.household, o.text) for o in found] == [
        ("o_wang", "3-2-501", "李家不住本社区，不符合条件"),
        ("o_stranger", "", "计票时间太短"),
    ]
    harness.clock.advance(4 * DAY)
    assert await resident.say("异议 还有问题") == NO_PUBLICITY


async def test_several_open_votes_are_listed_first(harness: Harness) -> None:
    await open_vote(harness, hours=24)
    await open_vote(harness, hours=48, title="优秀共治卫士", options=["刘大爷", "陈阿姨"])
    await bind(harness, "o_wang")
    rep = harness.resident("o_wang")
    listing = await rep.say("投票")
    assert listing is not None and listing.startswith("进行中的投票（回复序号查看候选）：")
    assert "1. 《12月最美居民户》" in listing and "2. 《优秀共治卫士》" in listing
    shown = await rep.say("2")
    assert shown is not None and shown.startswith("【投票】优秀共治卫士") and "2. 陈阿姨" in shown
    await rep.say("2")
    done = await rep.say("1")
    assert done is not None and done.startswith("投票成功！您家投给了：陈阿姨。")


async def test_a_long_agenda_is_shortened_to_fit_one_reply(harness: Harness) -> None:
    agenda = [f"第{i}项：" + "关于小区公共空间改造和停车管理的讨论" * 3 for i in range(1, 11)]
    await schedule(harness, agenda=agenda)
    await bind(harness, "o_wang")
    view = await harness.resident("o_wang").say("坝坝会")
    assert view is not None and "  8) 第8项：" in view and "  ……共10项" in view
    assert "第9项" not in view and view.endswith("回复“议题 内容”可以提议题。")
    assert len(view.encode()) <= 2048
