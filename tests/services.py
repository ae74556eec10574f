"""Real PostgreSQL and Redis for tests: skip with a reason where absent, unless required.

``.ci/run`` sets ``GONGZHI_REQUIRE_SERVICES=1``: there, a missing service fails the run
instead of silently skipping every test that needs it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

PG_DSN = os.environ.get("GONGZHI_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GONGZHI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _required() -> bool:
    return os.environ.get("GONGZHI_REQUIRE_SERVICES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need(service: str) -> None:
    """Skip (or, when services are required, fail) unless ``service`` answers."""
    host, port = {"postgres": ("127.0.0.1", 5432), "redis": ("127.0.0.1", 6379)}[service]
    if _reachable(host, port):
        return
    message = f"{service} is not answering on {host}:{port}"
    if _required():
        pytest.fail(f"{message} and GONGZHI_REQUIRE_SERVICES=1")
    pytest.skip(message)


@asynccontextmanager
async def pg_namespace() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema (namespace) for one test, dropped afterwards."""
    import asyncpg

    need("postgres")
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        yield name
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


def redis_prefix() -> str:
    """A fresh key prefix for one test, so tests never see each other's keys."""
    need("redis")
    return f"t:{uuid.uuid4().hex[:12]}:"
