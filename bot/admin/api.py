"""``/admin/api/``: the JSON API staff tools use, behind a bearer token.

Handlers here only translate HTTP to domain calls and back; the rules live in
:mod:`bot.domain`. Errors are JSON ``{"error": "..."}`` with a Chinese message
staff can act on.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

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


def path_number(request: web.Request, what: str) -> int:
    """The ``{number}`` of the path; an unparseable one is simply not found."""
    raw = request.match_info["number"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise NotFound(f"没有编号为 {raw[:16]} 的{what}")
    return int(raw)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A cell as staff read it in Excel: 是/否, empty for nothing, and resident text that
    starts like a formula made inert."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_response(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, filename: str, title: str
) -> web.Response:
    """A CSV download for Excel: UTF-8 with a BOM (else Chinese shows as mojibake), an ASCII
    ``filename`` and a Chinese ``title`` for browsers that read ``filename*``."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(csv_cell(v) for v in row)
    titled = quote(title, safe="")
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f"attachment; filename=\"{filename}\"; filename*=UTF-8''{titled}"
        },
    )


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
    number = path_number(request, "留言")
    item = await request.app[keys.SERVICES].feedback.get(number)
    if item is None:
        raise NotFound(f"没有编号为 {number} 的留言")
    return web.json_response(asdict(item))


async def reply_feedback(request: web.Request) -> web.Response:
    number = path_number(request, "留言")
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
