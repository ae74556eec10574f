"""Staff pages under test: accounts, a cookie-keeping HTTP client, and headless Chromium.

The browser is Debian's ``chromium`` driven by Playwright (never a downloaded browser).
Screenshots go to ``artifacts/screenshots/`` (or ``$GONGZHI_ARTIFACTS``), which git ignores.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot import keys
from tests.conftest import Harness

ADMIN_NAME = "wangfang"
ADMIN_PASSWORD = "shequ-admin-2026"
GRID_NAME = "lijun"
GRID_PASSWORD = "wangge-2026-lijun"
GRID_OPENID = "o_grid_worker_li"
OTHER_GRID_OPENID = "o_grid_worker_zhao"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("GONGZHI_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts")
)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Staff:
    """One staff member's browser-less visit: cookies, CSRF tokens, form posts."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **query: str) -> tuple[int, str]:
        async with self.session.get(
            self.harness.url(path), params=query, allow_redirects=False
        ) as resp:
            text = await resp.text()
            if resp.status in (301, 302, 303, 307, 308):
                return resp.status, resp.headers["Location"]
            if found := _CSRF.search(text):
                self.csrf = found.group(1)
            return resp.status, text

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> tuple[int, str]:
        """Post a form; a redirect answers ``(status, location)``, a page ``(status, html)``."""
        fields = dict(data or {})
        if csrf:
            fields.setdefault("csrf_token", self.csrf)
        async with self.session.post(
            self.harness.url(path), data=fields, allow_redirects=False
        ) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                return resp.status, resp.headers["Location"]
            return resp.status, await resp.text()

    async def follow(self, path: str) -> str:
        """A page as the browser shows it after a redirect (flash message included)."""
        status, text = await self.get(path)
        assert status == 200, (status, text[:300])
        return text

    async def log_in(self, name: str, password: str) -> tuple[int, str]:
        await self.get("/admin/login")
        return await self.post(
            "/admin/login", {"username": name, "password": password, "next": "/admin/"}
        )


async def create_accounts(harness: Harness) -> None:
    accounts = harness.app[keys.ACCOUNTS]
    await accounts.create_user(ADMIN_NAME, ADMIN_PASSWORD, "admin", actor="test", display="王芳")
    await accounts.create_user(
        GRID_NAME, GRID_PASSWORD, "grid", actor="test", display="李军", openid=GRID_OPENID
    )


@pytest_asyncio.fixture
async def site(plain: Harness) -> Harness:
    """The app on TinyDB with one admin and one grid worker account."""
    await create_accounts(plain)
    return plain


@pytest_asyncio.fixture
async def anonymous(site: Harness) -> AsyncIterator[Staff]:
    visitor = Staff(site)
    yield visitor
    await visitor.close()


async def _logged_in(site: Harness, name: str, password: str, home: str) -> Staff:
    """A staff member past the login form, on their home page (which gives the form token)."""
    staff = Staff(site)
    status, where = await staff.log_in(name, password)
    assert status == 303, (status, where[:300])
    await staff.get(home)
    return staff


@pytest_asyncio.fixture
async def admin(site: Harness) -> AsyncIterator[Staff]:
    staff = await _logged_in(site, ADMIN_NAME, ADMIN_PASSWORD, "/admin/")
    yield staff
    await staff.close()


@pytest_asyncio.fixture
async def grid_worker(site: Harness) -> AsyncIterator[Staff]:
    staff = await _logged_in(site, GRID_NAME, GRID_PASSWORD, "/admin/reports")
    yield staff
    await staff.close()


# --- the browser --------------------------------------------------------------------


def _need_browser() -> None:
    if CHROMIUM.exists():
        return
    message = "Debian chromium is not installed (.ci/run installs it)"
    if os.environ.get("GONGZHI_REQUIRE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    _need_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture
async def page(browser: Any, site: Harness) -> AsyncIterator[Any]:
    """A fresh browser tab (own cookies) pointed at the site, Chinese locale."""
    context = await browser.new_context(
        base_url=site.url("/"), locale="zh-CN", viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(10_000)
    tab = await context.new_page()
    yield tab
    await context.close()


async def browser_log_in(page: Any, name: str = ADMIN_NAME, password: str = ADMIN_PASSWORD) -> None:
    await page.goto("/admin/login")
    await page.get_by_label("用户名").fill(name)
    await page.get_by_label("密码").fill(password)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_load_state()


async def screenshot(page: Any, name: str) -> Path:
    """Keep a full-page screenshot as a test artifact (not committed)."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
