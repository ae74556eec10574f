"""Every staff page checks the login, the role and (for forms) the CSRF token.

The walk covers every route under ``/admin/`` the app has, so a page added later is
checked without a test of its own: a route that forgets ``allow()`` is refused.
"""

from __future__ import annotations

import re

from aiohttp import web

from bot.web.guard import API, PUBLIC, STATIC, is_page, roles_of
from tests.conftest import Harness
from tests.web.conftest import Staff

_PARAM = re.compile(r"\{([^}:]+)(:[^}]+)?\}")
# Pages a grid worker may use: their reports, the home page (it sends them to the
# reports), logging out. Anything else that admits them is a leak.
GRID_WORKER_PREFIXES = ("/admin/reports",)
GRID_WORKER_PAGES = {("GET", "/admin/"), ("POST", "/admin/logout")}


def _pages(app: web.Application) -> list[tuple[str, str, frozenset[str] | None]]:
    found = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or not is_page(path) or path.startswith((STATIC, API)):
            continue
        if path.rstrip("/") + "/" == STATIC:
            continue
        found.append((route.method, path, roles_of(route.handler)))
    return found


def _concrete(path: str) -> str:
    # Numbers for numbered things, a real schedule id for schedules, a word otherwise:
    # the guard must answer before any handler looks the thing up.
    def sample(m: re.Match[str]) -> str:
        name = m.group(1)
        return {"id": "assembly-call", "number": "1", "i": "0"}.get(name, "sample")

    return _PARAM.sub(sample, path)


def _protected(site: Harness) -> list[tuple[str, str, frozenset[str]]]:
    pages = []
    for method, path, roles in _pages(site.app):
        if roles is not None and PUBLIC in roles:
            continue
        pages.append((method, _concrete(path), roles or frozenset()))
    return pages


async def test_every_staff_page_declares_who_may_use_it(site: Harness) -> None:
    undeclared = [(m, p) for m, p, roles in _pages(site.app) if not roles]
    assert undeclared == []
    public = {(m, p) for m, p, roles in _pages(site.app) if roles and PUBLIC in roles}
    assert public == {("GET", "/admin/login"), ("POST", "/admin/login"), ("GET", "/admin")}


async def test_anonymous_visitors_are_sent_to_log_in_and_their_posts_refused(
    site: Harness, anonymous: Staff
) -> None:
    pages = _protected(site)
    assert len(pages) > 10
    for method, path, _ in pages:
        if method == "GET":
            status, where = await anonymous.get(path)
            assert status == 303, path
            assert where.startswith("/admin/login?next=/admin/"), (path, where)
        else:
            status, text = await anonymous.post(path, {"csrf_token": "guess"})
            assert status == 401, (method, path)
            assert "请先登录" in text


async def test_grid_workers_are_refused_every_page_but_their_reports(
    site: Harness, grid_worker: Staff
) -> None:
    allowed = set()
    for method, path, roles in _protected(site):
        if "grid" in roles:
            allowed.add((method, path))
            continue
        if method == "GET":
            status, text = await grid_worker.get(path)
        else:
            status, text = await grid_worker.post(path, {"name": "x", "amount": "100"})
        assert status == 403, (method, path, status)
        assert "没有权限" in text
    leaks = {
        (m, p)
        for m, p in allowed
        if (m, p) not in GRID_WORKER_PAGES and not p.startswith(GRID_WORKER_PREFIXES)
    }
    assert leaks == set()


async def test_every_form_post_without_the_sessions_token_is_refused(
    site: Harness, admin: Staff
) -> None:
    posts = [p for m, p, _ in _protected(site) if m != "GET"]
    assert len(posts) > 5
    for path in posts:
        for fields in ({}, {"csrf_token": "not-the-token"}):
            status, text = await admin.post(path, fields, csrf=False)
            assert status == 403, (path, fields)
            assert "表单已过期" in text
    # The session is still good: the refusals changed nothing.
    assert (await admin.get("/admin/"))[0] == 200


async def test_an_unknown_admin_page_is_a_page_not_a_traceback(
    admin: Staff, anonymous: Staff
) -> None:
    status, text = await admin.get("/admin/no-such-page")
    assert status == 404
    assert "页面不存在" in text
    assert (await anonymous.get("/admin/no-such-page"))[0] == 303


async def test_pages_forbid_framing_and_foreign_scripts(admin: Staff) -> None:
    async with admin.session.get(admin.harness.url("/admin/")) as resp:
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"


async def test_a_form_about_something_missing_answers_not_found_with_a_way_back(
    admin: Staff,
) -> None:
    await admin.get("/admin/points/catalogue")
    status, text = await admin.post("/admin/points/vouchers/confirm", {"code": "NOSUCH12"})
    assert status == 404
    assert "没有找到" in text
    assert "返回上一页" in text
