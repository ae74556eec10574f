"""``/admin/api/``: volunteer activities, the points ledger, the catalogue and redemptions.

Handlers translate HTTP to :class:`~bot.domain.volunteers.VolunteerDesk` and
:class:`~bot.domain.points.PointsDesk` calls and back; the rules (and the audit log
entry of every change) live there. Times go out as ISO 8601 in the community's
timezone, as staff type them.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot import keys
from bot.admin.api import (
    PREFIX,
    csv_response,
    json_body,
    operator_name,
    page_limit,
    path_number,
    query_int,
)
from bot.domain import timefmt
from bot.domain.errors import Invalid
from bot.domain.points import POINTS, PointsDesk, StockedItem, ranked
from bot.domain.volunteers import VolunteerDesk
from storage.activities import FAILED, ISSUED, PENDING, USED, Activity, Redemption
from storage.ledger import Entry

REDEMPTION_STATES = (ISSUED, USED, FAILED, PENDING)
MAX_IDEMPOTENCY_KEY = 100
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Column order and the headers staff see in the attendance export.
ATTENDANCE_COLUMNS = (
    ("openid", "openid"),
    ("status", "状态"),
    ("checked_in", "已签到"),
    ("checked_in_at", "签到时间"),
    ("points", "积分"),
)


def _volunteers(request: web.Request) -> VolunteerDesk:
    return request.app[keys.SERVICES].volunteers


def _points(request: web.Request) -> PointsDesk:
    return request.app[keys.SERVICES].points


def _iso(at: float | None, tz: ZoneInfo) -> str | None:
    return None if at is None else timefmt.iso(at, tz)


def _unchecked(body: dict[str, Any], name: str) -> Any:
    """``body[name]`` (None if absent) as sent: the desk checks its type and range."""
    return body.get(name)


def _optional(body: dict[str, Any], name: str, kind: type, label: str) -> Any:
    """``body[name]`` if present and of JSON type ``kind`` (None if absent)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Invalid(f"{name} 必须是{label}")
    return value


def _idempotency_key(request: web.Request, body: dict[str, Any]) -> str | None:
    """The body's ``key`` or the ``Idempotency-Key`` header: a retried POST then counts once."""
    key = body.get("key", request.headers.get(IDEMPOTENCY_HEADER))
    if key is not None and (
        not isinstance(key, str) or not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY
    ):
        raise Invalid(f"key（或 {IDEMPOTENCY_HEADER}）必须是1到{MAX_IDEMPOTENCY_KEY}个字符")
    return key


# --- views --------------------------------------------------------------------------


def _activity(a: Activity, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "number": a.number,
        "title": a.title,
        "place": a.place,
        "description": a.description,
        "starts_at": timefmt.iso(a.starts_at, tz),
        "ends_at": timefmt.iso(a.ends_at, tz),
        "capacity": a.capacity,
        "points": a.points,
        "remind_before_hours": a.remind_before / 3600,
        "status": a.status,
        "cancel_reason": a.cancel_reason,
        "signed_up": len(a.members),
        "waitlist": len(a.waitlist),
        "checked_in": len(a.checked_in),
        "places_left": a.places_left,
        "reminded_at": _iso(a.reminded_at, tz),
        "created_at": timefmt.iso(a.created_at, tz),
        "created_by": a.created_by,
        "qr": None
        if a.qr is None
        else {
            "ticket": a.qr.ticket,
            "url": a.qr.url,
            "scene": a.qr.scene,
            "expires_at": _iso(a.qr.expires_at, tz),
        },
    }


def _activity_detail(a: Activity, tz: ZoneInfo) -> dict[str, Any]:
    return {
        **_activity(a, tz),
        "roster": {
            "members": list(a.members),
            "waitlist": list(a.waitlist),
            "checked_in": {openid: timefmt.iso(at, tz) for openid, at in a.checked_in.items()},
        },
    }


def _entry(e: Entry, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "amount": e.amount,
        "balance": e.balance,
        "kind": e.kind,
        "reason": e.reason,
        "by": e.by,
        "at": timefmt.iso(e.at, tz),
        "ref": e.ref,
    }


def _item(s: StockedItem, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "number": s.item.number,
        "name": s.item.name,
        "cost": s.item.cost,
        "active": s.item.active,
        "stock": s.stock,
        "created_at": timefmt.iso(s.item.created_at, tz),
    }


def _redemption(r: Redemption, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "code": r.code,
        "openid": r.openid,
        "item": r.item,
        "name": r.name,
        "cost": r.cost,
        "state": r.state,
        "note": r.note,
        "confirmed_by": r.confirmed_by,
        "created_at": timefmt.iso(r.created_at, tz),
        "updated_at": timefmt.iso(r.updated_at, tz),
    }


# --- activities ---------------------------------------------------------------------


async def create_activity(request: web.Request) -> web.Response:
    desk = _volunteers(request)
    body = await json_body(request)
    activity = await desk.create(body, actor=operator_name(request))
    return web.json_response(_activity_detail(activity, desk.tz), status=201)


async def list_activities(request: web.Request) -> web.Response:
    desk = _volunteers(request)
    raw = request.query.get("include_past", "true").lower()
    if raw not in ("true", "false", "1", "0"):
        raise Invalid("参数 include_past 必须是 true 或 false")
    activities = await desk.all(include_past=raw in ("true", "1"))
    return web.json_response({"items": [_activity(a, desk.tz) for a in activities]})


async def get_activity(request: web.Request) -> web.Response:
    desk = _volunteers(request)
    activity = await desk.get(path_number(request, "活动"))
    return web.json_response(_activity_detail(activity, desk.tz))


async def edit_activity(request: web.Request) -> web.Response:
    desk = _volunteers(request)
    number = path_number(request, "活动")
    body = await json_body(request)
    activity = await desk.edit(number, body, actor=operator_name(request))
    return web.json_response(_activity_detail(activity, desk.tz))


async def cancel_activity(request: web.Request) -> web.Response:
    desk = _volunteers(request)
    number = path_number(request, "活动")
    reason = (await json_body(request)).get("reason", "")
    if not isinstance(reason, str):
        raise Invalid("reason 必须是文字")
    activity = await desk.cancel(number, reason, actor=operator_name(request))
    return web.json_response(_activity_detail(activity, desk.tz))


async def attendance(request: web.Request) -> web.Response:
    desk = _volunteers(request)
    activity = await desk.get(path_number(request, "活动"))
    form = request.query.get("format", "csv")
    if form not in ("csv", "json"):
        raise Invalid("参数 format 必须是 csv 或 json")
    rows = desk.attendance(activity)
    if form == "json":
        return web.json_response({"activity": _activity(activity, desk.tz), "rows": rows})
    return csv_response(
        [header for _, header in ATTENDANCE_COLUMNS],
        ([row[key] for key, _ in ATTENDANCE_COLUMNS] for row in rows),
        filename=f"activity-{activity.number}-attendance.csv",
        title=f"{activity.title}-签到表.csv",
    )


# --- points -------------------------------------------------------------------------


async def resident_points(request: web.Request) -> web.Response:
    desk = _points(request)
    openid = request.match_info["openid"]
    skip = query_int(request, "skip", 0) or 0
    limit = page_limit(request)
    total, entries = await desk.history(openid, skip=skip, limit=limit)
    balance = await desk.balance(openid)
    tz = _volunteers(request).tz
    shown = skip + len(entries)
    return web.json_response(
        {
            "openid": openid,
            "balance": balance,
            "total": total,
            "items": [_entry(e, tz) for e in entries],
            "next": shown if entries and shown < total else None,
        }
    )


async def post_entry(request: web.Request) -> web.Response:
    desk = _points(request)
    openid = request.match_info["openid"]
    body = await json_body(request)
    key = _idempotency_key(request, body)
    posting = await desk.adjust(
        openid,
        _unchecked(body, "amount"),
        _unchecked(body, "reason"),
        actor=operator_name(request),
        key=key,
    )
    entry = _entry(posting.entry, _volunteers(request).tz)
    return web.json_response(
        {"openid": posting.entry.account.removeprefix(POINTS), **entry},
        status=201 if posting.created else 200,
    )


async def leaderboard(request: web.Request) -> web.Response:
    top = await _points(request).top(page_limit(request))
    items = [
        {"rank": rank, "openid": openid, "balance": balance}
        for rank, openid, balance in ranked(top)
    ]
    return web.json_response({"items": items})


# --- the catalogue and redemptions --------------------------------------------------


async def list_catalogue(request: web.Request) -> web.Response:
    items = await _points(request).catalogue(active_only=False)
    tz = _volunteers(request).tz
    return web.json_response({"items": [_item(i, tz) for i in items]})


async def add_item(request: web.Request) -> web.Response:
    body = await json_body(request)
    added = await _points(request).add_item(
        _unchecked(body, "name"),
        _unchecked(body, "cost"),
        _unchecked(body, "stock"),
        actor=operator_name(request),
    )
    return web.json_response(_item(added, _volunteers(request).tz), status=201)


async def edit_item(request: web.Request) -> web.Response:
    number = path_number(request, "兑换物品")
    body = await json_body(request)
    changed = await _points(request).change_item(
        number,
        actor=operator_name(request),
        name=_optional(body, "name", str, "文字"),
        cost=_optional(body, "cost", int, "整数"),
        active=_optional(body, "active", bool, "true 或 false"),
    )
    return web.json_response(_item(changed, _volunteers(request).tz))


async def restock(request: web.Request) -> web.Response:
    number = path_number(request, "兑换物品")
    body = await json_body(request)
    stocked = await _points(request).restock(
        number,
        _unchecked(body, "amount"),
        _unchecked(body, "reason"),
        actor=operator_name(request),
        key=_idempotency_key(request, body),
    )
    return web.json_response(_item(stocked, _volunteers(request).tz))


async def list_redemptions(request: web.Request) -> web.Response:
    state = request.query.get("state", ISSUED)
    if state not in REDEMPTION_STATES:
        raise Invalid(f"参数 state 必须是 {' / '.join(REDEMPTION_STATES)} 之一")
    found = await _points(request).redemptions(state)
    tz = _volunteers(request).tz
    return web.json_response({"items": [_redemption(r, tz) for r in found]})


async def confirm_redemption(request: web.Request) -> web.Response:
    code = request.match_info["code"]
    used = await _points(request).confirm(code, actor=operator_name(request))
    return web.json_response(_redemption(used, _volunteers(request).tz))


def setup(app: web.Application) -> None:
    add = app.router
    add.add_post(f"{PREFIX}/activities", create_activity)
    add.add_get(f"{PREFIX}/activities", list_activities)
    add.add_get(f"{PREFIX}/activities/{{number}}", get_activity)
    add.add_patch(f"{PREFIX}/activities/{{number}}", edit_activity)
    add.add_post(f"{PREFIX}/activities/{{number}}/cancel", cancel_activity)
    add.add_get(f"{PREFIX}/activities/{{number}}/attendance", attendance)
    add.add_get(f"{PREFIX}/points/{{openid}}", resident_points)
    add.add_post(f"{PREFIX}/points/{{openid}}/entries", post_entry)
    add.add_get(f"{PREFIX}/leaderboard", leaderboard)
    add.add_get(f"{PREFIX}/catalogue", list_catalogue)
    add.add_post(f"{PREFIX}/catalogue", add_item)
    add.add_patch(f"{PREFIX}/catalogue/{{number}}", edit_item)
    add.add_post(f"{PREFIX}/catalogue/{{number}}/stock", restock)
    add.add_get(f"{PREFIX}/redemptions", list_redemptions)
    add.add_post(f"{PREFIX}/redemptions/{{code}}/confirm", confirm_redemption)
