"""Logging in to the staff pages: passwords, lockout, session expiry, logging out."""

from __future__ import annotations

from typing import Any

from bot import keys
from tests.conftest import Harness
from tests.web.conftest import (
    ADMIN_NAME,
    ADMIN_PASSWORD,
    GRID_NAME,
    GRID_PASSWORD,
    Staff,
    browser_log_in,
    screenshot,
)


async def test_the_right_password_opens_the_pages_and_a_wrong_one_does_not(
    anonymous: Staff,
) -> None:
    status, page = await anonymous.log_in(ADMIN_NAME, "not-the-password")
    assert status == 401
    assert "用户名或密码不对" in page
    assert "再错 4 次账号将被锁定" in page
    assert (await anonymous.get("/admin/"))[0] == 303

    assert await anonymous.log_in(ADMIN_NAME, ADMIN_PASSWORD) == (303, "/admin/")
    status, page = await anonymous.get("/admin/")
    assert status == 200
    assert "王芳（管理员）" in page


async def test_an_unknown_name_gets_the_same_answer_as_a_wrong_password(anonymous: Staff) -> None:
    status, page = await anonymous.log_in("nobody", ADMIN_PASSWORD)
    assert status == 401
    assert "用户名或密码不对" in page


async def test_five_wrong_passwords_lock_the_account_for_a_while(
    anonymous: Staff, site: Harness
) -> None:
    for _ in range(4):
        assert (await anonymous.log_in(ADMIN_NAME, "wrong-password-1"))[0] == 401
    status, page = await anonymous.log_in(ADMIN_NAME, "wrong-password-1")
    assert status == 401
    assert "账号已锁定，请 15 分钟后再试" in page
    # Locked: even the right password is refused until the lock ends.
    status, page = await anonymous.log_in(ADMIN_NAME, ADMIN_PASSWORD)
    assert status == 401
    assert "账号已锁定" in page
    entries = await site.app[keys.AUDIT].page(after=None, limit=50)
    assert [e.action for e in entries if e.target == f"user/{ADMIN_NAME}"] == [
        "user.create",
        "user.locked",
    ]
    site.clock.advance(15 * 60 + 1)
    assert await anonymous.log_in(ADMIN_NAME, ADMIN_PASSWORD) == (303, "/admin/")


async def test_a_lock_does_not_touch_other_accounts(anonymous: Staff, site: Harness) -> None:
    for _ in range(5):
        await anonymous.log_in(ADMIN_NAME, "wrong-password-1")
    other = Staff(site)
    try:
        assert (await other.log_in(GRID_NAME, GRID_PASSWORD))[0] == 303
    finally:
        await other.close()


async def test_a_session_ends_after_an_idle_hour_and_after_twelve_hours(
    admin: Staff, site: Harness
) -> None:
    site.clock.advance(50 * 60)
    assert (await admin.get("/admin/"))[0] == 200
    site.clock.advance(50 * 60)  # seen 50 minutes ago: still within the idle hour
    assert (await admin.get("/admin/"))[0] == 200
    site.clock.advance(61 * 60)
    status, where = await admin.get("/admin/schedules")
    assert status == 303
    assert where == "/admin/login?next=/admin/schedules"

    assert (await admin.log_in(ADMIN_NAME, ADMIN_PASSWORD))[0] == 303
    seen = []
    for _ in range(13):
        site.clock.advance(59 * 60)
        seen.append((await admin.get("/admin/"))[0])
    # Never idle, yet the 13th view (past 12 hours) must log in again.
    assert seen == [200] * 12 + [303]


async def test_logging_out_ends_the_session_for_good(admin: Staff) -> None:
    assert await admin.post("/admin/logout") == (303, "/admin/login")
    assert "已退出登录" in await admin.follow("/admin/login")
    assert (await admin.get("/admin/"))[0] == 303


async def test_after_login_staff_return_to_the_page_they_asked_for_but_never_off_site(
    anonymous: Staff,
) -> None:
    status, where = await anonymous.get("/admin/audit", action="user.create")
    assert (status, where) == (303, "/admin/login?next=/admin/audit?action=user.create")
    await anonymous.get("/admin/login", next="/admin/audit?action=user.create")
    answer = await anonymous.post(
        "/admin/login",
        {"username": ADMIN_NAME, "password": ADMIN_PASSWORD, "next": "/admin/audit?action=x"},
    )
    assert answer == (303, "/admin/audit?action=x")
    for target in ("https://evil.example/admin/", "//evil.example/admin/", "/wechat"):
        await anonymous.post("/admin/logout")
        await anonymous.get("/admin/login")
        answer = await anonymous.post(
            "/admin/login", {"username": ADMIN_NAME, "password": ADMIN_PASSWORD, "next": target}
        )
        assert answer == (303, "/admin/"), target


async def test_a_login_post_without_the_forms_token_is_refused(anonymous: Staff) -> None:
    await anonymous.get("/admin/login")
    status, page = await anonymous.post(
        "/admin/login", {"username": ADMIN_NAME, "password": ADMIN_PASSWORD}, csrf=False
    )
    assert status == 403
    assert "登录页面已过期" in page
    assert (await anonymous.get("/admin/"))[0] == 303


async def test_a_grid_worker_lands_on_the_reports(anonymous: Staff) -> None:
    await anonymous.get("/admin/login")
    answer = await anonymous.post(
        "/admin/login", {"username": GRID_NAME, "password": GRID_PASSWORD}
    )
    assert answer == (303, "/admin/reports")
    assert await anonymous.get("/admin/") == (303, "/admin/reports")


async def test_the_stored_session_is_not_the_cookie(admin: Staff, site: Harness) -> None:
    cookie = next(c for c in admin.session.cookie_jar if c.key == "gz_session")
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    stored = await site.app[keys.STORE].collection("sessions").scan()
    assert len(stored) == 1
    assert cookie.value not in repr(stored)


async def test_logging_in_with_a_real_browser(page: Any) -> None:
    await browser_log_in(page)
    await page.get_by_role("heading", name="概览").wait_for()
    assert await page.get_by_role("navigation", name="主菜单").get_by_role("link").count() == 8
    await screenshot(page, "after-login")


async def test_ended_sessions_are_deleted_by_the_hourly_upkeep(admin: Staff, site: Harness) -> None:
    sessions = site.app[keys.STORE].collection("sessions")
    other = Staff(site)
    try:
        await other.log_in(GRID_NAME, GRID_PASSWORD)
        assert await sessions.size() == 2
        site.clock.advance(30 * 60)
        await admin.get("/admin/")  # keeps the admin's session alive
        site.clock.advance(31 * 60)
        assert await site.app[keys.ACCOUNTS].purge_expired() == 1
        assert [r.data["user"] for r in await sessions.scan()] == [ADMIN_NAME]
    finally:
        await other.close()
