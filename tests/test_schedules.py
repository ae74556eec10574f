"""Schedules through the real app with a controllable clock, on every backend.

The monthly assembly call exists out of the box and fires on the 1st at 09:00
Asia/Shanghai; an edit takes effect without a restart; a run missed while the
server was down runs once when it is back; pause works; "run now" twice pushes once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from bot import keys
from bot.wechat.fake_api import FakeWeChatAPI
from schedules.jobs import vote_results
from tests.conftest import Harness
from tests.test_admin_assembly import _post_csv

SHANGHAI = ZoneInfo("Asia/Shanghai")
REPRESENTATIVES = ("o_rep_101", "o_rep_102", "o_rep_201")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


async def households(harness: Harness) -> None:
    rows = "".join(
        f"{b},1,{r},{o}\n"
        for (b, r), o in zip(((1, 101), (1, 102), (2, 201)), REPRESENTATIVES, strict=True)
    )
    status, report = await _post_csv(harness, rows.encode())
    assert status == 200 and report["created"] == 3, report


async def settled(harness: Harness) -> None:
    assert await harness.app[keys.TASKS].wait_idle(10.0, besides=("scheduler-lease",))


def calls_to_each(fake_api: FakeWeChatAPI) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in fake_api.calls_to("template_send"):
        to = call.body["touser"]
        counts[to] = counts.get(to, 0) + 1
    return counts


async def run_due(harness: Harness) -> int:
    results = await harness.app[keys.SCHEDULES].run_due()
    await settled(harness)
    return len(results)


async def leading(harness: Harness) -> None:
    """Wait until this server holds the scheduler lease and has installed the cron jobs."""
    for _ in range(100):
        if harness.app[keys.CRON_JOBS].next_run("assembly-call") is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the scheduler did not start")


async def start_at(harness: Harness, when: str) -> None:
    harness.clock.now = at(when)
    await harness.restart()


async def test_the_monthly_call_exists_and_fires_on_the_first_at_nine(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await start_at(harness, "2026-11-21T12:00")
    await households(harness)
    status, listed = await harness.admin("GET", "/schedules")
    assert status == 200
    call = next(s for s in listed["items"] if s["id"] == "assembly-call")
    assert (call["cron"], call["enabled"], call["audience"]) == ("0 9 1 * *", True, "all")
    assert call["next_runs"][:2] == ["2026-12-01T09:00:00+08:00", "2027-01-01T09:00:00+08:00"]
    await harness.admin("PATCH", "/schedules/assembly-call", body={"template_id": "TPL-CALL"})

    harness.clock.now = at("2026-12-01T08:59")
    assert await run_due(harness) == 0
    assert calls_to_each(fake_api) == {}
    harness.clock.now = at("2026-12-01T09:00") + 20
    assert await run_due(harness) == 1
    assert await run_due(harness) == 0  # the same fire runs once
    assert calls_to_each(fake_api) == dict.fromkeys(REPRESENTATIVES, 1)
    [first] = fake_api.calls_to("template_send")[:1]
    assert first.body["template_id"] == "TPL-CALL"

    status, detail = await harness.admin("GET", "/schedules/assembly-call")
    assert status == 200
    [run] = detail["runs"]
    assert (run["trigger"], run["campaign"], run["claimed"]) == (
        "cron",
        "assembly-call:2026-12",
        True,
    )
    assert run["deliveries"]["sent"] == 3 and run["deliveries"]["total"] == 3


async def test_apscheduler_holds_the_call_at_nine_shanghai_and_an_edit_moves_it_at_once(
    harness: Harness,
) -> None:
    await leading(harness)
    cron = harness.app[keys.CRON_JOBS]
    first = cron.next_run("assembly-call")
    assert first is not None
    local = datetime.fromtimestamp(first, SHANGHAI)
    assert (local.day, local.hour, local.minute) == (1, 9, 0)

    status, preview = await harness.admin(
        "GET", "/schedules/assembly-call/preview", cron="30 8 * * 1"
    )
    assert status == 200 and len(preview["next_runs"]) == 5
    assert all(datetime.fromisoformat(t).weekday() == 0 for t in preview["next_runs"])
    status, edited = await harness.admin(
        "PATCH", "/schedules/assembly-call", body={"cron": "30 8 * * 1"}, operator="李社工"
    )
    assert status == 200 and edited["next_runs"] == preview["next_runs"]
    moved = cron.next_run("assembly-call")
    assert moved is not None
    local = datetime.fromtimestamp(moved, SHANGHAI)
    assert (local.weekday(), local.hour, local.minute) == (0, 8, 30)
    _, audit = await harness.admin("GET", "/audit")
    assert ("李社工", "schedule.edit") in [(e["actor"], e["action"]) for e in audit["items"]]

    status, error = await harness.admin(
        "PATCH", "/schedules/assembly-call", body={"cron": "61 8 * * *"}
    )
    assert status == 400 and "cron 表达式无效" in error["error"]


async def test_a_run_missed_during_downtime_fires_once_when_the_server_is_back(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await start_at(harness, "2026-11-30T20:00")
    await households(harness)
    await harness.admin("PATCH", "/schedules/assembly-call", body={"template_id": "TPL-CALL"})
    await harness.stop()
    harness.clock.now = at("2026-12-01T11:00")  # down over 09:00, back within the 6 h grace
    await harness.start()
    await leading(harness)
    await settled(harness)
    assert calls_to_each(fake_api) == dict.fromkeys(REPRESENTATIVES, 1)
    _, detail = await harness.admin("GET", "/schedules/assembly-call")
    assert [r["trigger"] for r in detail["runs"]] == ["catch-up"]
    await harness.restart()  # and once only
    await leading(harness)
    await settled(harness)
    assert await run_due(harness) == 0
    assert calls_to_each(fake_api) == dict.fromkeys(REPRESENTATIVES, 1)


async def test_a_run_missed_for_longer_than_the_grace_period_is_not_sent_late(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await start_at(harness, "2026-11-30T20:00")
    await households(harness)
    await harness.stop()
    harness.clock.now = at("2026-12-01T16:00")  # seven hours late
    await harness.start()
    await leading(harness)
    await settled(harness)
    assert calls_to_each(fake_api) == {}


async def test_pause_stops_runs_and_resume_does_not_send_what_came_due_meanwhile(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await start_at(harness, "2026-11-30T20:00")
    await households(harness)
    await leading(harness)
    status, paused = await harness.admin(
        "POST", "/schedules/assembly-call/pause", operator="李社工"
    )
    assert status == 200 and paused["enabled"] is False and paused["next_runs"] == []
    assert harness.app[keys.CRON_JOBS].next_run("assembly-call") is None
    harness.clock.now = at("2026-12-01T09:01")
    assert await run_due(harness) == 0
    status, resumed = await harness.admin(
        "POST", "/schedules/assembly-call/resume", operator="李社工"
    )
    assert status == 200 and resumed["enabled"] is True
    assert harness.app[keys.CRON_JOBS].next_run("assembly-call") is not None
    assert await run_due(harness) == 0
    assert calls_to_each(fake_api) == {}
    _, audit = await harness.admin("GET", "/audit")
    actions = [e["action"] for e in audit["items"]]
    assert "schedule.pause" in actions and "schedule.resume" in actions


async def test_run_now_twice_pushes_the_period_once(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await households(harness)
    await harness.admin("PATCH", "/schedules/assembly-call", body={"template_id": "TPL-CALL"})
    status, first = await harness.admin("POST", "/schedules/assembly-call/run", operator="李社工")
    assert status == 202 and first["claimed"] is True and first["recipients"] == 3
    status, second = await harness.admin("POST", "/schedules/assembly-call/run", operator="李社工")
    assert status == 200 and second["claimed"] is False
    await settled(harness)
    assert calls_to_each(fake_api) == dict.fromkeys(REPRESENTATIVES, 1)
    status, runs = await harness.admin("GET", "/schedules/assembly-call/runs")
    assert status == 200 and sorted(r["claimed"] for r in runs["items"]) == [False, True]


async def test_staff_create_a_schedule_and_bad_input_is_refused(harness: Harness) -> None:
    body = {
        "id": "sanitation-day",
        "name": "卫生日提醒",
        "cron": "0 8 * * 6",
        "template": "本周六是社区卫生日，{month}的垃圾分类检查8点开始。",
        "audience": "building:1",
        "channel": "custom",
    }
    status, created = await harness.admin("POST", "/schedules", body=body, operator="李社工")
    assert status == 201 and created["id"] == "sanitation-day" and len(created["next_runs"]) == 5
    assert (await harness.admin("POST", "/schedules", body=body))[0] == 409
    for bad, message in [
        ({**body, "id": "卫生日"}, "编号只能是"),
        ({**body, "id": "x1", "audience": "everyone"}, "audience 必须是"),
        ({**body, "id": "x2", "channel": "sms"}, "channel 必须是"),
        ({**body, "id": "x3", "template": "{who}"}, "template 只能使用"),
    ]:
        status, error = await harness.admin("POST", "/schedules", body=bad)
        assert status == 400 and message in error["error"], error
    assert (await harness.admin("GET", "/schedules/nope"))[0] == 404
    assert (await harness.admin("GET", "/schedules", token=None))[0] == 401


async def test_a_push_shows_its_progress_and_its_failed_recipients(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await households(harness)
    await harness.admin("PATCH", "/schedules/assembly-call", body={"template_id": "TPL-CALL"})
    fake_api.fail_next("template_send", 43004)  # the first recipient has unfollowed
    status, run = await harness.admin("POST", "/schedules/assembly-call/run")
    assert status == 202
    await settled(harness)
    status, progress = await harness.admin("GET", f"/pushes/{run['campaign']}")
    assert status == 200 and (progress["sent"], progress["failed"], progress["pending"]) == (
        2,
        1,
        0,
    )
    status, failed = await harness.admin("GET", f"/pushes/{run['campaign']}/deliveries")
    assert status == 200
    [only] = failed["items"]
    assert only["errcode"] == 43004 and only["openid"] in REPRESENTATIVES
    assert (await harness.admin("GET", "/pushes/nothing:2026-12"))[0] == 404


async def test_a_closed_vote_pushes_its_results_to_every_household_once(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await households(harness)
    closes = datetime.fromtimestamp(harness.clock.now + 3600, SHANGHAI).strftime("%Y-%m-%dT%H:%M")
    body = {
        "title": "最美居民户",
        "options": ["3栋2单元", "5栋1单元"],
        "closes_at": closes,
        "publicity_days": 5,
    }
    status, _ = await harness.admin("POST", "/votes", body=body)
    assert status == 201
    services, push = harness.app[keys.SERVICES], harness.app[keys.PUSH]
    assert await vote_results(services, push) == 0  # still open
    harness.clock.advance(2 * 3600)
    assert await vote_results(services, push) == 1
    assert await vote_results(services, push) == 0  # pushed once
    await settled(harness)
    for representative in REPRESENTATIVES:
        [text] = fake_api.sent_texts(representative)
        assert text.startswith("【投票结果】最美居民户")
