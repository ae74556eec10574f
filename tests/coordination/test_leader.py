"""The leader lease: one holder at a time, and a dead holder replaced within the bound."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from bot.coordination.base import CoordinationError, Coordinator, LeaderLease
from tests.coordination.conftest import Coordinators
from tests.services import PG_DSN

ROOT = Path(__file__).resolve().parents[2]
TTL = 0.6  # short, so that takeovers are quick to observe; holders renew every TTL/4
POLL = 0.02


def lease_name() -> str:
    # Unique per test: advisory locks and connection names are database-wide.
    return f"scheduler-{uuid.uuid4().hex[:8]}"


async def pair(coordinators: Coordinators) -> tuple[Coordinator, Coordinator]:
    return await coordinators.open(lease_ttl=TTL), await coordinators.open(lease_ttl=TTL)


async def acquired_within(lease: LeaderLease, limit: float) -> float:
    """Poll ``lease`` as a scheduler would; seconds until it was ours (fails past ``limit``)."""
    started = time.monotonic()
    while not await lease.try_acquire():
        elapsed = time.monotonic() - started
        if elapsed > limit:
            pytest.fail(f"not acquired within {limit:.2f}s")
        await asyncio.sleep(POLL)
    return time.monotonic() - started


async def test_exactly_one_holder(shared_coordinators: Coordinators) -> None:
    a, b = await pair(shared_coordinators)
    name = lease_name()
    first, second = a.lease(name), b.lease(name)
    assert a.lease(name) is first  # one lease per name and process
    assert await first.try_acquire()
    assert not await second.try_acquire()
    assert await first.try_acquire()  # renewal
    assert not await second.try_acquire()
    await first.release()
    assert await second.try_acquire()
    assert not await first.try_acquire()
    assert first.takeover_bound == TTL


async def test_close_releases_the_lease(shared_coordinators: Coordinators) -> None:
    a, b = await pair(shared_coordinators)
    name = lease_name()
    assert await a.lease(name).try_acquire()
    await a.close()
    assert await b.lease(name).try_acquire()


async def test_renewal_keeps_the_lease_past_its_ttl(shared_coordinators: Coordinators) -> None:
    a, b = await pair(shared_coordinators)
    name = lease_name()
    holder, other = a.lease(name), b.lease(name)
    assert await holder.try_acquire()
    for _ in range(5):  # 1.25 × TTL in all
        await asyncio.sleep(TTL / 4)
        assert await holder.try_acquire()
        assert not await other.try_acquire()


async def test_holder_that_stops_renewing_is_replaced(shared_coordinators: Coordinators) -> None:
    # Redis: the key expires. PostgreSQL: the server ends the idle session.
    a, b = await pair(shared_coordinators)
    name = lease_name()
    holder, other = a.lease(name), b.lease(name)
    assert await holder.try_acquire()
    await acquired_within(other, TTL + 0.5)
    assert not await holder.try_acquire()  # it notices instead of believing it leads


async def test_holder_notices_its_session_was_killed(shared_coordinators: Coordinators) -> None:
    if shared_coordinators.backend != "postgres":
        pytest.skip("a Redis lease lives in a key, not in a connection")
    a, b = await pair(shared_coordinators)
    name = lease_name()
    holder, other = a.lease(name), b.lease(name)
    assert await holder.try_acquire()
    admin = await asyncpg.connect(PG_DSN)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            f"gongzhi-lease-{name}",
        )
    finally:
        await admin.close()
    assert killed == 1
    await asyncio.sleep(0.05)
    assert not await holder.try_acquire()
    assert await other.try_acquire()
    assert not await holder.try_acquire()


async def run_holder(coordinators: Coordinators, name: str) -> asyncio.subprocess.Process:
    """Start ``lease_holder.py`` and wait until it says it leads."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.coordination.lease_holder",
        coordinators.backend,
        coordinators.location,
        name,
        str(TTL),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert line == b"LEADER\n"
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
async def test_child_process_holder_is_replaced(
    shared_coordinators: Coordinators, how: signal.Signals
) -> None:
    parent = await shared_coordinators.open(lease_ttl=TTL)
    name = lease_name()
    lease = parent.lease(name)
    proc = await run_holder(shared_coordinators, name)
    try:
        assert not await lease.try_acquire()
        proc.send_signal(how)
        took = await acquired_within(lease, lease.takeover_bound + 0.5)
        print(f"{shared_coordinators.backend} {how.name}: taken over in {took:.3f}s")
    finally:
        if proc.returncode is None:
            proc.kill()  # SIGKILL ends a stopped process too
        await proc.wait()
    assert await lease.try_acquire()


async def test_lease_refused_after_close(shared_coordinators: Coordinators) -> None:
    c = await shared_coordinators.open(lease_ttl=TTL)
    lease = c.lease(lease_name())
    assert await lease.try_acquire()
    await c.close()
    with pytest.raises(CoordinationError):
        await lease.try_acquire()
