"""The push engine on every backend, against the fake WeChat API over real HTTP.

Each push must reach each recipient exactly once: claimed once per period, each
delivery claimed under a lease before it is sent, WeChat's busy and rate answers
sat out, lost answers recorded as unknown (never resent without staff), mass
sends batched with a stable clientmsgid and counted against the monthly limit.
Crash tests kill real engine processes (``tests/push_worker.py``) with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio

from bot import keys
from bot.backends import build_coordinator, build_store
from bot.config import Config, PushConfig
from bot.coordination.base import Coordinator
from bot.domain.errors import Invalid, NotFound
from bot.domain.push import MASS_NEEDS_TWO, MONTHLY_LIMIT, PushEngine, batch_size, clientmsgid
from bot.wechat.api_errors import MassAlreadySent
from bot.wechat.client import WeChatClient
from bot.wechat.fake_api import FakeWeChatAPI
from schedules import jobs
from storage.contract import Store
from storage.postgres_store import PostgresStore
from storage.push import (
    CLAIMED,
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    SENDING,
    SENT,
    UNKNOWN,
    Delivery,
    PushRepo,
    delivery_key,
)
from storage.repos import AuditRepo
from storage.schema import SCHEMA
from tests.conftest import APP_ID, APP_SECRET, Harness, backend_settings, make_config
from tests.services import PG_DSN, pg_namespace

ROOT = Path(__file__).resolve().parents[1]

# Small waits so the tests take tenths of seconds, not the production minutes.
FAST = PushConfig(
    rate_per_second=1000,
    mass_batch=10_000,
    max_attempts=8,
    backoff_seconds=0.02,
    backoff_max_seconds=0.2,
    lease_seconds=2.0,
    concurrency=4,
)
BACKENDS = ["tinydb", "postgres", "postgres+redis"]


def openids(n: int, prefix: str = "o_push_") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


class Rig:
    """A store, a coordinator and a WeChat client on the fake: what the app gives the engine."""

    def __init__(
        self, config: Config, store: Store, coordinator: Coordinator, fake: FakeWeChatAPI
    ) -> None:
        self.config = config
        self.store = store
        self.coordinator = coordinator
        self.fake = fake
        self.repo = PushRepo(store)
        self.audit = AuditRepo(store)
        self.stack = AsyncExitStack()
        self.session: aiohttp.ClientSession | None = None

    async def client(self, timeout: float = 2.0) -> WeChatClient:
        if self.session is None:
            self.session = await self.stack.enter_async_context(aiohttp.ClientSession())
        return WeChatClient(
            self.session,
            app_id=APP_ID,
            app_secret=APP_SECRET,
            base_url=self.config.wechat.api_base_url,
            timeout=timeout,
            tokens=self.coordinator.tokens,
        )

    async def engine(
        self,
        *,
        store: Store | None = None,
        timeout: float = 2.0,
        spawn: Callable[[Awaitable[object], str], None] | None = None,
        clock: Callable[[], float] = time.time,
        **settings: Any,
    ) -> PushEngine:
        on = store or self.store
        return PushEngine(
            PushRepo(on),
            await self.client(timeout),
            self.coordinator.limiter,
            AuditRepo(on),
            replace(FAST, **settings),
            clock=clock,
            spawn=spawn,
        )

    async def another_store(self) -> Store:
        """A second store on the same data: another process's view (PostgreSQL only)."""
        store = build_store(self.config)
        await store.open()
        self.stack.push_async_callback(store.close)
        return store


@asynccontextmanager
async def rigged(backend: str, tmp_path: Path, fake: FakeWeChatAPI, url: str) -> AsyncIterator[Rig]:
    async with backend_settings(backend, tmp_path / "data") as (storage, redis):
        config = make_config(tmp_path / "data", url, aes=False, storage=storage, redis=redis)
        store = build_store(config)
        await store.open()
        coordinator = build_coordinator(config)
        await coordinator.open()
        rig = Rig(config, store, coordinator, fake)
        try:
            yield rig
        finally:
            await rig.stack.aclose()
            await coordinator.close()
            await store.close()


@pytest_asyncio.fixture(params=BACKENDS)
async def rig(
    request: pytest.FixtureRequest, tmp_path: Path, running_fake: tuple[FakeWeChatAPI, str]
) -> AsyncIterator[Rig]:
    """Every store, and both ways of sharing rate limits and the token (PostgreSQL, Redis)."""
    async with rigged(request.param, tmp_path, *running_fake) as made:
        yield made


@pytest_asyncio.fixture(params=["tinydb", "postgres"])
async def store_rig(
    request: pytest.FixtureRequest, tmp_path: Path, running_fake: tuple[FakeWeChatAPI, str]
) -> AsyncIterator[Rig]:
    """Every store (for the tests whose cost is the store's writes)."""
    async with rigged(request.param, tmp_path, *running_fake) as made:
        yield made


def received(fake: FakeWeChatAPI, api: str = "template_send", *, skip: int = 0) -> Counter[str]:
    """How many messages each openid was sent by the calls WeChat accepted (after ``skip``)."""
    return Counter(str(call.body["touser"]) for call in fake.calls_to(api)[skip:])


async def states(repo: PushRepo, key: str, people: list[str]) -> dict[str, Delivery]:
    found = {}
    for openid in people:
        delivery = await repo.delivery(delivery_key(key, openid))
        assert delivery is not None
        found[openid] = delivery
    return found


# --- claiming and sending ---------------------------------------------------------------


async def test_a_push_is_claimed_once_and_each_recipient_gets_it_once(rig: Rig) -> None:
    engine = await rig.engine()
    people = openids(30)
    started = await engine.start(
        "assembly-call",
        "2026-12",
        channel="template",
        text="12月坝坝会\n12月5日 19:00 社区广场",
        recipients=[*people, people[0], ""],  # a repeat and a blank are dropped
        template_id="TPL_ASSEMBLY",
        by="scheduler",
        audience="all households",
    )
    assert started is not None and started.key == "assembly-call:2026-12"
    assert started.total == 30 and started.audience == "all households"
    progress = await engine.progress("assembly-call:2026-12")
    assert (progress.state, progress.sent, progress.pending, progress.failed) == (DONE, 30, 0, 0)
    assert received(rig.fake) == Counter(dict.fromkeys(people, 1))
    body = rig.fake.calls_to("template_send")[0].body
    assert body["template_id"] == "TPL_ASSEMBLY"
    assert body["data"]["first"] == {"value": "12月坝坝会"}
    # A second scheduler, a restart, "run now" twice: claimed before, nothing sent.
    for _ in range(2):
        again = await engine.start(
            "assembly-call",
            "2026-12",
            channel="template",
            text="12月坝坝会",
            recipients=people,
            template_id="TPL_ASSEMBLY",
            by="admin",
        )
        assert again is None
    other = await (await rig.engine()).start(
        "assembly-call",
        "2026-12",
        channel="mass",
        text="x",
        recipients=people,
        by="another process",
    )
    assert other is None
    assert len(rig.fake.calls_to("template_send")) == 30
    delivery = await rig.repo.delivery(delivery_key("assembly-call:2026-12", people[3]))
    assert delivery is not None and delivery.state == SENT and delivery.msgid is not None
    assert delivery.attempts == 1 and delivery.sent_at is not None
    campaign = await engine.campaign("assembly-call:2026-12")
    assert campaign is not None and campaign.counts == {SENT: 30, FAILED: 0, UNKNOWN: 0}


async def test_busy_and_rate_answers_pause_the_push_then_everyone_gets_it_once(rig: Rig) -> None:
    rig.fake.fail_next("template_send", 45009, times=6, errmsg="api freq out of limit")
    rig.fake.fail_next("template_send", -1, times=4)
    engine = await rig.engine()
    people = openids(20)
    await engine.start(
        "reminder",
        "2026-12-04",
        channel="template",
        text="明天 19:00 坝坝会",
        recipients=people,
        template_id="TPL",
        by="scheduler",
    )
    progress = await engine.progress("reminder:2026-12-04")
    assert (progress.done, progress.sent, progress.failed, progress.unknown) == (True, 20, 0, 0)
    calls = rig.fake.calls_to("template_send")
    assert len(calls) == 30
    # The 10 refused calls were answered first; after them everyone got it exactly once.
    assert received(rig.fake, skip=10) == Counter(dict.fromkeys(people, 1))
    # Nothing went out until the pause after the first refusal had passed.
    first_success = calls[10].at
    assert first_success - calls[0].at >= FAST.backoff_seconds
    campaign = await engine.campaign("reminder:2026-12-04")
    assert campaign is not None and campaign.paused_until > 0
    assert campaign.busy_streak == 0  # reset by the sends that went through
    retried = [d for d in (await states(rig.repo, campaign.key, people)).values() if d.attempts > 1]
    assert retried and all(
        (d.state == SENT and d.errcode == -1) or d.errcode is None for d in retried
    )


async def test_busy_for_longer_than_the_attempts_gives_up_on_those_deliveries(rig: Rig) -> None:
    rig.fake.fail_next("template_send", -1, times=50)
    engine = await rig.engine(max_attempts=2, concurrency=1, backoff_max_seconds=0.02)
    people = openids(3)
    await engine.start(
        "notice", "1", channel="template", text="通知", recipients=people, template_id="T", by="a"
    )
    progress = await engine.progress("notice:1")
    assert (progress.done, progress.failed, progress.sent) == (True, 3, 0)
    assert all(d.errcode == -1 for d in (await states(rig.repo, "notice:1", people)).values())
    assert len(rig.fake.calls_to("template_send")) == 6  # two attempts each


async def test_an_unexpected_error_is_retried_after_a_wait(rig: Rig) -> None:
    rig.fake.fail_next("template_send", 9_001_010, times=2, errmsg="something new")
    engine = await rig.engine(concurrency=1)
    people = openids(4)
    await engine.start(
        "notice", "2", channel="template", text="通知", recipients=people, template_id="T", by="a"
    )
    progress = await engine.progress("notice:2")
    assert (progress.done, progress.sent) == (True, 4)
    assert received(rig.fake, skip=2) == Counter(dict.fromkeys(people, 1))
    retried = [d for d in (await states(rig.repo, "notice:2", people)).values() if d.attempts > 1]
    assert retried and all(d.state == SENT for d in retried)


async def test_a_stopping_engine_leaves_the_rest_for_resume(rig: Rig) -> None:
    rig.fake.set_delay("template_send", 0.02)
    engine = await rig.engine(concurrency=1)
    people = openids(30)
    writer = await rig.engine(spawn=drop)
    await writer.start(
        "call", "stop", channel="template", text="通知", recipients=people, template_id="T", by="a"
    )
    running = asyncio.create_task(engine.run("call:stop"))
    while len(rig.fake.calls_to("template_send")) < 5:
        await asyncio.sleep(0.01)
    engine.stop()  # shutdown: the send in flight finishes, no new one starts
    async with asyncio.timeout(5):
        stopped = await running
    assert not stopped.done and stopped.sending == 0 and 0 < stopped.sent < 30
    assert stopped.unknown == 0
    assert await (await rig.engine()).resume() == 1
    assert received(rig.fake) == Counter(dict.fromkeys(people, 1))


async def test_not_following_and_bad_openids_fail_at_once_and_are_not_retried(rig: Rig) -> None:
    people = openids(10)
    for openid in people[:7]:
        rig.fake.add_follower(openid)  # from now on the others answer 43004
    rig.fake.fail_next("template_send", 40003)
    engine = await rig.engine()
    await engine.start(
        "vote-result",
        "2026-12",
        channel="template",
        text="投票结果",
        recipients=people,
        template_id="TPL",
        by="admin",
    )
    progress = await engine.progress("vote-result:2026-12")
    assert progress.done and progress.sent + progress.failed == 10 and progress.failed >= 3
    assert received(rig.fake) == Counter(dict.fromkeys(people, 1))  # one call each, no retry
    found = await states(rig.repo, "vote-result:2026-12", people)
    assert {d.errcode for d in found.values() if d.state == FAILED} == {43004, 40003} or (
        progress.failed == 3  # the 40003 fell on one of the non-followers
    )
    assert all(found[o].state == FAILED and found[o].attempts == 1 for o in people[7:])
    assert all(found[o].errcode == 43004 for o in people[7:] if found[o].errcode != 40003)


async def test_a_lost_answer_is_unknown_and_only_staff_send_it_again(rig: Rig) -> None:
    rig.fake.fail_next("template_send", -2, times=2)  # the client cannot read an answer
    engine = await rig.engine()
    people = openids(10)
    key = "assembly-call:2026-10"
    await engine.start(
        "assembly-call",
        "2026-10",
        channel="template",
        text="10月坝坝会",
        recipients=people,
        template_id="TPL",
        by="scheduler",
    )
    progress = await engine.progress(key)
    assert (progress.done, progress.sent, progress.unknown) == (True, 8, 2)
    lost = await engine.deliveries(key, UNKNOWN)
    assert len(lost) == 2 and all(d.errcode == -2 and d.reason for d in lost)
    # Neither a new run, nor the upkeep, sends them again on its own.
    assert await engine.resume() == 0
    await engine.run(key)
    assert len(rig.fake.calls_to("template_send")) == 10
    with pytest.raises(Invalid):
        await engine.deliveries(key, "lost")
    assert await engine.retry_unknown(key, by="王主任") == 2
    progress = await engine.progress(key)
    assert (progress.done, progress.sent, progress.unknown) == (True, 10, 0)
    counts = received(rig.fake)
    assert sorted(counts[d.recipient] for d in lost) == [2, 2]  # staff accepted that risk
    entries = await rig.audit.page(after=None, limit=10)
    assert [(e.actor, e.action, e.target, e.detail) for e in entries] == [
        ("王主任", "push.retry_unknown", f"push/{key}", {"deliveries": 2})
    ]
    assert await engine.retry_unknown(key, by="王主任") == 0


async def check_mass_batches(rig: Rig, count: int, sizes: list[int], **settings: Any) -> None:
    """``count`` recipients go in batches of ``sizes``; batch 1 had gone out before."""
    engine = await rig.engine(**settings)
    people = openids(count, prefix="o_mass_")
    key = "results:2026-12"
    # Batch 1 reached WeChat before (its answer was lost, say): WeChat knows its clientmsgid.
    client = await rig.client()
    earlier = await client.mass_send_text(
        ["o_x1", "o_x2"], "earlier", clientmsgid=clientmsgid(key, 1)
    )
    await engine.start(
        "results", "2026-12", channel="mass", text="最美居民户评选结果", recipients=people, by="a"
    )
    progress = await engine.progress(key)
    assert (progress.done, progress.sent, progress.failed, progress.pending) == (True, count, 0, 0)
    calls = rig.fake.calls_to("mass_send")[1:]
    assert [len(c.body["touser"]) for c in calls] == sizes
    assert [c.body["clientmsgid"] for c in calls] == [clientmsgid(key, n) for n in range(3)]
    assert all(len(c.body["clientmsgid"].encode()) <= 64 for c in calls)
    assert Counter(o for c in calls for o in c.body["touser"]) == Counter(dict.fromkeys(people, 1))
    campaign = await engine.campaign(key)
    assert campaign is not None
    assert [(b["size"], b["state"]) for b in campaign.batches] == [(n, SENT) for n in sizes]
    # Batch 1 was answered 45065: counted sent under the first job's id, not sent again.
    assert campaign.batches[1]["msg_id"] == earlier
    for openid in (min(calls[1].body["touser"]), max(calls[1].body["touser"])):
        delivery = await rig.repo.delivery(delivery_key(key, openid))
        assert delivery is not None and delivery.state == SENT and delivery.msgid == earlier
    with pytest.raises(MassAlreadySent):
        await client.mass_send_text(["o_y1", "o_y2"], "x", clientmsgid=clientmsgid(key, 2))
    assert await rig.repo.mass_count(people[0], engine_month()) == 1


async def test_25000_mass_recipients_go_in_3_batches_and_a_repeated_one_is_not_resent(
    store_rig: Rig,
) -> None:
    assert batch_size(25_000, 10_000) == 8334
    await check_mass_batches(store_rig, 25_000, [8334, 8334, 8332])


async def test_mass_batches_and_45065_with_each_coordinator(rig: Rig) -> None:
    # 25 in batches of at most 10: 9, 9, 7 (never a batch of one openid).
    await check_mass_batches(rig, 25, [9, 9, 7], mass_batch=10)
    assert [batch_size(n, 10) for n in (1, 10, 11, 21)] == [1, 10, 6, 7]


def engine_month(offset: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset, ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")


async def test_a_mass_job_whose_answer_was_lost_is_asked_again_and_not_sent_twice(
    rig: Rig,
) -> None:
    # The first request reaches WeChat but its answer comes after the client gave up.
    rig.fake.set_delay("mass_send", 0.4)
    engine = await rig.engine(timeout=0.2, backoff_seconds=0.5, backoff_max_seconds=1.0)
    people = openids(6)

    async def answer_quickly_after_the_first() -> None:
        while not rig.fake.calls_to("mass_send"):
            await asyncio.sleep(0.01)
        rig.fake.set_delay("mass_send", 0)

    watcher = asyncio.create_task(answer_quickly_after_the_first())
    await engine.start("notice", "w1", channel="mass", text="停水通知", recipients=people, by="a")
    await watcher
    progress = await engine.progress("notice:w1")
    assert (progress.done, progress.sent, progress.unknown) == (True, 6, 0)
    calls = rig.fake.calls_to("mass_send")
    assert len(calls) == 2 and calls[0].body == calls[1].body  # the same job, asked twice
    client = await rig.client()
    with pytest.raises(MassAlreadySent):
        await client.mass_send_text(people, "停水通知", clientmsgid=calls[0].body["clientmsgid"])


async def test_four_mass_messages_a_month_per_follower(rig: Rig) -> None:
    engine = await rig.engine(mass_batch=10)
    people = openids(6)
    month = engine_month()
    await rig.repo.set_mass_count(people[0], month, ["a:1", "b:1", "c:1", "d:1"])
    await rig.repo.set_mass_count(people[1], month, ["a:1", "b:1", "c:1"])
    await engine.start("notice", "p1", channel="mass", text="一", recipients=people, by="a")
    progress = await engine.progress("notice:p1")
    assert (progress.sent, progress.failed, progress.over_limit) == (5, 1, 1)
    (refused,) = await engine.deliveries("notice:p1", FAILED)
    assert refused.recipient == people[0] and refused.reason.startswith(MONTHLY_LIMIT)
    assert people[0] not in rig.fake.calls_to("mass_send")[0].body["touser"]
    assert [await rig.repo.mass_count(o, month) for o in people] == [4, 4, 1, 1, 1, 1]
    await engine.start("notice", "p2", channel="mass", text="二", recipients=people, by="a")
    progress = await engine.progress("notice:p2")
    assert (progress.sent, progress.failed, progress.over_limit) == (4, 2, 2)
    # One follower left under the limit: a mass send needs two, so it is refused, not counted.
    await engine.start("notice", "p3", channel="mass", text="三", recipients=people[1:3], by="a")
    found = await states(rig.repo, "notice:p3", people[1:3])
    assert found[people[1]].reason.startswith(MONTHLY_LIMIT)
    assert (found[people[2]].state, found[people[2]].reason) == (FAILED, MASS_NEEDS_TWO)
    assert await rig.repo.mass_count(people[2], month) == 2
    assert len(rig.fake.calls_to("mass_send")) == 2
    # A new calendar month: everyone may receive four again.
    later = await rig.engine(mass_batch=10, clock=lambda: time.time() + 40 * 86_400)
    await later.start("notice", "p4", channel="mass", text="四", recipients=people, by="a")
    assert (await later.progress("notice:p4")).sent == 6
    assert await rig.repo.mass_count(people[0], engine_month(40 * 86_400)) == 1


async def test_customer_service_messages_outside_the_window_fail(rig: Rig) -> None:
    rig.fake.fail_next("custom_send", 45015)
    engine = await rig.engine()
    people = openids(5)
    await engine.start(
        "ack", "1", channel="custom", text="已收到您的回复", recipients=people, by="a"
    )
    progress = await engine.progress("ack:1")
    assert (progress.done, progress.sent, progress.failed) == (True, 4, 1)
    (closed,) = await engine.deliveries("ack:1", FAILED)
    assert closed.errcode == 45015
    assert rig.fake.sent_texts() == ["已收到您的回复"] * 4
    assert len(rig.fake.calls_to("custom_send")) == 5


async def test_progress_is_visible_while_the_push_runs(rig: Rig) -> None:
    rig.fake.set_delay("template_send", 0.02)
    running: list[asyncio.Future[object]] = []

    def spawn(job: Awaitable[object], name: str) -> None:
        running.append(asyncio.ensure_future(job))

    engine = await rig.engine(spawn=spawn, rate_per_second=100, concurrency=2)
    people = openids(40)
    await engine.start(
        "call", "p", channel="template", text="通知", recipients=people, template_id="T", by="a"
    )
    first = await engine.progress("call:p")
    assert (first.state, first.total, first.sent + first.pending + first.sending) == (
        RUNNING,
        40,
        40,
    )
    seen: list[tuple[int, int]] = []
    async with asyncio.timeout(30):
        while not (progress := await engine.progress("call:p")).done:
            seen.append((progress.sent, progress.pending))
            await asyncio.sleep(0.03)
    assert any(0 < sent < 40 and pending > 0 for sent, pending in seen)
    assert progress.sent == 40
    await asyncio.gather(*running)
    assert received(rig.fake) == Counter(dict.fromkeys(people, 1))


def drop(job: Awaitable[object], name: str) -> None:
    """A spawn that never runs the job: the process died right after writing the push."""
    if asyncio.iscoroutine(job):
        job.close()


async def test_resume_finishes_a_push_whose_deliveries_were_half_written(rig: Rig) -> None:
    people = openids(12)
    now = time.time()

    def claimed(campaign: str, created_at: float) -> dict[str, Any]:
        return {
            "campaign": campaign,
            "period": "2026-12",
            "channel": "template",
            "text": "坝坝会",
            "template_id": "TPL",
            "template_data": {"first": "坝坝会"},
            "url": "",
            "audience": "all",
            "state": CLAIMED,
            "total": len(people),
            "created_at": created_at,
            "by": "scheduler",
            "batch_size": len(people),
            "recipients": people,
        }

    # A crash while writing deliveries: 5 of 12 written.
    assert await rig.repo.claim("crashed:2026-12", claimed("crashed", now - 3600))
    for openid in people[:5]:
        key = delivery_key("crashed:2026-12", openid)
        assert await rig.repo.add(Delivery(key, "crashed:2026-12", openid, PENDING))
    # One just claimed: its writer may still be writing, so it is left alone for now.
    assert await rig.repo.claim("young:2026-12", claimed("young", now))
    engine = await rig.engine()
    assert await engine.resume() == 1
    progress = await engine.progress("crashed:2026-12")
    assert (progress.done, progress.sent) == (True, 12)
    assert received(rig.fake) == Counter(dict.fromkeys(people, 1))
    assert await rig.repo.recipients("crashed:2026-12") == []  # no longer kept once written
    assert (await engine.progress("young:2026-12")).state == CLAIMED
    later = await rig.engine(clock=lambda: time.time() + 3600)
    assert await later.resume() == 1
    assert (await later.progress("young:2026-12")).sent == 12


async def test_a_delivery_left_sending_by_a_dead_process_becomes_unknown(rig: Rig) -> None:
    people = openids(8)
    writer = await rig.engine(spawn=drop)
    await writer.start(
        "call", "x", channel="template", text="通知", recipients=people, template_id="T", by="a"
    )
    # A process claimed two deliveries and died: one lease has run out, one soon will.
    found = await states(rig.repo, "call:x", people)
    for openid, lease_left in ((people[0], -1.0), (people[1], 0.5)):
        before = found[openid]
        held = replace(
            before, state=SENDING, owner="dead:1", lease_until=time.time() + lease_left, attempts=1
        )
        assert await rig.repo.swap(before, held) is not None
    progress = await (await rig.engine()).run("call:x")
    assert (progress.done, progress.sent, progress.unknown) == (True, 6, 2)
    assert received(rig.fake) == Counter(dict.fromkeys(people[2:], 1))
    lost = await states(rig.repo, "call:x", people[:2])
    assert all(d.state == UNKNOWN and d.reason.startswith("interrupted") for d in lost.values())


async def test_two_engines_on_one_push_send_each_delivery_once(rig: Rig) -> None:
    other_store = await rig.another_store() if rig.store.backend == "postgres" else rig.store
    people = openids(200)
    rig.fake.set_delay("template_send", 0.005)
    rig.fake.fail_next("template_send", 45009, times=3)
    writer = await rig.engine(spawn=drop)
    await writer.start(
        "call", "two", channel="template", text="通知", recipients=people, template_id="T", by="a"
    )
    first, second = await rig.engine(), await rig.engine(store=other_store)
    results = await asyncio.gather(first.run("call:two"), second.run("call:two"))
    assert all(p.done and p.sent == 200 for p in results)
    assert received(rig.fake, skip=3) == Counter(dict.fromkeys(people, 1))
    owners = Counter(d.owner for d in (await states(rig.repo, "call:two", people)).values())
    assert set(owners) == {first.owner, second.owner}


async def test_start_refuses_what_it_cannot_send(rig: Rig) -> None:
    engine = await rig.engine()
    base: dict[str, Any] = {"text": "x", "recipients": ["o1"], "by": "a"}
    with pytest.raises(Invalid):
        await engine.start("c", "p", channel="sms", **base)
    with pytest.raises(Invalid):
        await engine.start("c", "p", channel="template", **base)  # no template id
    with pytest.raises(Invalid):
        await engine.start("c|d", "p", channel="custom", **base)
    with pytest.raises(Invalid):
        await engine.start("c", "p", channel="custom", text=" ", recipients=["o1"], by="a")
    with pytest.raises(NotFound):
        await engine.progress("nothing:here")
    empty = await engine.start("c", "p", channel="custom", text="x", recipients=[], by="a")
    assert empty is not None and empty.state == DONE


async def test_the_scheduler_upkeep_resumes_pushes_left_running(rig: Rig) -> None:
    writer = await rig.engine(spawn=drop)
    people = openids(5)
    await writer.start(
        "call", "up", channel="template", text="通知", recipients=people, template_id="T", by="a"
    )
    assert (await writer.progress("call:up")).pending == 5
    await jobs.push_upkeep(await rig.engine())
    assert (await writer.progress("call:up")).sent == 5


async def test_the_app_resumes_an_unfinished_push_when_it_starts(plain: Harness) -> None:
    store = plain.app[keys.STORE]
    coordinator = plain.app[keys.COORDINATOR]
    writer = PushEngine(
        PushRepo(store),
        plain.app[keys.WECHAT],
        coordinator.limiter,
        AuditRepo(store),
        FAST,
        spawn=drop,
    )
    people = openids(5)
    await writer.start(
        "call", "app", channel="custom", text="坝坝会通知", recipients=people, by="scheduler"
    )
    await plain.restart()
    push = plain.app[keys.PUSH]
    async with asyncio.timeout(20):
        while not (await push.progress("call:app")).done:
            await asyncio.sleep(0.05)
    assert (await push.progress("call:app")).sent == 5


# --- real processes killed with SIGKILL -----------------------------------------------------


@contextmanager
def worker(
    where: str, api_url: str, campaign: str, count: int, rate: int
) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.push_worker",
            where,
            api_url,
            campaign,
            str(count),
            str(rate),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


async def finished(proc: subprocess.Popen[str], timeout: float) -> str:
    async with asyncio.timeout(timeout):
        while proc.poll() is None:
            await asyncio.sleep(0.05)
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert proc.returncode == 0, out
    return out


async def open_store(where: str) -> Store:
    from storage.tinydb_store import TinyDBStore

    kind, _, location = where.partition(":")
    store: Store = (
        TinyDBStore(Path(location), SCHEMA)
        if kind == "tinydb"
        else PostgresStore(PG_DSN, SCHEMA, namespace=location)
    )
    await store.open()
    return store


@dataclass
class Place:
    where: str


@pytest_asyncio.fixture(params=["tinydb", "postgres"])
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    if request.param == "tinydb":
        yield Place(f"tinydb:{tmp_path / 'data'}")
        return
    async with pg_namespace() as namespace:
        yield Place(f"postgres:{namespace}")


@pytest.mark.slow
async def test_a_push_killed_mid_way_and_restarted_reaches_everyone_once(
    place: Place, running_fake: tuple[FakeWeChatAPI, str]
) -> None:
    fake, url = running_fake
    fake.set_delay("template_send", 0.01)
    count = 300
    for kill_after in (60, 160):
        with worker(place.where, url, "assembly", count, 150) as proc:
            async with asyncio.timeout(60):
                while len(fake.calls_to("template_send")) < kill_after:
                    assert proc.poll() is None, "the push ended before it could be killed"
                    await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
    assert len(fake.calls_to("template_send")) < count
    with worker(place.where, url, "assembly", count, 150) as proc:
        out = await finished(proc, 60)
    assert out.startswith("JOINED") and "DONE" in out
    counts = received(fake)
    assert max(counts.values()) == 1, "an openid received the call twice"
    store = await open_store(place.where)
    try:
        repo = PushRepo(store)
        people = [f"o_crash_{n:05d}" for n in range(count)]
        found = await states(repo, "assembly:crash", people)
    finally:
        await store.close()
    by_state = Counter(d.state for d in found.values())
    assert set(by_state) <= {SENT, UNKNOWN}
    # Only what was in flight at each kill is unknown (4 sends at once per process).
    assert by_state[UNKNOWN] <= 8
    for openid, delivery in found.items():
        assert counts[openid] == (1 if delivery.state == SENT else counts[openid])
        assert counts[openid] <= 1


@pytest.mark.slow
async def test_two_processes_running_one_push_reach_everyone_once(
    running_fake: tuple[FakeWeChatAPI, str],
) -> None:
    fake, url = running_fake
    fake.set_delay("template_send", 0.005)
    fake.fail_next("template_send", 45009, times=5)
    fake.fail_next("template_send", -1, times=3)
    count = 400
    async with pg_namespace() as namespace:
        where = f"postgres:{namespace}"
        with (
            worker(where, url, "assembly", count, 400) as one,
            worker(where, url, "assembly", count, 400) as two,
        ):
            outputs = [await finished(one, 90), await finished(two, 90)]
        assert sorted(out.split("\n", 1)[0] for out in outputs) == ["CLAIMED", "JOINED"]
        store = await open_store(where)
        try:
            people = [f"o_crash_{n:05d}" for n in range(count)]
            found = await states(PushRepo(store), "assembly:crash", people)
        finally:
            await store.close()
    assert received(fake, skip=8) == Counter(dict.fromkeys(people, 1))
    assert {d.state for d in found.values()} == {SENT}
    owners = {d.owner for d in found.values()}
    assert len(owners) == 2, "both processes should have sent part of the push"
