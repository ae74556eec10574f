"""Volunteer sign-up, waitlist, check-in by QR code and reminders, as residents live them.

Every test runs on each backend (TinyDB, PostgreSQL, PostgreSQL + Redis) through
the real webhook with signed XML; staff actions go through the same domain desk
the admin API uses.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import keys
from bot.domain.volunteers import VolunteerDesk
from bot.simulator import reply_text
from bot.wechat.fake_api import FakeWeChatAPI
from handlers.volunteer import NONE_OPEN, NOTHING_MINE
from schedules.jobs import volunteer_upkeep
from tests.conftest import FakeClock, Harness

HOUR = 3600.0
DAY = 24 * HOUR
TZ = ZoneInfo("Asia/Shanghai")


async def settled(harness: Harness) -> None:
    """Reminders go out through the push engine, in the background: let it finish."""
    assert await harness.app[keys.TASKS].wait_idle(10.0, besides=("scheduler-lease",))


def desk(harness: Harness) -> VolunteerDesk:
    return harness.app[keys.SERVICES].volunteers


def at(clock: FakeClock, offset: float) -> str:
    """An ISO local time ``offset`` seconds from the test's now, as staff type it."""
    return datetime.fromtimestamp(clock.now + offset, TZ).strftime("%Y-%m-%dT%H:%M")


async def create(harness: Harness, **fields: Any) -> int:
    body = {
        "title": "夜跑巡逻队",
        "place": "清源社区南门",
        "starts_at": at(harness.clock, 2 * DAY),
        "ends_at": at(harness.clock, 2 * DAY + 2 * HOUR),
        "capacity": 10,
        "points": 10,
    }
    body.update(fields)
    activity = await desk(harness).create(body, actor="王主任")
    return activity.number


async def sign_up(harness: Harness, openid: str, pick: str = "1") -> str:
    resident = harness.resident(openid)
    listing = await resident.say("报名")
    assert listing is not None and "近期志愿活动" in listing, listing
    details = await resident.say(pick)
    assert details is not None and "1. " in details, details
    done = await resident.say("1")
    assert done is not None
    return done


async def test_a_resident_lists_picks_confirms_and_is_signed_up(harness: Harness) -> None:
    await create(harness, title="缝纫课", points=5, description="自带针线")
    resident = harness.resident("o_li")
    listing = await resident.say("志愿者")
    assert listing is not None
    assert "1. 缝纫课" in listing and "清源社区南门" in listing
    assert "剩余10个名额｜5积分" in listing
    details = await resident.say("1")
    assert details is not None
    assert "《缝纫课》" in details and "说明：自带针线" in details
    assert "名额：剩余10个（共10个）" in details and "1. 确认报名" in details
    done = await resident.say("确认")
    assert done is not None and done.startswith("报名成功！") and "可得5积分" in done
    again = await resident.say("报名")
    assert again is not None and "剩余9个名额" in again
    assert (await desk(harness).get(1)).members == ("o_li",)


async def test_no_open_activity_is_said_plainly(harness: Harness) -> None:
    assert await harness.resident().say("报名") == NONE_OPEN


async def test_a_number_out_of_range_is_explained_and_the_list_stays(harness: Harness) -> None:
    await create(harness)
    resident = harness.resident()
    await resident.say("报名")
    assert await resident.say("7") == "没有第7项，请回复 1–1 之间的序号。"
    assert await resident.say("随便说说") == "请回复活动前面的序号，或回复“取消”退出。"
    details = await resident.say("1")
    assert details is not None and "《夜跑巡逻队》" in details


async def test_cancel_mid_flow_signs_up_no_one(harness: Harness) -> None:
    await create(harness)
    resident = harness.resident()
    await resident.say("报名")
    await resident.say("1")
    left = await resident.say("取消")
    assert left is not None and left.startswith("已退出当前操作。")
    # The next "1" is a menu choice, not a confirmation of the abandoned sign-up.
    after = await resident.say("1")
    assert after is not None and "近期志愿活动" in after
    assert (await desk(harness).get(1)).members == ()


async def test_a_full_activity_offers_the_waitlist_and_a_cancellation_promotes_the_first(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await create(harness, capacity=1)
    assert (await sign_up(harness, "o_first")).startswith("报名成功")
    resident = harness.resident("o_second")
    await resident.say("报名")
    details = await resident.say("1")
    assert details is not None and "名额：已报满（共1个）" in details
    assert "1. 加入候补" in details
    assert await resident.say("1") == (
        "《夜跑巡逻队》名额已满，已为您加入候补，排第1位。有人取消时会自动为您递补并通知您。"
    )
    third = await sign_up(harness, "o_third")
    assert "排第2位" in third

    first = harness.resident("o_first")
    mine = await first.say("我的报名")
    assert mine is not None and "1. 《夜跑巡逻队》" in mine and "已报名" in mine
    ask = await first.say("1")
    assert ask is not None and ask.startswith("确定取消《夜跑巡逻队》")
    assert await first.say("1") == "已取消《夜跑巡逻队》的报名。"

    told = fake_api.sent_texts("o_second")
    assert len(told) == 1 and told[0].startswith("好消息：您候补的志愿活动《夜跑巡逻队》有空位了")
    assert fake_api.sent_texts("o_third") == []
    activity = await desk(harness).get(1)
    assert activity.members == ("o_second",) and activity.waitlist == ("o_third",)
    promoted = await harness.resident("o_second").say("我的报名")
    assert promoted is not None and "已报名" in promoted
    waiting = await harness.resident("o_third").say("我的报名")
    assert waiting is not None and "候补第1位" in waiting
    assert await first.say("我的报名") == NOTHING_MINE


async def test_overlapping_activities_are_refused_with_the_clash_named(harness: Harness) -> None:
    await create(harness, title="夜跑巡逻队")
    await create(
        harness,
        title="公开课",
        starts_at=at(harness.clock, 2 * DAY + HOUR),
        ends_at=at(harness.clock, 2 * DAY + 3 * HOUR),
    )
    assert (await sign_up(harness, "o_li", "1")).startswith("报名成功")
    clash = await sign_up(harness, "o_li", "2")
    assert clash.startswith("时间冲突：您已报名《夜跑巡逻队》")
    assert (await desk(harness).get(2)).members == ()
    # Someone else is free at that time.
    assert (await sign_up(harness, "o_wang", "2")).startswith("报名成功")


async def test_signing_up_twice_says_so_and_keeps_one_place(harness: Harness) -> None:
    await create(harness)
    await sign_up(harness, "o_li")
    again = await sign_up(harness, "o_li")
    assert again.startswith("您已经报名了《夜跑巡逻队》")
    assert (await desk(harness).get(1)).members == ("o_li",)


async def test_a_cancelled_activity_cannot_be_signed_up_for_and_its_people_are_told(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await create(harness)
    await sign_up(harness, "o_li")
    late = harness.resident("o_wang")
    await late.say("报名")
    await late.say("1")
    await desk(harness).cancel(1, "暴雨预警", actor="王主任")
    told = fake_api.sent_texts("o_li")
    assert len(told) == 1 and told[0].startswith("抱歉，志愿活动《夜跑巡逻队》（")
    assert told[0].endswith("已取消。原因：暴雨预警")
    assert fake_api.sent_texts("o_wang") == []  # had not signed up yet
    refused = await late.say("1")
    assert refused is not None and refused.startswith("《夜跑巡逻队》已取消，不能报名。")
    assert await harness.resident("o_zhao").say("报名") == NONE_OPEN
    assert await harness.resident("o_li").say("我的报名") == NOTHING_MINE


async def test_a_signup_cannot_be_cancelled_once_the_activity_has_started(
    harness: Harness, clock: FakeClock
) -> None:
    await create(harness)
    await sign_up(harness, "o_li")
    resident = harness.resident("o_li")
    clock.advance(2 * DAY - 5 * 60)
    await resident.say("我的报名")
    await resident.say("1")
    clock.advance(6 * 60)  # it starts while the resident is deciding
    assert await resident.say("1") == "《夜跑巡逻队》已经开始，不能取消报名。"
    assert (await desk(harness).get(1)).members == ("o_li",)


async def test_the_same_confirmation_delivered_three_times_signs_up_once(
    harness: Harness,
) -> None:
    await create(harness, capacity=2)
    resident = harness.resident("o_li")
    await resident.say("报名")
    await resident.say("1")
    confirm = resident.xml("text", {"Content": "1"})
    replies = await asyncio.gather(*(resident.post(confirm) for _ in range(3)))
    answers = {reply_text(r) for r in replies}
    assert len(answers) == 1 and next(iter(answers), "").startswith("报名成功")  # type: ignore[union-attr]
    activity = await desk(harness).get(1)
    assert activity.members == ("o_li",) and activity.waitlist == ()


async def test_a_hundred_residents_at_once_fill_ten_places_and_wait_for_the_rest(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await create(harness, capacity=10)
    residents = [harness.resident(f"o_crowd_{i:03d}") for i in range(100)]
    for r in residents:
        await r.say("报名")
        await r.say("1")
    results = await asyncio.gather(*(r.post(r.xml("text", {"Content": "1"})) for r in residents))
    # A reply that missed WeChat's deadline goes out as a customer-service message instead.
    answers = [
        reply_text(result) or "".join(fake_api.sent_texts(r.openid))
        for result, r in zip(results, residents, strict=True)
    ]
    assert sum(a.startswith("报名成功") for a in answers) == 10
    assert sum("已为您加入候补" in a for a in answers) == 90
    activity = await desk(harness).get(1)
    assert len(activity.members) == 10 and len(set(activity.members)) == 10
    assert len(activity.waitlist) == 90 and not set(activity.members) & set(activity.waitlist)
    positions = sorted(int(a.split("排第", 1)[1].split("位", 1)[0]) for a in answers if "候补" in a)
    assert positions == list(range(1, 91))


async def test_scanning_the_code_checks_in_and_posts_the_points_once(
    harness: Harness, clock: FakeClock
) -> None:
    await create(harness, points=15)
    await sign_up(harness, "o_li")
    clock.advance(2 * DAY)
    resident = harness.resident("o_li")
    first = await resident.event("SCAN", EventKey="act:1", Ticket="t")
    assert first is not None and first.startswith("签到成功！《夜跑巡逻队》")
    assert "已为您记入15积分，现在共有15积分" in first
    for _ in range(2):
        again = await resident.event("SCAN", EventKey="act:1", Ticket="t")
        assert again is not None and again.startswith("您已经签到过《夜跑巡逻队》了")
        assert "现在共有15积分" in again
    standing = await resident.say("积分")
    assert standing is not None and standing.startswith("您的志愿积分：15分")
    assert "+15 志愿活动签到：夜跑巡逻队" in standing


async def test_a_new_follower_scanning_the_code_is_welcomed_and_checked_in(
    harness: Harness, clock: FakeClock
) -> None:
    await create(harness, points=10)
    clock.advance(2 * DAY - 30 * 60)  # half an hour early
    resident = harness.resident("o_newcomer")
    reply = await resident.event("subscribe", EventKey="qrscene_act:1", Ticket="t")
    assert reply is not None and reply.startswith("欢迎关注社区共治服务号！\n签到成功！")
    assert "已为您记入10积分" in reply
    activity = await desk(harness).get(1)
    assert activity.members == ("o_newcomer",) and "o_newcomer" in activity.checked_in


async def test_scanning_without_a_place_left_is_refused_and_posts_nothing(
    harness: Harness, clock: FakeClock
) -> None:
    await create(harness, capacity=1)
    await sign_up(harness, "o_li")
    clock.advance(2 * DAY)
    reply = await harness.resident("o_stranger").event("SCAN", EventKey="act:1", Ticket="t")
    assert reply is not None and reply.startswith("《夜跑巡逻队》名额已满，您没有报名，无法签到。")
    points = await harness.resident("o_stranger").say("积分")
    assert points is not None and points.startswith("您还没有志愿积分")


async def test_scans_outside_the_check_in_window_or_of_unknown_activities_are_explained(
    harness: Harness, clock: FakeClock
) -> None:
    await create(harness)
    await sign_up(harness, "o_li")
    resident = harness.resident("o_li")
    early = await resident.event("SCAN", EventKey="act:1", Ticket="t")
    assert early is not None and "还没到签到时间" in early
    unknown = await resident.event("SCAN", EventKey="act:99", Ticket="t")
    assert unknown is not None and unknown.startswith("这个签到码对应的活动不存在")
    clock.advance(2 * DAY + 4 * HOUR)
    late = await resident.event("SCAN", EventKey="act:1", Ticket="t")
    assert late is not None and late.startswith("《夜跑巡逻队》已经结束，不能再签到。")
    assert (await desk(harness).get(1)).checked_in == {}


async def test_reminders_reach_volunteers_once_and_the_waitlist_hears_it_did_not_get_in(
    harness: Harness, clock: FakeClock, fake_api: FakeWeChatAPI
) -> None:
    await create(harness, capacity=1, remind_before_hours=3)
    await sign_up(harness, "o_li")
    await sign_up(harness, "o_wang")
    services = harness.app[keys.SERVICES]
    clock.advance(2 * DAY - 4 * HOUR)
    await volunteer_upkeep(services)
    assert fake_api.sent_texts("o_li") == []  # not due yet: 3 h before
    clock.advance(2 * HOUR)
    await volunteer_upkeep(services)
    await volunteer_upkeep(services)
    await settled(harness)
    reminder = fake_api.sent_texts("o_li")
    assert len(reminder) == 1 and reminder[0].startswith("提醒：您报名的志愿活动《夜跑巡逻队》")
    sorry = fake_api.sent_texts("o_wang")
    assert len(sorry) == 1 and "您的候补未能递补" in sorry[0]


async def test_a_reminder_outside_the_48_hour_window_is_recorded_failed_with_its_code(
    harness: Harness,
    clock: FakeClock,
    fake_api: FakeWeChatAPI,
) -> None:
    await create(harness, remind_before_hours=3)
    await sign_up(harness, "o_li")
    clock.advance(2 * DAY - 2 * HOUR)
    fake_api.fail_next("custom_send", 45015)
    await volunteer_upkeep(harness.app[keys.SERVICES])
    await settled(harness)
    assert fake_api.sent_texts("o_li") == []
    status, failed = await harness.admin("GET", "/pushes/activity-reminder:1/deliveries")
    assert status == 200
    assert [(d["openid"], d["errcode"]) for d in failed["items"]] == [("o_li", 45015)]


async def test_a_finished_activity_is_closed_by_the_scheduler_and_stays_in_the_records(
    harness: Harness, clock: FakeClock
) -> None:
    await create(harness, points=10)
    await sign_up(harness, "o_li")
    clock.advance(2 * DAY)
    await harness.resident("o_li").event("SCAN", EventKey="act:1", Ticket="t")
    clock.advance(4 * HOUR)
    await volunteer_upkeep(harness.app[keys.SERVICES])
    activity = await desk(harness).get(1)
    assert activity.status == "done" and "o_li" in activity.checked_in
    scan = await harness.resident("o_wang").event("SCAN", EventKey="act:1", Ticket="t")
    assert scan is not None and scan.startswith("《夜跑巡逻队》已经结束，不能再签到。")
    assert [a.number for a in await desk(harness).all()] == [1]
    standing = await harness.resident("o_li").say("积分")
    assert standing is not None and standing.startswith("您的志愿积分：10分")


async def test_a_long_list_shows_fewer_activities_whole_rather_than_a_cut_reply(
    harness: Harness,
) -> None:
    for n in range(9):
        await create(
            harness,
            title=f"第{n + 1}期" + "社区环境整治与垃圾分类宣传志愿服务活动"[: 40 - 4],
            place="清源社区南门广场东侧便民服务中心二楼多功能活动室" + "旁" * 30,
            starts_at=at(harness.clock, DAY + n * 3 * HOUR),
            ends_at=at(harness.clock, DAY + n * 3 * HOUR + 2 * HOUR),
        )
    resident = harness.resident()
    listing = await resident.say("报名")
    assert listing is not None and len(listing.encode()) <= 2048
    assert listing.endswith("回复“取消”退出。") and "内容过长" not in listing
    shown = [line for line in listing.splitlines() if line[:2].rstrip(".").isdigit()]
    assert 1 <= len(shown) < 9
    # The last one shown can be picked; one past it is out of range.
    assert "《第" in (await resident.say(str(len(shown))) or "")
    await resident.say("2")
    await resident.say("报名")
    assert (await resident.say(str(len(shown) + 1))) == (
        f"没有第{len(shown) + 1}项，请回复 1–{len(shown)} 之间的序号。"
    )
