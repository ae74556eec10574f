"""Logging in and out of the staff pages."""

from __future__ import annotations

import hmac
import logging
import secrets

from aiohttp import web

from bot import keys
from bot.domain.accounts import GRID, LoginRefused
from bot.web.guard import PREFIX, PUBLIC, STAFF, allow, same_site_path
from bot.web.render import (
    COOKIE_PATH,
    CSRF_FIELD,
    SESSION_COOKIE,
    current_user,
    flash,
    form,
    redirect,
    render,
)

log = logging.getLogger("bot.web")

routes = web.RouteTableDef()

# The login form has no session yet: its CSRF token is a double-submit cookie.
LOGIN_CSRF_COOKIE = "gz_login_csrf"


@routes.get(f"{PREFIX}/login")
@allow(PUBLIC)
async def login_form(request: web.Request) -> web.Response:
    return await _show_login(request, "")


async def _show_login(
    request: web.Request, error: str, status: int = 200, name: str = ""
) -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = await render(
        request,
        "login.html",
        {
            "error": error,
            "login_csrf": token,
            "next": same_site_path(request.query.get("next")),
            "username": name,
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.app[keys.CONFIG].admin.cookie_secure,
    )
    return response


@routes.post(f"{PREFIX}/login")
@allow(PUBLIC)
async def login(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    given = fields.get(CSRF_FIELD, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
        log.warning("login form from %s without its CSRF token", request.remote)
        return await _show_login(request, "登录页面已过期，请再输入一次。", status=403)
    name = fields.get("username", "")
    try:
        signed_in = await request.app[keys.ACCOUNTS].log_in(name, fields.get("password", ""))
    except LoginRefused as exc:
        return await _show_login(request, str(exc), status=401, name=name[:32])
    home = f"{PREFIX}/reports" if signed_in.user.role == GRID else f"{PREFIX}/"
    response = redirect(same_site_path(fields.get("next"), home))
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.token,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=request.app[keys.CONFIG].admin.cookie_secure,
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return response


@routes.post(f"{PREFIX}/logout")
@allow(*STAFF)
async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[keys.ACCOUNTS].log_out(request.cookies.get(SESSION_COOKIE, ""))
    log.info("%s logged out", current_user(request).name)
    response = redirect(f"{PREFIX}/login")
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return flash(response, "ok", "已退出登录")
