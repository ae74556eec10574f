"""Coordinators for the contract tests: every backend, and more than one "process".

``coordinators`` is parametrised over the backends. Each test gets a fresh Redis
key prefix or a fresh PostgreSQL schema; every coordinator the harness opens on it
shares that state, as separate server processes would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from bot.coordination.base import Coordinator
from bot.coordination.local import LocalCoordinator
from bot.coordination.pg_backend import PostgresCoordinator
from bot.coordination.redis_backend import RedisCoordinator
from tests.services import PG_DSN, REDIS_URL, pg_namespace, redis_prefix

BACKENDS = ["local", "redis", "postgres"]
SHARED = ["redis", "postgres"]


def make_coordinator(backend: str, location: str, **options: Any) -> Coordinator:
    """An unopened coordinator of ``backend`` at ``location`` (a prefix or a schema)."""
    if backend == "redis":
        return RedisCoordinator(REDIS_URL, prefix=location, **options)
    if backend == "postgres":
        return PostgresCoordinator(PG_DSN, namespace=location, **options)
    return LocalCoordinator()


class Coordinators:
    """Opens coordinators of one backend on one location; closes them all at the end."""

    def __init__(self, backend: str, location: str) -> None:
        self.backend = backend
        self.location = location
        self._open: list[Coordinator] = []

    @property
    def shared(self) -> bool:
        return self.backend != "local"

    def need_shared(self) -> None:
        if not self.shared:
            pytest.skip("one process: nothing is shared, the app's own state is authoritative")

    async def open(self, **options: Any) -> Coordinator:
        """Another "process" on the same backend and location."""
        coordinator = make_coordinator(self.backend, self.location, **options)
        await coordinator.open()
        self._open.append(coordinator)
        return coordinator

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()


async def _drop_keys(prefix: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def harness(backend: str) -> AsyncIterator[Coordinators]:
    """Coordinators of ``backend`` on a fresh location, removed afterwards."""
    if backend == "postgres":
        async with pg_namespace() as namespace:
            pg = Coordinators(backend, namespace)
            try:
                yield pg
            finally:
                await pg.close_all()
        return
    other = Coordinators(backend, redis_prefix() if backend == "redis" else "")
    try:
        yield other
    finally:
        await other.close_all()
        if backend == "redis":
            await _drop_keys(other.location)


@pytest_asyncio.fixture(params=BACKENDS)
async def coordinators(request: pytest.FixtureRequest) -> AsyncIterator[Coordinators]:
    async with harness(request.param) as opened:
        yield opened


@pytest_asyncio.fixture
async def coordinator(coordinators: Coordinators) -> Coordinator:
    """An opened coordinator, closed after the test."""
    return await coordinators.open()


@pytest_asyncio.fixture(params=SHARED)
async def shared_coordinators(request: pytest.FixtureRequest) -> AsyncIterator[Coordinators]:
    """Like ``coordinators``, for the shared backends only (leases, child processes)."""
    async with harness(request.param) as opened:
        yield opened
