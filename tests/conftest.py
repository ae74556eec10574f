"""Shared test harness: the real app on loopback, the fake WeChat API, simulated residents."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.config import (
    AdminConfig,
    Config,
    ConversationConfig,
    RedisConfig,
    StorageConfig,
    WebhookConfig,
    WeChatConfig,
)
from bot.conversation.router import Router
from bot.services import Services
from bot.simulator import SimulatedResident
from bot.wechat.crypto import MessageCrypto
from bot.wechat.fake_api import FakeWeChatAPI
from bot.wechat.signature import url_signature
from tests.services import PG_DSN, REDIS_URL, pg_namespace, redis_prefix

TOKEN = "testToken2026"
APP_ID = "wx1234567890abcdef"
APP_SECRET = "test-secret-value"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ADMIN_TOKEN = "test-admin-token-0123456789"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "wechat_samples"


class FakeClock:
    """Time the test controls (idle expiry, token lifetimes); request signing stays real."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(
    data: Path,
    api_url: str,
    *,
    aes: bool,
    storage: StorageConfig | None = None,
    redis: RedisConfig | None = None,
    **webhook: Any,
) -> Config:
    return Config(
        wechat=WeChatConfig(
            app_id=APP_ID,
            app_secret=APP_SECRET,
            token=TOKEN,
            encoding_aes_key=AES_KEY if aes else "",
            api_base_url=api_url,
            api_timeout=2.0,
        ),
        storage=storage or StorageConfig(path=str(data)),
        redis=redis or RedisConfig(),
        admin=AdminConfig(api_token=ADMIN_TOKEN),
        webhook=replace(WebhookConfig(), **webhook),
        conversation=ConversationConfig(idle_minutes=10, lock_timeout=2.0),
    )


class Harness:
    """The real app served on loopback; restartable on the same data directory."""

    def __init__(
        self, config: Config, clock: FakeClock, router: Router[Services] | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.router = router
        self.server: TestServer | None = None
        self.session: aiohttp.ClientSession | None = None

    @property
    def aes(self) -> bool:
        return self.config.aes_enabled

    async def start(self) -> None:
        app = create_app(self.config, clock=self.clock, router=self.router)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        if self.session is None:
            self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        await self.stop()
        if self.session is not None:
            await self.session.close()

    @property
    def app(self) -> web.Application:
        assert self.server is not None
        return self.server.app

    def url(self, path: str = "/wechat") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def resident(
        self, openid: str = "o_resident_0001", *, aes: bool | None = None
    ) -> SimulatedResident:
        assert self.session is not None
        use_aes = self.aes if aes is None else aes
        crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID) if use_aes else None
        return SimulatedResident(
            self.session, self.url(), token=TOKEN, app_id=APP_ID, openid=openid, crypto=crypto
        )

    def signed_query(self, **extra: str) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), "20261121"
        query = {
            "signature": url_signature(TOKEN, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        query.update(extra)
        return query

    async def post_raw(self, body: bytes, query: dict[str, str]) -> tuple[int, str]:
        assert self.session is not None
        async with self.session.post(self.url(), params=query, data=body) as resp:
            return resp.status, await resp.text()

    async def get(self, path: str, **query: str) -> tuple[int, str]:
        assert self.session is not None
        async with self.session.get(self.url(path), params=query) as resp:
            return resp.status, await resp.text()

    async def admin(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        token: str | None = ADMIN_TOKEN,
        operator: str | None = None,
        **query: str,
    ) -> tuple[int, Any]:
        """Call ``/admin/api{path}`` as staff tools do; returns the status and parsed JSON."""
        assert self.session is not None
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if operator:
            headers["X-Operator"] = operator
        data = body if isinstance(body, bytes) else None
        payload = None if isinstance(body, bytes) or body is None else body
        async with self.session.request(
            method,
            self.url(f"/admin/api{path}"),
            params=query,
            json=payload,
            data=data,
            headers=headers,
        ) as resp:
            return resp.status, await resp.json()


@pytest_asyncio.fixture
async def running_fake() -> AsyncIterator[tuple[FakeWeChatAPI, str]]:
    api = FakeWeChatAPI(app_id=APP_ID, app_secret=APP_SECRET)
    url = await api.start()
    yield api, url
    await api.stop()


@pytest.fixture
def fake_api(running_fake: tuple[FakeWeChatAPI, str]) -> FakeWeChatAPI:
    """The local fake of the WeChat API; it records every call the bot makes."""
    return running_fake[0]


@pytest.fixture
def api_url(running_fake: tuple[FakeWeChatAPI, str]) -> str:
    return running_fake[1]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeWeChatAPI]:
    """A fake WeChat API on the test's clock (token expiry without waiting)."""
    async with FakeWeChatAPI(app_id=APP_ID, app_secret=APP_SECRET, clock=clock) as api:
        yield api


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _harness(config: Config, clock: FakeClock) -> AsyncIterator[Harness]:
    harness = Harness(config, clock)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


@asynccontextmanager
async def backend_settings(
    backend: str, data: Path
) -> AsyncIterator[tuple[StorageConfig, RedisConfig]]:
    """Store and coordination settings for one backend, on fresh PostgreSQL/Redis space."""
    if backend == "tinydb":
        yield StorageConfig(path=str(data)), RedisConfig()
        return
    async with pg_namespace() as namespace:
        storage = StorageConfig(backend="postgres", dsn=PG_DSN, pg_schema=namespace, pool_size=4)
        redis = (
            RedisConfig(url=REDIS_URL, prefix=redis_prefix())
            if "redis" in backend
            else RedisConfig()
        )
        yield storage, redis


# Every backend, and both message modes, without the whole cross product.
APP_VARIANTS = [
    ("tinydb", "plain"),
    ("tinydb", "aes"),
    ("postgres", "aes"),
    ("postgres+redis", "plain"),
]


@pytest_asyncio.fixture(params=APP_VARIANTS, ids=["-".join(v) for v in APP_VARIANTS])
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path, api_url: str, clock: FakeClock
) -> AsyncIterator[Harness]:
    """The app on each store (TinyDB, PostgreSQL, PostgreSQL + Redis), plaintext and AES."""
    backend, mode = request.param
    async with backend_settings(backend, tmp_path / "data") as (storage, redis):
        config = make_config(
            tmp_path / "data", api_url, aes=mode == "aes", storage=storage, redis=redis
        )
        async for h in _harness(config, clock):
            yield h


@pytest_asyncio.fixture
async def plain(tmp_path: Path, api_url: str, clock: FakeClock) -> AsyncIterator[Harness]:
    async for h in _harness(make_config(tmp_path / "data", api_url, aes=False), clock):
        yield h


@pytest_asyncio.fixture
async def safe(tmp_path: Path, api_url: str, clock: FakeClock) -> AsyncIterator[Harness]:
    async for h in _harness(make_config(tmp_path / "data", api_url, aes=True), clock):
        yield h
