"""Who may see which staff page: login, role and CSRF checks in one middleware.

Every handler under ``/admin/`` declares the roles it admits with :func:`allow`; a
route that declares none is refused (a forgotten check fails closed). Every form
post must carry the session's CSRF token. Domain errors become a page or a flash
message in Chinese, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot import keys
from bot.domain.accounts import ADMIN, GRID
from bot.domain.errors import DomainError, NotFound
from bot.errors import WeChatAPIError
from bot.web.render import (
    CSRF_FIELD,
    SESSION,
    SESSION_COOKIE,
    USER,
    flash,
    redirect,
    render_error,
)

log = logging.getLogger("bot.web")

PREFIX = "/admin"
STATIC = f"{PREFIX}/static/"
API = f"{PREFIX}/api/"
PUBLIC = "public"
ROLES_ATTR = "__admin_roles__"
STAFF = (ADMIN, GRID)
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

# Pages are not cached, not framed, and run only our own scripts.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https://mp.weixin.qq.com; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def allow(*roles: str) -> Callable[[H], H]:
    """Declare who may use a page: ``@allow(ADMIN)``, ``@allow(ADMIN, GRID)``, ``@allow(PUBLIC)``."""

    def mark(handler: H) -> H:
        setattr(handler, ROLES_ATTR, frozenset(roles))
        return handler

    return mark


def roles_of(handler: object) -> frozenset[str] | None:
    found = getattr(handler, ROLES_ATTR, None)
    return found if isinstance(found, frozenset) else None


def is_page(path: str) -> bool:
    return (path == PREFIX or path.startswith(PREFIX + "/")) and not path.startswith(API)


def same_site_path(target: str | None, default: str = f"{PREFIX}/") -> str:
    """``target`` if it is a path of our own admin pages, else ``default`` (no open redirect)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/"):
        return default
    if "\\" in target or target.startswith("//"):
        return default
    return parts.path + (f"?{parts.query}" if parts.query else "")


def back(request: web.Request) -> str:
    """Where to return after a refused form: the page it came from, if it is ours."""
    referer = request.headers.get("Referer", "")
    parts = urlsplit(referer)
    if parts.netloc and parts.netloc != request.host:
        return f"{PREFIX}/"
    return same_site_path(parts.path + (f"?{parts.query}" if parts.query else ""))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_page(request.path) or request.path.startswith(STATIC):
        return await handler(request)
    response = await _checked(request, handler)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    roles = roles_of(request.match_info.handler)
    if roles is not None and PUBLIC in roles:
        return await _run(request, handler)
    accounts = request.app[keys.ACCOUNTS]
    found = await accounts.session(request.cookies.get(SESSION_COOKIE, ""))
    if found is None:
        if request.method in _SAFE_METHODS:
            target = quote(request.path_qs, safe="/?=&")
            raise web.HTTPSeeOther(f"{PREFIX}/login?next={target}")
        log.warning("refused %s %s: not logged in", request.method, request.path)
        return await render_error(request, 401, "请先登录", "登录已过期或还没有登录，请重新登录。")
    user, session = found
    request[USER] = user
    request[SESSION] = session
    if request.match_info.http_exception is not None:
        status = request.match_info.http_exception.status
        return await render_error(request, status, "页面不存在", "没有这个页面，请从上方菜单进入。")
    if roles is None:
        log.error("page %s declares no roles; refused", request.path)
        return await render_error(request, 403, "没有权限", "这个页面没有设置访问权限。")
    if user.role not in roles:
        log.warning(
            "refused %s %s to %s (role %s)", request.method, request.path, user.name, user.role
        )
        return await render_error(
            request, 403, "没有权限", "您的账号没有权限使用这个页面。如需使用，请联系管理员。"
        )
    if request.method not in _SAFE_METHODS:
        form = await request.post()
        given = form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token", "")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode(), session.csrf.encode()
        ):
            log.warning(
                "refused %s %s by %s: missing or wrong CSRF token",
                request.method,
                request.path,
                user.name,
            )
            return await render_error(
                request, 403, "表单已过期", "这个表单已经过期，请返回刷新页面后再提交一次。"
            )
    return await _run(request, handler)


async def _run(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except NotFound as exc:
        # Still a 404 after a form (a report of another grid must not look any different
        # from one that does not exist), with a way back to the form.
        previous = back(request) if request.method not in _SAFE_METHODS else ""
        return await render_error(request, 404, "没有找到", str(exc), back=previous)
    except DomainError as exc:
        if request.method in _SAFE_METHODS:
            return await render_error(request, 400, "无法完成", str(exc))
        return flash(redirect(back(request)), "error", str(exc))
    except WeChatAPIError as exc:
        log.error("WeChat refused a staff action on %s: %s", request.path, exc)
        message = f"微信接口返回错误 {exc.errcode}，请稍后再试"
        if request.method in _SAFE_METHODS:
            return await render_error(request, 502, "微信接口出错", message)
        return flash(redirect(back(request)), "error", message)
    except Exception:
        # Staff see a plain page; the operator's log has the traceback.
        log.exception("staff page %s %s failed", request.method, request.path)
        return await render_error(
            request,
            500,
            "系统出错",
            "系统暂时出了点问题，请稍后再试；如果一直这样，请联系技术支持。",
        )
