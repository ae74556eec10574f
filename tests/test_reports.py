"""报事 end to end: residents report, grid workers act, the clock escalates; on every backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot import keys
from bot.config import ReportsConfig
from bot.domain.reports import ReportDesk
from bot.simulator import SimulatedResident, reply_text
from bot.wechat.fake_api import FakeWeChatAPI
from schedules.jobs import report_upkeep
from storage.reports import Report, ReportRepo, Transition
from tests.conftest import FakeClock, Harness

# Two neighbouring grids of a Chengdu community (GeoJSON: [longitude, latitude]).
WEST = [
    [104.060, 30.670],
    [104.064, 30.670],
    [104.064, 30.674],
    [104.060, 30.674],
    [104.060, 30.670],
]
EAST = [
    [104.064, 30.670],
    [104.068, 30.670],
    [104.068, 30.674],
    [104.064, 30.674],
    [104.064, 30.670],
]
IN_WEST = (30.672, 104.062)
NEAR_IN_WEST = (30.6725, 104.0621)  # about 56 m away
IN_EAST = (30.672, 104.066)
OUTSIDE = (30.690, 104.080)
ADMIN = "o_admin_office"
HOUR = 3600.0


def desk(harness: Harness) -> ReportDesk:
    return harness.app[keys.SERVICES].reports


async def with_grids(
    harness: Harness, *, admins: tuple[str, ...] = (ADMIN,), **config: Any
) -> None:
    harness.config = replace(
        harness.config, reports=replace(ReportsConfig(), admin_openids=admins, **config)
    )
    await harness.restart()
    grids = desk(harness).grids
    await grids.put(
        "west",
        {
            "name": "一网格",
            "area": {"type": "Polygon", "coordinates": [WEST]},
            "workers": ["o_worker_w1", "o_worker_w2"],
            "leader": "o_leader_w",
        },
        actor="王主任",
    )
    await grids.put(
        "east",
        {
            "name": "二网格",
            "area": {"type": "Polygon", "coordinates": [EAST]},
            "workers": ["o_worker_e1"],
            "leader": "o_leader_e",
        },
        actor="王主任",
    )


async def settled(harness: Harness) -> None:
    """Alerts and photo fetches run in the background, right after the reply: let them finish."""
    assert await harness.app[keys.TASKS].wait_idle(5.0, besides=("scheduler-lease",))


async def report(
    resident: SimulatedResident,
    *,
    category: str = "2",
    text: str = "3栋门口下水道堵了",
    point: tuple[float, float] | None = IN_WEST,
    address: str = "",
    photo: str = "",
    same_as: str | None = None,
) -> str:
    """Walk the whole flow; returns the last reply."""
    assert "请选择问题类别" in (await resident.say("报事") or "")
    assert "请描述一下问题" in (await resident.say(category) or "")
    assert "照片" in (await resident.say(text) or "")
    if photo:
        reply = await resident.send("image", PicUrl=f"http://mmbiz.example/{photo}", MediaId=photo)
        assert reply is not None and reply.startswith("已收到照片")
    else:
        assert "位置" in (await resident.say("跳过") or "")
    if point is not None:
        lat, lng = point
        reply = await resident.send(
            "location", Location_X=lat, Location_Y=lng, Scale=16, Label="清源路12号"
        )
    else:
        reply = await resident.say(address)
    assert reply is not None
    if same_as is not None:
        assert reply.startswith("附近已经有人反映了类似的问题"), reply
        return await resident.say(same_as) or ""
    assert reply.startswith("请确认您的报事"), reply
    return await resident.say("1") or ""


async def test_a_report_is_filed_routed_to_its_grid_and_the_workers_alerted(
    harness: Harness, fake_api: FakeWeChatAPI, tmp_path: Path
) -> None:
    await with_grids(harness)
    fake_api.add_media("photo-1", b"\xff\xd8jpeg-bytes")
    resident = harness.resident("o_res_li")
    done = await report(resident, photo="photo-1")
    assert done.startswith("报事已提交，编号 1。已转给“一网格”网格员")
    await settled(harness)
    for worker in ("o_worker_w1", "o_worker_w2"):
        [alert] = fake_api.sent_texts(worker)
        assert alert.startswith(
            "【新报事】编号 1\n类别：排水\n内容：3栋门口下水道堵了\n地点：清源路12号"
        )
        assert "照片：1张" in alert and "接单 1" in alert
    assert fake_api.sent_texts("o_worker_e1") == []
    # The photo is kept: WeChat's copy expires after three days.
    saved = await desk(harness).get(1)
    assert saved.photos[0].media_id == "photo-1"
    assert Path(saved.photos[0].path).read_bytes() == b"\xff\xd8jpeg-bytes"


async def test_a_typed_address_or_a_point_outside_every_grid_goes_to_the_default_queue(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    typed = await report(harness.resident("o_res_a"), point=None, address="清源路12号3栋")
    assert typed.startswith("报事已提交，编号 1。已转给社区工作人员")
    outside = await report(harness.resident("o_res_b"), point=OUTSIDE)
    assert outside.startswith("报事已提交，编号 2。已转给社区工作人员")
    assert [(await desk(harness).get(n)).grid for n in (1, 2)] == ["", ""]
    await settled(harness)
    assert len(fake_api.sent_texts(ADMIN)) == 2
    # The admin sees them in 待办 and can act on them.
    todo = await harness.resident(ADMIN).say("待办")
    assert todo is not None and "编号1" in todo and "编号2" in todo
    assert (await harness.resident(ADMIN).say("接单 1") or "").startswith("已接单")


async def test_the_worker_accepts_resolves_and_the_reporter_hears_each_step_and_rates(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    resident = harness.resident("o_res_li")
    await report(resident)
    worker = harness.resident("o_worker_w1")
    assert await worker.say("接单 1") == "已接单：报事 1（排水）。办好后回复“办结 1 说明”。"
    assert fake_api.sent_texts("o_res_li") == ["您的报事（编号 1）已有网格员接单处理。"]
    assert await harness.resident("o_worker_w2").say("接单 1") == "报事 1 已由其他网格员接单"
    done = await worker.say("办结 1 已疏通下水道")
    assert done is not None and done.startswith("报事 1 已办结，已通知居民。")
    told = fake_api.sent_texts("o_res_li")[-1]
    assert told.startswith("您的报事（编号 1）已办结：已疏通下水道")
    assert await worker.send("image", PicUrl="http://x/after.jpg", MediaId="after-1") == (
        "照片已附到报事 1。"
    )
    mine = await resident.say("我的报事")
    assert mine is not None and "1. 编号1 排水｜已办结" in mine
    detail = await resident.say("1")
    assert detail is not None and "已接单" in detail and "已办结：已疏通下水道" in detail
    assert "回复 1–5 给处理结果打分" in detail
    assert await resident.say("5") == "谢谢您的评价（5星）！"
    saved = await desk(harness).get(1)
    assert saved.rating == 5 and saved.state == "resolved"
    assert [t.action for t in saved.history] == ["filed", "accepted", "resolved", "photo", "rated"]
    assert all(t.by for t in saved.history)


async def test_bad_worker_commands_are_explained(harness: Harness) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_li"))
    east = harness.resident("o_worker_e1")
    assert await east.say("接单 1") == "报事 1 不属于您负责的网格，不能处理"
    west = harness.resident("o_worker_w1")
    assert await west.say("接单 99") == "没有编号为 99 的报事"
    assert (await west.say("接单")) == "格式：接单 编号，例如“接单 12”。"
    assert (await west.say("办结 1")) == "格式：办结 编号 说明，例如“办结 12 已疏通下水道”。"
    resident = harness.resident("o_res_li")
    assert (await resident.say("接单 1") or "").startswith("这是网格员使用的指令")
    assert (await resident.say("待办") or "").startswith("这是网格员使用的指令")
    assert (await desk(harness).get(1)).state == "reported"


async def test_a_retried_acceptance_applies_once(harness: Harness, fake_api: FakeWeChatAPI) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_li"))
    worker = harness.resident("o_worker_w1")
    command = worker.xml("text", {"Content": "接单 1"})
    replies = await asyncio.gather(*(worker.post(command) for _ in range(3)))
    assert {reply_text(r) for r in replies} == {"已接单：报事 1（排水）。办好后回复“办结 1 说明”。"}
    again = await worker.say("接单 1")  # a double tap, a new message
    assert again is not None and again.startswith("已接单")
    history = (await desk(harness).get(1)).history
    assert [t.action for t in history] == ["filed", "accepted"]
    assert fake_api.sent_texts("o_res_li") == ["您的报事（编号 1）已有网格员接单处理。"]


async def test_nearby_open_reports_are_offered_and_choosing_one_follows_it(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_first"), text="下水道堵了，污水漫出来")
    second = harness.resident("o_res_second")
    followed = await report(second, point=NEAR_IN_WEST, same_as="1")
    assert followed.startswith("好的，您已关注报事（编号 1），现在共有2人反映这个问题。")
    shown = await desk(harness).get(1)
    assert shown.followers == ("o_res_second",)
    # Only one report exists, and the follower hears of progress too.
    assert (await report(harness.resident("o_res_third"), point=IN_EAST)).startswith(
        "报事已提交，编号 2"
    )
    await harness.resident("o_worker_w1").say("接单 1")
    assert fake_api.sent_texts("o_res_second") == ["您的报事（编号 1）已有网格员接单处理。"]
    mine = await second.say("我的报事")
    assert mine is not None and "编号1 排水｜处理中（关注）" in mine


async def test_choosing_none_of_the_nearby_reports_files_a_new_one(harness: Harness) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_first"))
    listing_then_new = await report(
        harness.resident("o_res_second"), point=NEAR_IN_WEST, same_as="0"
    )
    assert listing_then_new.startswith("请确认您的报事")
    assert (await harness.resident("o_res_second").say("1") or "").startswith("报事已提交，编号 2")


async def test_a_report_of_another_category_nearby_is_not_offered(harness: Harness) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_first"), category="1")
    assert (
        await report(harness.resident("o_res_second"), category="2", point=NEAR_IN_WEST)
    ).startswith("报事已提交，编号 2")


async def test_rejecting_as_a_duplicate_merges_and_transfer_alerts_the_other_grid(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_a"), category="1")
    await report(harness.resident("o_res_b"), category="2", point=NEAR_IN_WEST)
    worker = harness.resident("o_worker_w1")
    assert await worker.say("退回 2 重复 1") == "报事 2 已退回，已合并到报事 1，已通知居民。"
    assert fake_api.sent_texts("o_res_b")[-1].startswith("您的报事（编号 2）与报事 1 是同一件事")
    assert "o_res_b" in (await desk(harness).get(1)).followers
    assert await worker.say("转派 1 二网格") == "报事 1 已转派到“二网格”，已通知该网格的网格员。"
    await settled(harness)
    [alert] = fake_api.sent_texts("o_worker_e1")
    assert alert.startswith("【转派来的报事】编号 1")
    assert fake_api.sent_texts("o_res_a")[-1] == "您的报事（编号 1）已转给“二网格”处理。"
    assert await worker.say("接单 1") == "报事 1 不属于您负责的网格，不能处理"
    assert (await harness.resident("o_worker_e1").say("接单 1") or "").startswith("已接单")


async def test_overdue_reports_escalate_once_per_level(
    harness: Harness, fake_api: FakeWeChatAPI, clock: FakeClock
) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_li"))
    services, photos = harness.app[keys.SERVICES], harness.app[keys.PHOTOS]
    clock.advance(2 * HOUR - 60)
    await report_upkeep(services, photos)
    assert fake_api.sent_texts("o_leader_w") == []
    clock.advance(120)
    for _ in range(3):
        await report_upkeep(services, photos)
    [to_leader] = fake_api.sent_texts("o_leader_w")
    assert to_leader.startswith("【报事升级】编号 1（排水）超时未接单")
    assert fake_api.sent_texts(ADMIN) == []
    clock.advance(2 * HOUR)
    await report_upkeep(services, photos)
    await report_upkeep(services, photos)
    [to_admin] = fake_api.sent_texts(ADMIN)
    assert to_admin.startswith("【报事升级】编号 1（排水）超时未接单")
    notes = [t.note for t in (await desk(harness).get(1)).history if t.action == "escalated"]
    assert notes == ["超时未接单，已提醒网格长", "超时未接单，已提醒社区管理员"]


async def test_an_accepted_report_unresolved_after_three_working_days_escalates(
    harness: Harness, fake_api: FakeWeChatAPI, clock: FakeClock
) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_li"))
    await harness.resident("o_worker_w1").say("接单 1")
    services, photos = harness.app[keys.SERVICES], harness.app[keys.PHOTOS]
    clock.advance(24 * HOUR)
    await report_upkeep(services, photos)
    assert fake_api.sent_texts("o_leader_w") == []
    clock.advance(6 * 24 * HOUR)  # past three working days, whatever the weekday
    await report_upkeep(services, photos)
    leader = fake_api.sent_texts("o_leader_w")
    assert any(t.startswith("【报事升级】编号 1（排水）超时未办结") for t in leader)


async def test_an_alert_that_fails_is_retried_with_backoff_until_delivered(
    harness: Harness, fake_api: FakeWeChatAPI, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await with_grids(harness)
    fake_api.fail_next("custom_send", -1, times=2)
    await report(harness.resident("o_res_li"))
    await settled(harness)
    delivered = fake_api.sent_texts("o_worker_w1") + fake_api.sent_texts("o_worker_w2")
    assert delivered == []  # both first attempts failed
    assert any("not delivered" in r.getMessage() for r in caplog.records)
    services, photos = harness.app[keys.SERVICES], harness.app[keys.PHOTOS]
    clock.advance(10 * 60)
    await report_upkeep(services, photos)
    assert len(fake_api.sent_texts("o_worker_w1")) == 1
    assert len(fake_api.sent_texts("o_worker_w2")) == 1


async def test_reopen_once_within_seven_days(
    harness: Harness, fake_api: FakeWeChatAPI, clock: FakeClock
) -> None:
    await with_grids(harness)
    resident = harness.resident("o_res_li")
    await report(resident)
    worker = harness.resident("o_worker_w1")
    await worker.say("办结 1 已处理")
    await resident.say("我的报事")
    await resident.say("1")
    assert await resident.say("重新处理") == "报事（编号 1）已重新打开，网格员会再次处理。"
    assert (await desk(harness).get(1)).state == "reported"
    await settled(harness)
    assert any(t.startswith("【报事被重新打开】编号 1") for t in fake_api.sent_texts("o_worker_w1"))
    await worker.say("办结 1 再次处理")
    await resident.say("我的报事")
    detail = await resident.say("1")
    assert detail is not None and "重新处理" not in detail.split("\n")[-1]
    clock.advance(8 * 24 * HOUR)
    with pytest.raises(Exception, match="重新处理过一次"):
        await desk(harness).reopen("o_res_li", 1, "还是不行")


async def test_cancel_mid_report_files_nothing(harness: Harness) -> None:
    await with_grids(harness)
    resident = harness.resident("o_res_li")
    await resident.say("报事")
    await resident.say("2")
    await resident.say("下水道堵了")
    left = await resident.say("取消")
    assert left is not None and left.startswith("已退出当前操作。")
    assert await resident.say("我的报事") == "您还没有报事。发现问题时，回复“报事”就能告诉网格员。"


async def test_a_voice_description_and_wrong_inputs_at_each_step(harness: Harness) -> None:
    await with_grids(harness)
    resident = harness.resident("o_res_li")
    await resident.say("报事")
    assert await resident.say("9") == "没有第9项，请回复 1–7 之间的序号。"
    await resident.say("1")
    spoken = await resident.send(
        "voice", MediaId="v1", Format="amr", Recognition="楼道里堆满了杂物。"
    )
    assert spoken is not None and "照片" in spoken
    assert await resident.say("好的") == "请发送一张照片，或回复“跳过”。"
    await resident.say("跳过")
    assert (
        await resident.send("image", PicUrl="http://x", MediaId="m")
        == "请发送位置，或直接输入地址。"
    )
    await resident.say("清源路12号3栋楼道")
    confirm = await resident.say("嗯")
    assert confirm == "请回复 1 确认提交，或回复 2 不提交。"
    assert (await resident.say("1") or "").startswith("报事已提交，编号 1")
    assert (await desk(harness).get(1)).text == "楼道里堆满了杂物"


async def test_a_grid_with_a_wecom_robot_also_alerts_its_group(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    robot = f"{harness.config.wechat.api_base_url}/cgi-bin/webhook/send?key=ROBOT-WEST"
    area = {"type": "Polygon", "coordinates": [WEST]}
    await desk(harness).grids.put(
        "west",
        {"name": "一网格", "area": area, "workers": ["o_worker_w1"], "wecom_url": robot},
        actor="王主任",
    )
    await report(harness.resident("o_res_li"))
    await settled(harness)
    [message] = fake_api.robot_messages("ROBOT-WEST")
    assert message.msgtype == "text" and message.content.startswith("【新报事】编号 1")
    assert len(fake_api.sent_texts("o_worker_w1")) == 1


async def test_a_point_in_a_grids_hole_is_not_routed_to_it(harness: Harness) -> None:
    await with_grids(harness)
    hole = [
        [104.0615, 30.6715],
        [104.0615, 30.6725],
        [104.0625, 30.6725],
        [104.0625, 30.6715],
        [104.0615, 30.6715],
    ]
    area = {"type": "Polygon", "coordinates": [WEST, hole]}
    await desk(harness).grids.put(
        "west", {"name": "一网格", "area": area, "workers": ["o_worker_w1"]}, actor="王主任"
    )
    in_hole = await report(harness.resident("o_res_a"), point=IN_WEST)  # the hole's centre
    assert in_hole.startswith("报事已提交，编号 1。已转给社区工作人员")
    in_ring = await report(harness.resident("o_res_b"), point=(30.6705, 104.0605), category="1")
    assert in_ring.startswith("报事已提交，编号 2。已转给“一网格”网格员")


async def test_a_report_filed_just_before_a_crash_still_alerts_its_grid(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    # As if the process died after storing the report and before queueing its alerts.
    lat, lng = IN_WEST
    crashed = Report(
        number=7,
        reporter="o_res_li",
        category="排水",
        text="井盖松了",
        created_at=harness.clock.now,
        grid="west",
        lat=lat,
        lng=lng,
        history=(Transition(harness.clock.now, "o_res_li", "filed", "reported"),),
    )
    await ReportRepo(harness.app[keys.STORE]).insert(crashed)
    services, photos = harness.app[keys.SERVICES], harness.app[keys.PHOTOS]
    await report_upkeep(services, photos)
    await report_upkeep(services, photos)
    await settled(harness)
    for worker in ("o_worker_w1", "o_worker_w2"):
        [alert] = fake_api.sent_texts(worker)
        assert alert.startswith("【新报事】编号 7")


async def test_a_retried_staff_state_change_is_audited_once(harness: Harness) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_li"))
    body = {"state": "resolved", "note": "已处理"}
    for _ in range(2):
        status, _ = await harness.admin("POST", "/reports/1/state", body=body, operator="李社工")
        assert status == 200
    _, audit = await harness.admin("GET", "/audit")
    assert [e["action"] for e in audit["items"] if e["target"] == "report/1"] == ["report.resolved"]


async def test_a_staff_reopen_tells_the_residents_and_clears_the_old_rating(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    resident = harness.resident("o_res_li")
    await report(resident)
    await harness.resident("o_worker_w1").say("办结 1 已处理")
    await desk(harness).rate("o_res_li", 1, 2)
    reopened = await desk(harness).set_state("李社工", 1, "reported", "居民电话反映仍未修好")
    assert reopened.rating is None and reopened.state == "reported"
    assert (
        fake_api.sent_texts("o_res_li")[-1]
        == "您的报事（编号 1）已重新打开处理：居民电话反映仍未修好"
    )
    await harness.resident("o_worker_w1").say("办结 1 换了新管道")
    assert (await desk(harness).rate("o_res_li", 1, 5)).rating == 5


async def test_rejecting_as_a_duplicate_of_a_closed_report_is_refused_not_falsely_merged(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await with_grids(harness)
    await report(harness.resident("o_res_a"), category="1")
    worker = harness.resident("o_worker_w1")
    await worker.say("办结 1 已清理")
    await report(harness.resident("o_res_b"), category="2")
    refused = await worker.say("退回 2 重复 1")
    assert refused == "报事 1 的状态是“已办结”，不能合并到它；问题仍在的话请直接处理本报事"
    assert (await desk(harness).get(2)).state == "reported"
    # And the refusals name the state once ("已办结", never "已经已办结").
    assert await worker.say("接单 1") == "报事 1 的状态是“已办结”，不能接单"


async def test_a_nearby_report_across_a_map_cell_boundary_is_still_offered(
    harness: Harness,
) -> None:
    """Reports are looked up by map cell (0.002°): a neighbour 22 m away in the next cell counts."""
    await with_grids(harness)
    await report(harness.resident("o_res_first"), point=(30.67190, 104.06190))
    followed = await report(
        harness.resident("o_res_second"), point=(30.67210, 104.06210), same_as="1"
    )
    assert followed.startswith("好的，您已关注报事（编号 1）")
