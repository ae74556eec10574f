"""``/admin/users``: admins manage staff accounts without a shell (create, unlock, reset).

The rules (name and password checks, hashing, audit) are the account desk's, as for
``python -m bot admin create-user``.
"""

from __future__ import annotations

from aiohttp import web

from bot import keys
from bot.domain.accounts import ADMIN, MIN_PASSWORD, ROLES
from bot.domain.errors import Invalid
from bot.web.guard import PREFIX, allow
from bot.web.render import actor, done, form, render

routes = web.RouteTableDef()
SECTION = f"{PREFIX}/users"


def _new_password(fields: dict[str, str]) -> str:
    password = fields.get("password", "")
    if password != fields.get("password2", ""):
        raise Invalid("两次输入的密码不一样")
    return password


@routes.get(SECTION)
@allow(ADMIN)
async def users(request: web.Request) -> web.Response:
    found = sorted(await request.app[keys.ACCOUNTS].users(), key=lambda u: u.name)
    return await render(
        request,
        "users/list.html",
        {"users": found, "roles": ROLES, "min_password": MIN_PASSWORD},
        section=SECTION,
    )


@routes.post(SECTION)
@allow(ADMIN)
async def create(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    user = await request.app[keys.ACCOUNTS].create_user(
        fields.get("name", ""),
        _new_password(fields),
        fields.get("role", ""),
        actor=actor(request),
        display=fields.get("display", ""),
        openid=fields.get("openid", ""),
    )
    return done(SECTION, f"已创建账号 {user.name}（{ROLES[user.role]}）")


@routes.post(f"{SECTION}/{{name}}/unlock")
@allow(ADMIN)
async def unlock(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    await request.app[keys.ACCOUNTS].unlock(name, actor=actor(request))
    return done(SECTION, f"已解锁账号 {name}")


@routes.post(f"{SECTION}/{{name}}/password")
@allow(ADMIN)
async def set_password(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    fields = await form(request)
    await request.app[keys.ACCOUNTS].set_password(name, _new_password(fields), actor=actor(request))
    return done(SECTION, f"已为 {name} 设置新密码")
