"""Rendering staff pages: the shared layout context, flash messages, form fields.

Pages are Jinja2 templates (autoescaped) under ``bot/web/templates``. A handler
calls :func:`render` with its own context; the layout adds who is logged in, the
menu for their role, the CSRF token for forms and any flash message.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup, escape

from bot import keys
from bot.domain import timefmt
from bot.domain.accounts import ADMIN, GRID, ROLES
from bot.domain.errors import Invalid
from storage.accounts import Session, User

log = logging.getLogger("bot.web")

USER = web.RequestKey("admin_user", User)
SESSION = web.RequestKey("admin_session", Session)
SESSION_COOKIE = "gz_session"
FLASH_COOKIE = "gz_flash"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/admin"


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str
    roles: frozenset[str]


NAV = (
    NavItem("/admin/", "概览", frozenset({ADMIN})),
    NavItem("/admin/schedules", "定时任务", frozenset({ADMIN})),
    NavItem("/admin/activities", "志愿活动", frozenset({ADMIN})),
    NavItem("/admin/reports", "报事", frozenset({ADMIN, GRID})),
    NavItem("/admin/assemblies", "坝坝会", frozenset({ADMIN})),
    NavItem("/admin/points", "积分", frozenset({ADMIN})),
    NavItem("/admin/audit", "操作记录", frozenset({ADMIN})),
    NavItem("/admin/users", "账号", frozenset({ADMIN})),
)


def current_user(request: web.Request) -> User:
    """The logged-in staff member (the guard has checked the session before any page)."""
    return request[USER]


def actor(request: web.Request) -> str:
    """How the audit log and histories name the staff member: ``web:<login name>``."""
    return f"web:{request[USER].name}"


def tz(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[keys.CONFIG].scheduler.timezone)


def now(request: web.Request) -> float:
    return request.app[keys.SERVICES].clock()


async def form(request: web.Request) -> dict[str, str]:
    """The posted form's text fields, trimmed (files are not taken here)."""
    posted = await request.post()
    return {k: v.strip() for k, v in posted.items() if isinstance(v, str)}


def form_int(fields: Mapping[str, str], name: str, label: str) -> int:
    raw = fields.get(name, "")
    if not (raw.isascii() and raw.lstrip("-").isdigit()) or len(raw) > 9:
        raise Invalid(f"“{label}”必须填写整数")
    return int(raw)


def path_int(request: web.Request, name: str = "number") -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise web.HTTPNotFound()
    return int(raw)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def flash(response: web.StreamResponse, kind: str, text: str) -> web.StreamResponse:
    """Show ``text`` once on the next page (``kind``: ``ok`` or ``error``)."""
    payload = json.dumps([kind, text[:500]], ensure_ascii=False).encode()
    response.set_cookie(
        FLASH_COOKIE,
        base64.urlsafe_b64encode(payload).decode(),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        max_age=120,
    )
    return response


def done(location: str, text: str) -> web.StreamResponse:
    """The usual answer to a successful form: back to a page that says what happened."""
    return flash(redirect(location), "ok", text)


def _read_flash(request: web.Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        kind, text = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, binascii.Error, TypeError):
        return None
    if kind not in ("ok", "error") or not isinstance(text, str):
        return None
    return kind, text


def local(at: float | datetime | None, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if at is None or at == 0:
        return ""
    moment = at if isinstance(at, datetime) else timefmt.local(at, zone)
    return moment.astimezone(zone).strftime(fmt)


async def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    section: str = "",
) -> web.Response:
    user = request.get(USER)
    session = request.get(SESSION)
    message = _read_flash(request)
    zone = tz(request)
    base = {
        "user": user,
        "role_name": ROLES.get(user.role, user.role) if user else "",
        "nav": [n for n in NAV if user and user.role in n.roles],
        "section": section,
        "csrf_token": session.csrf if session else "",
        "csrf_field": csrf_field(session.csrf) if session else Markup(""),
        "flash": message,
        "tz": zone,
        "now": now(request),
    }
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    if message is not None:
        response.del_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    return response


def csrf_field(token: str) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token))


async def render_error(
    request: web.Request, status: int, title: str, text: str, *, back: str = ""
) -> web.Response:
    """An error page; ``back`` links to the page a refused form came from."""
    context = {"title": title, "text": text, "back": back}
    return await render(request, "error.html", context, status=status)
