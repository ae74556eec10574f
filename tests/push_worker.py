"""Child process for the push crash tests: the push engine against the fake WeChat API.

    python -m tests.push_worker STORE API_URL CAMPAIGN COUNT RATE

``STORE`` is ``tinydb:<data dir>`` or ``postgres:<schema>``. The process claims the
push ``CAMPAIGN:crash`` (a template message to ``COUNT`` recipients) and sends it at
``RATE`` a second; if the push was claimed before (a restart, or another process
started with it) it joins it instead, as a resumed server does. It prints
``CLAIMED`` or ``JOINED``, then ``DONE <sent> <failed> <unknown>`` once nothing is
left; the tests kill it with SIGKILL at any point in between.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp

from bot.config import PushConfig
from bot.coordination.base import Coordinator
from bot.coordination.local import LocalCoordinator
from bot.coordination.pg_backend import PostgresCoordinator
from bot.domain.push import PushEngine
from bot.wechat.client import WeChatClient
from storage.contract import Store
from storage.postgres_store import PostgresStore
from storage.push import PushRepo
from storage.repos import AuditRepo
from storage.schema import SCHEMA
from storage.tinydb_store import TinyDBStore
from tests.conftest import APP_ID, APP_SECRET
from tests.services import PG_DSN

TEXT = "【坝坝会】12月5日 19:00 社区广场，请户主参加。"
TEMPLATE_ID = "TPL_CRASH"
# A send ends within 4 × 0.5 s; a dead holder's delivery is looked at again after 2 s.
CONFIG = PushConfig(backoff_seconds=0.05, backoff_max_seconds=0.5, lease_seconds=2.0, concurrency=4)


def recipients(count: int) -> list[str]:
    return [f"o_crash_{n:05d}" for n in range(count)]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def backend(where: str) -> tuple[Store, Coordinator]:
    kind, _, location = where.partition(":")
    if kind == "tinydb":
        return TinyDBStore(Path(location), SCHEMA), LocalCoordinator()
    store = PostgresStore(PG_DSN, SCHEMA, namespace=location, pool_size=4)
    return store, PostgresCoordinator(PG_DSN, namespace=location, app_id=APP_ID)


async def main(argv: list[str]) -> None:
    where, api_url, campaign, count, rate = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    store, coordinator = backend(where)
    await store.open()
    await coordinator.open()
    try:
        async with aiohttp.ClientSession() as session:
            client = WeChatClient(
                session,
                app_id=APP_ID,
                app_secret=APP_SECRET,
                base_url=api_url,
                timeout=0.5,
                tokens=coordinator.tokens,
            )
            engine = PushEngine(
                PushRepo(store),
                client,
                coordinator.limiter,
                AuditRepo(store),
                replace(CONFIG, rate_per_second=rate),
            )
            key = f"{campaign}:crash"
            started = await engine.start(
                campaign,
                "crash",
                channel="template",
                text=TEXT,
                recipients=recipients(count),
                template_id=TEMPLATE_ID,
                by="crash-test",
            )
            if started is None:
                say("JOINED")
                progress = await engine.run(key)
            else:
                say("CLAIMED")
                progress = await engine.progress(key)
            say(f"DONE {progress.sent} {progress.failed} {progress.unknown}")
    finally:
        await coordinator.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
