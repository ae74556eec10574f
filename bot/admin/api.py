"""``/admin/api/``: the JSON API staff tools use, behind a bearer token.

Handlers here only translate HTTP to domain calls and back; the rules live in
:mod:`bot.domain`. Errors are JSON ``{"error": "..."}`` with a Chinese message
staff can act on.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web

from bot import keys
from bot.admin.openapi import DOCUMENT
from bot.domain.errors import Invalid, NotFound, Refused
from bot.errors import WeChatAPIError

log = logging.getLogger("bot.admin")

PREFIX = "/admin/api"
MAX_PAGE = 200
_PUBLIC = {f"{PREFIX}/openapi.json"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on every admin API route, and domain errors as JSON statuses."""
    if not request.path.startswith(PREFIX + "/") or request.path in _PUBLIC:
        return await handler(request)
    expected = request.app[keys.CONFIG].admin.api_token
    if not expected:
        return _error(503, "admin API disabled: set [admin] api_token")
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        log.warning(
            "refused admin API call %s %s from %s", request.method, request.path, request.remote
        )
        return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
    try:
        return await handler(request)
    except NotFound as exc:
        return _error(404, str(exc))
    except Invalid as exc:
        return _error(400, str(exc))
    except Refused as exc:
        return _error(409, str(exc))
    except WeChatAPIError as exc:
        log.error("WeChat refused an admin action: %s", exc)
        return _error(502, f"微信接口返回错误 {exc.errcode}，请稍后再试")


def operator_name(request: web.Request) -> str:
    # One shared token does not say who is calling; staff tools send their user's name.
    name = request.headers.get("X-Operator", "").strip()
    return name[:64] if name else "api"


def query_int(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise Invalid(f"参数 {name} 必须是数字")
    return int(raw)


def page_limit(request: web.Request) -> int:
    return min(query_int(request, "limit", 50) or 50, MAX_PAGE)


def _number(request: web.Request) -> int:
    raw = request.match_info["number"]
    if not (raw.isascii() and raw.isdigit()):
        raise NotFound(f"没有编号为 {raw[:16]} 的留言")
    return int(raw)


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("请求体必须是 JSON") from exc
    if not isinstance(data, dict):
        raise Invalid("请求体必须是 JSON 对象")
    return data


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


async def list_feedback(request: web.Request) -> web.Response:
    limit = page_limit(request)
    items = await request.app[keys.SERVICES].feedback.page(
        after=query_int(request, "after", None), limit=limit
    )
    next_after = items[-1].number if len(items) == limit else None
    return web.json_response({"items": [asdict(i) for i in items], "next": next_after})


async def get_feedback(request: web.Request) -> web.Response:
    number = _number(request)
    item = await request.app[keys.SERVICES].feedback.get(number)
    if item is None:
        raise NotFound(f"没有编号为 {number} 的留言")
    return web.json_response(asdict(item))


async def reply_feedback(request: web.Request) -> web.Response:
    number = _number(request)
    text = (await json_body(request)).get("text")
    if not isinstance(text, str):
        raise Invalid("需要字段 text（回复内容）")
    saved = await request.app[keys.FEEDBACK_DESK].reply(number, text, actor=operator_name(request))
    return web.json_response(asdict(saved), status=201)


async def list_audit(request: web.Request) -> web.Response:
    limit = page_limit(request)
    entries = await request.app[keys.AUDIT].page(after=request.query.get("after"), limit=limit)
    next_after = entries[-1].id if len(entries) == limit else None
    return web.json_response({"items": [asdict(e) for e in entries], "next": next_after})


def setup(app: web.Application) -> None:
    # Imported here: those routes reuse this module's helpers, so a top-level import
    # would be circular.
    from bot.admin import assembly_routes, report_routes, schedule_routes, volunteer_routes

    app.middlewares.append(guard)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/feedback", list_feedback)
    app.router.add_get(f"{PREFIX}/feedback/{{number}}", get_feedback)
    app.router.add_post(f"{PREFIX}/feedback/{{number}}/replies", reply_feedback)
    app.router.add_get(f"{PREFIX}/audit", list_audit)
    volunteer_routes.setup(app)
    report_routes.setup(app)
    assembly_routes.setup(app)
    schedule_routes.setup(app)
