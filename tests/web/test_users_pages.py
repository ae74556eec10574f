"""Admins manage staff accounts in the browser: create, unlock, reset a password."""

from __future__ import annotations

from bot import keys
from tests.conftest import Harness
from tests.web.conftest import ADMIN_NAME, GRID_NAME, GRID_PASSWORD, Staff


async def test_an_admin_creates_a_grid_worker_who_can_then_log_in(
    site: Harness, admin: Staff
) -> None:
    await admin.get("/admin/users")
    fields = {
        "name": "zhaolei",
        "display": "赵磊",
        "role": "grid",
        "openid": "o_grid_worker_zhao",
        "password": "zhaolei-2026-pass",
        "password2": "zhaolei-2026-pass",
    }
    assert await admin.post("/admin/users", fields) == (303, "/admin/users")
    page = await admin.follow("/admin/users")
    assert "已创建账号 zhaolei（网格员）" in page
    assert "赵磊" in page
    newcomer = Staff(site)
    try:
        assert await newcomer.log_in("zhaolei", "zhaolei-2026-pass") == (303, "/admin/")
        assert await newcomer.get("/admin/") == (303, "/admin/reports")
    finally:
        await newcomer.close()
    entries = await site.app[keys.AUDIT].page(after=None, limit=50)
    assert ("web:" + ADMIN_NAME, "user.create", "user/zhaolei") in {
        (e.actor, e.action, e.target) for e in entries
    }


async def test_mistyped_or_short_passwords_create_nothing(site: Harness, admin: Staff) -> None:
    await admin.get("/admin/users")
    base = {"name": "sunli", "role": "admin", "openid": ""}
    await admin.post("/admin/users", {**base, "password": "long-enough-1", "password2": "other-1"})
    assert "两次输入的密码不一样" in await admin.follow("/admin/users")
    await admin.post("/admin/users", {**base, "password": "short", "password2": "short"})
    assert "密码至少 10 位" in await admin.follow("/admin/users")
    assert await site.app[keys.ACCOUNTS].user("sunli") is None


async def test_an_admin_unlocks_a_locked_worker_and_resets_the_password(
    site: Harness, admin: Staff, anonymous: Staff
) -> None:
    for _ in range(5):
        await anonymous.log_in(GRID_NAME, "wrong-password-9")
    page = await admin.follow("/admin/users")
    assert "已锁定至" in page
    await admin.post(f"/admin/users/{GRID_NAME}/unlock")
    assert f"已解锁账号 {GRID_NAME}" in await admin.follow("/admin/users")
    assert (await anonymous.log_in(GRID_NAME, GRID_PASSWORD))[0] == 303

    new = {"password": "brand-new-pass-1", "password2": "brand-new-pass-1"}
    assert (await admin.post(f"/admin/users/{GRID_NAME}/password", new))[0] == 303
    assert (await anonymous.log_in(GRID_NAME, GRID_PASSWORD))[0] == 401
    assert (await anonymous.log_in(GRID_NAME, "brand-new-pass-1"))[0] == 303
