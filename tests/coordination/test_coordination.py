"""The coordination contract, on every backend (cross-process cases on the shared ones).

Two coordinators opened on one location stand for two server processes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from bot.coordination.base import (
    CoordinationError,
    Coordinator,
    DeliveryState,
    LockTimeout,
    SharedToken,
)
from bot.coordination.pg_backend import PostgresCoordinator
from bot.coordination.redis_backend import RedisCoordinator
from tests.coordination.conftest import Coordinators, harness, make_coordinator


def key() -> str:
    return f"msg-{uuid.uuid4().hex[:10]}"


async def pair(coordinators: Coordinators) -> tuple[Coordinator, Coordinator]:
    coordinators.need_shared()
    return await coordinators.open(), await coordinators.open()


async def owed_and_done(c: Coordinator, k: str) -> None:
    """A delivery whose only waiter gave up and whose handler then finished."""
    assert await c.deliveries.claim(k, 60)
    await c.deliveries.join(k)
    await c.deliveries.leave(k, gave_up=True)
    await c.deliveries.finish(k, "reply")


# -- the delivery ledger ------------------------------------------------------------


async def test_claim_is_won_once_across_processes(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    k = key()
    assert await a.deliveries.claim(k, 60)
    assert not await b.deliveries.claim(k, 60)
    assert not await a.deliveries.claim(k, 60)
    assert await b.deliveries.claim(key(), 60)


async def test_fifty_concurrent_claimers_one_winner(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    k = key()
    results = await asyncio.gather(*(c.deliveries.claim(k, 60) for c in (a, b) * 25))
    assert results.count(True) == 1


async def test_finish_then_get_from_another_process(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    k = key()
    assert await b.deliveries.get(k) is None
    await a.deliveries.claim(k, 60)
    assert await b.deliveries.get(k) == DeliveryState(done=False, reply=None, sent_late=False)
    await a.deliveries.finish(k, "<xml>回复</xml>")
    assert await b.deliveries.get(k) == DeliveryState(
        done=True, reply="<xml>回复</xml>", sent_late=False
    )
    other = key()
    await a.deliveries.claim(other, 60)
    await a.deliveries.finish(other, None)
    assert await b.deliveries.get(other) == DeliveryState(done=True, reply=None, sent_late=False)
    # An empty reply is a reply, not "none".
    empty = key()
    await a.deliveries.claim(empty, 60)
    await a.deliveries.finish(empty, "")
    assert await b.deliveries.get(empty) == DeliveryState(done=True, reply="", sent_late=False)


async def test_take_late_needs_done_owed_and_nobody_waiting(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    k = key()
    assert not await a.deliveries.take_late(k)  # unknown
    await a.deliveries.claim(k, 60)
    await a.deliveries.join(k)
    await b.deliveries.join(k)
    await a.deliveries.leave(k, gave_up=True)
    assert not await a.deliveries.take_late(k)  # not done yet
    await a.deliveries.finish(k, "reply")
    assert not await a.deliveries.take_late(k)  # b still waits
    await b.deliveries.leave(k, gave_up=False)
    assert await b.deliveries.take_late(k)
    assert not await a.deliveries.take_late(k)  # only once
    assert not await a.deliveries.answer(k)  # the reply already went out
    state = await b.deliveries.get(k)
    assert state is not None and state.sent_late


async def test_take_late_refused_when_nobody_gave_up(coordinators: Coordinators) -> None:
    a, _ = await pair(coordinators)
    k = key()
    await a.deliveries.claim(k, 60)
    await a.deliveries.join(k)
    await a.deliveries.leave(k, gave_up=False)
    await a.deliveries.finish(k, "reply")
    assert not await a.deliveries.take_late(k)


async def test_take_late_refused_while_a_retry_waits(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    k = key()
    await owed_and_done(a, k)
    await b.deliveries.join(k)
    assert not await a.deliveries.take_late(k)
    await b.deliveries.leave(k, gave_up=False)
    assert await a.deliveries.take_late(k)


async def test_answer_first_excludes_late_send(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    k = key()
    await owed_and_done(a, k)
    assert await b.deliveries.answer(k)
    assert await b.deliveries.answer(k)  # answering again stays allowed
    assert not await a.deliveries.take_late(k)


async def test_answer_on_unknown_key_is_allowed(coordinators: Coordinators) -> None:
    a, _ = await pair(coordinators)
    assert await a.deliveries.answer(key())


async def test_waiters_never_go_below_zero(coordinators: Coordinators) -> None:
    a, _ = await pair(coordinators)
    k = key()
    await owed_and_done(a, k)
    await a.deliveries.leave(k, gave_up=False)  # an unmatched leave
    await a.deliveries.join(k)
    assert not await a.deliveries.take_late(k)  # one waiter, not zero


async def test_twenty_concurrent_take_late_one_winner(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    k = key()
    await owed_and_done(a, k)
    results = await asyncio.gather(*(c.deliveries.take_late(k) for c in (a, b) * 10))
    assert results.count(True) == 1


async def test_answer_and_take_late_race_exactly_one_wins(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    keys = [key() for _ in range(15)]
    for k in keys:
        await owed_and_done(a, k)
    outcomes = await asyncio.gather(
        *(asyncio.gather(a.deliveries.answer(k), b.deliveries.take_late(k)) for k in keys)
    )
    for answered, sent_late in outcomes:
        assert answered != sent_late


async def test_keys_expire_after_ttl(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    k = key()
    assert await a.deliveries.claim(k, 0.2)
    await asyncio.sleep(0.35)
    assert await b.deliveries.get(k) is None
    # Late writes to an expired key do not bring it back.
    await a.deliveries.finish(k, "reply")
    await a.deliveries.join(k)
    await a.deliveries.leave(k, gave_up=True)
    assert await b.deliveries.get(k) is None
    assert not await b.deliveries.take_late(k)
    # A new claim starts from scratch.
    assert await b.deliveries.claim(k, 60)
    assert await a.deliveries.get(k) == DeliveryState(done=False, reply=None, sent_late=False)


async def test_expired_rows_are_swept(coordinators: Coordinators) -> None:
    if coordinators.backend != "postgres":
        pytest.skip("Redis expires keys itself")
    c = await coordinators.open(sweep_interval=0.0)
    for _ in range(5):
        await c.deliveries.claim(key(), 0.05)
    await asyncio.sleep(0.1)
    await c.deliveries.claim(key(), 60)  # sweeps
    assert isinstance(c, PostgresCoordinator)
    pool = c._pg.ops()
    assert await pool.fetchval("SELECT count(*) FROM coord_deliveries") == 1


# -- user locks ---------------------------------------------------------------------


async def test_lock_excludes_across_processes(coordinators: Coordinators) -> None:
    a = await coordinators.open()
    b = await coordinators.open() if coordinators.shared else a
    counter = 0
    events: list[str] = []

    async def bump(c: Coordinator) -> None:
        nonlocal counter
        async with c.locks.hold("resident-1", timeout=10):
            events.append("in")
            seen = counter
            await asyncio.sleep(0.001)
            counter = seen + 1
            events.append("out")

    await asyncio.gather(*(bump(c) for c in (a, b) * 20))
    assert counter == 40
    assert events == ["in", "out"] * 40


async def test_lock_times_out_within_deadline(coordinators: Coordinators) -> None:
    a = await coordinators.open()
    b = await coordinators.open() if coordinators.shared else a
    async with a.locks.hold("resident-1", timeout=1):
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            async with b.locks.hold("resident-1", timeout=0.2):
                pytest.fail("entered a held lock")
        assert 0.2 <= time.monotonic() - started < 0.45
        # Another resident is not held up.
        async with b.locks.hold("resident-2", timeout=0.2):
            pass


async def test_lock_released_when_the_body_raises(coordinators: Coordinators) -> None:
    a = await coordinators.open()
    b = await coordinators.open() if coordinators.shared else a
    with pytest.raises(RuntimeError, match="boom"):
        async with a.locks.hold("resident-1", timeout=1):
            raise RuntimeError("boom")
    started = time.monotonic()
    async with b.locks.hold("resident-1", timeout=0.5):
        pass
    assert time.monotonic() - started < 0.1


async def test_cancelled_waiter_leaves_the_lock_free(coordinators: Coordinators) -> None:
    a = await coordinators.open()
    b = await coordinators.open() if coordinators.shared else a

    async def wait_for_lock() -> None:
        async with b.locks.hold("resident-1", timeout=5):
            pytest.fail("entered a held lock")

    async with a.locks.hold("resident-1", timeout=1):
        waiter = asyncio.create_task(wait_for_lock())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    started = time.monotonic()
    async with b.locks.hold("resident-1", timeout=0.5):
        pass
    assert time.monotonic() - started < 0.2


# -- the shared access token --------------------------------------------------------


async def test_token_put_and_get(coordinators: Coordinators) -> None:
    a = await coordinators.open()
    b = await coordinators.open() if coordinators.shared else a
    assert await b.tokens.get() is None
    first = SharedToken("t" * 512, time.time() + 7200.25)
    await a.tokens.put(first)
    assert await b.tokens.get() == first
    second = SharedToken("second-token", time.time() + 7000.5)
    await b.tokens.put(second)
    assert await a.tokens.get() == second


async def test_expired_token_is_not_handed_out(coordinators: Coordinators) -> None:
    a, b = await pair(coordinators)
    await a.tokens.put(SharedToken("fresh", time.time() + 7200))
    await a.tokens.put(SharedToken("stale", time.time() - 1))
    assert await b.tokens.get() is None


async def refresh_once(c: Coordinator, fetches: list[str]) -> str:
    """What every process does when its token is missing: one fetches, the rest read."""
    async with c.tokens.refreshing(timeout=5):
        current = await c.tokens.get()
        if current is not None and current.expires_at > time.time() + 60:
            return current.token
        fetches.append("fetch")
        await asyncio.sleep(0.05)  # the HTTP call to WeChat
        token = SharedToken(f"token-{len(fetches)}", time.time() + 7200)
        await c.tokens.put(token)
        return token.token


async def test_token_refresh_single_flight_across_processes(coordinators: Coordinators) -> None:
    coordinators.need_shared()
    processes = await asyncio.gather(*(coordinators.open() for _ in range(8)))
    fetches: list[str] = []
    tokens = await asyncio.gather(*(refresh_once(c, fetches) for c in processes))
    assert fetches == ["fetch"]
    assert set(tokens) == {"token-1"}


async def test_token_refresh_single_flight_within_a_process(coordinator: Coordinator) -> None:
    fetches: list[str] = []
    tokens = await asyncio.gather(*(refresh_once(coordinator, fetches) for _ in range(8)))
    assert fetches == ["fetch"]
    assert set(tokens) == {"token-1"}


async def test_token_refresh_wait_times_out(coordinators: Coordinators) -> None:
    a = await coordinators.open()
    b = await coordinators.open() if coordinators.shared else a
    async with a.tokens.refreshing(timeout=1):
        started = time.monotonic()
        with pytest.raises(CoordinationError):
            async with b.tokens.refreshing(timeout=0.2):
                pytest.fail("two refreshers at once")
        assert time.monotonic() - started < 0.45
    async with b.tokens.refreshing(timeout=0.5):
        pass


# -- the rate limiter ---------------------------------------------------------------


async def away_from_window_edge(window: float) -> None:
    """Start a burst well inside one window (the servers' clocks are this host's)."""
    into = time.time() % window
    if into > window - 1.0:
        await asyncio.sleep(window - into + 0.05)


async def test_rate_limit_is_shared_across_processes(coordinators: Coordinators) -> None:
    a = await coordinators.open()
    b = await coordinators.open() if coordinators.shared else a
    await away_from_window_edge(10)
    waits = await asyncio.gather(*(c.limiter.acquire("template", 5, 10) for c in (a, b) * 15))
    assert waits.count(0.0) == 5
    assert all(0 < wait <= 10 for wait in waits if wait)
    # Another bucket has its own budget.
    assert await b.limiter.acquire("custom", 5, 10) == 0.0


async def test_rate_limit_grants_again_in_the_next_window(coordinators: Coordinators) -> None:
    a = await coordinators.open()
    b = await coordinators.open() if coordinators.shared else a
    assert await a.limiter.acquire("push", 2, 0.3) == 0.0
    assert await b.limiter.acquire("push", 2, 0.3) == 0.0
    wait = await a.limiter.acquire("push", 2, 0.3)
    assert 0 < wait <= 0.3
    await asyncio.sleep(wait + 0.02)
    assert await b.limiter.acquire("push", 2, 0.3) == 0.0


# -- failures -----------------------------------------------------------------------


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def unreachable(backend: str, port: int) -> Coordinator:
    if backend == "redis":
        return RedisCoordinator(f"redis://user:s3cret-pw@127.0.0.1:{port}/0", op_timeout=0.3)
    return PostgresCoordinator(
        f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/x", op_timeout=0.3
    )


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_refused_connection_fails_fast(backend: str) -> None:
    coordinator = unreachable(backend, 1)
    started = time.monotonic()
    with pytest.raises(CoordinationError) as raised:
        await coordinator.open()
    assert time.monotonic() - started < 1.0
    message = str(raised.value)
    assert "127.0.0.1:1" in message and "\n" not in message
    assert "s3cret-pw" not in message
    await coordinator.close()  # harmless after a failed open


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_silent_server_fails_within_the_deadline(backend: str, silent_port: int) -> None:
    coordinator = unreachable(backend, silent_port)
    started = time.monotonic()
    with pytest.raises(CoordinationError) as raised:
        await coordinator.open()
    assert time.monotonic() - started < 1.0
    assert "s3cret-pw" not in str(raised.value)


async def test_calls_before_open_are_refused(coordinators: Coordinators) -> None:
    coordinators.need_shared()
    unopened = make_coordinator(coordinators.backend, coordinators.location)
    with pytest.raises(CoordinationError):
        await unopened.deliveries.claim(key(), 60)
    with pytest.raises(CoordinationError):
        await unopened.limiter.acquire("b", 1, 1)


async def test_close_is_idempotent(coordinators: Coordinators) -> None:
    c = await coordinators.open()
    await c.close()
    await c.close()
    assert c.shared == coordinators.shared


async def test_deployments_in_other_locations_are_independent(coordinators: Coordinators) -> None:
    # Advisory locks are per database, not per schema: the namespace must be in their key.
    a = (await pair(coordinators))[0]
    async with harness(coordinators.backend) as elsewhere:
        b = await elsewhere.open()
        k = key()
        assert await a.deliveries.claim(k, 60)
        assert await b.deliveries.claim(k, 60)
        async with a.locks.hold("resident-1", timeout=1), b.locks.hold("resident-1", timeout=0.2):
            pass
        async with a.tokens.refreshing(timeout=1), b.tokens.refreshing(timeout=0.2):
            pass
        assert await a.lease("scheduler").try_acquire()
        assert await b.lease("scheduler").try_acquire()
