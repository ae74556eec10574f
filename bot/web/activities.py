"""``/admin/activities``: volunteer activities, their sign-ups and waitlist, the check-in QR.

The form is turned into the same body the JSON API sends, and
:meth:`~bot.domain.volunteers.VolunteerDesk.draft` checks it: the rules (times in the
future, capacity not below the sign-ups, no edit once started…) are the desk's, and
its Chinese messages are what staff see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot import keys
from bot.admin.api import csv_response
from bot.admin.volunteer_routes import ATTENDANCE_COLUMNS
from bot.domain import timefmt
from bot.domain.accounts import ADMIN
from bot.domain.errors import Invalid
from bot.domain.volunteers import (
    CHECKIN_CLOSES_AFTER,
    CHECKIN_OPENS_BEFORE,
    DEFAULT_REMIND_BEFORE,
    MAX_CAPACITY,
    MAX_DESCRIPTION,
    MAX_PLACE,
    MAX_POINTS,
    MAX_TITLE,
    VolunteerDesk,
)
from bot.web.guard import PREFIX, allow
from bot.web.points import residents
from bot.web.render import actor, done, form, form_int, local, now, path_int, render, tz
from storage.activities import CANCELLED, DONE, OPEN, Activity

log = logging.getLogger("bot.web")

routes = web.RouteTableDef()
SECTION = f"{PREFIX}/activities"
FORM_TIME = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends and shows
LIMITS = {
    "title": MAX_TITLE,
    "place": MAX_PLACE,
    "description": MAX_DESCRIPTION,
    "capacity": MAX_CAPACITY,
    "points": MAX_POINTS,
}


@dataclass(frozen=True, slots=True)
class Shown:
    """An activity with what the list shows about it."""

    activity: Activity
    label: str  # 报名中 / 已报满 / 进行中 / 已结束 / 已取消
    badge: str  # the badge class: ok / warn / bad / ""
    when: str  # 11月28日（周六）19:00–21:00, as residents read it


def _desk(request: web.Request) -> VolunteerDesk:
    return request.app[keys.SERVICES].volunteers


def _state(a: Activity, at: float, zone: ZoneInfo) -> Shown:
    when = timefmt.span(a.starts_at, a.ends_at, zone)
    if a.status == CANCELLED:
        return Shown(a, "已取消", "bad", when)
    if a.status == DONE or a.ends_at <= at:
        return Shown(a, "已结束", "", when)
    if a.starts_at <= at:
        return Shown(a, "进行中", "ok", when)
    if a.places_left == 0:
        return Shown(a, "已报满", "warn", when)
    return Shown(a, "报名中", "ok", when)


# Whether to offer the edit link and the cancel form; the desk decides whether they apply.
def _editable(a: Activity, at: float) -> bool:
    return a.status == OPEN and a.starts_at > at


def _cancellable(a: Activity, at: float) -> bool:
    return a.status == OPEN and a.ends_at > at


def _plain(hours: float) -> int | float:
    """24 rather than 24.0, as staff type it and as the API's integers compare."""
    return int(hours) if hours.is_integer() else hours


def _hours(raw: str) -> int | float:
    try:
        return _plain(float(raw))
    except ValueError:
        raise Invalid("“提前提醒”必须填写小时数，如 24 或 1.5") from None


def _lead_hours(a: Activity | None) -> int | float:
    return _plain((a.remind_before if a else DEFAULT_REMIND_BEFORE) / 3600)


def _as_form(a: Activity, zone: ZoneInfo) -> dict[str, Any]:
    """The activity as the form shows it (and as a form that changed nothing sends it)."""
    return {
        "title": a.title,
        "place": a.place,
        "description": a.description,
        "starts_at": local(a.starts_at, zone, FORM_TIME),
        "ends_at": local(a.ends_at, zone, FORM_TIME),
        "capacity": a.capacity,
        "points": a.points,
        "remind_before_hours": _lead_hours(a),
    }


def _body(fields: dict[str, str]) -> dict[str, Any]:
    """The form as the JSON API's body: texts as typed, numbers as integers."""
    body: dict[str, Any] = {
        name: fields.get(name, "")
        for name in ("title", "place", "description", "starts_at", "ends_at")
    }
    body["capacity"] = form_int(fields, "capacity", "名额")
    body["points"] = form_int(fields, "points", "积分")
    if hours := fields.get("remind_before_hours", ""):
        body["remind_before_hours"] = _hours(hours)
    return body


def _blank() -> dict[str, Any]:
    return {
        "title": "",
        "place": "",
        "description": "",
        "starts_at": "",
        "ends_at": "",
        "capacity": 10,
        "points": 0,
        "remind_before_hours": _lead_hours(None),
    }


# --- the list ---------------------------------------------------------------------------


@routes.get(SECTION)
@allow(ADMIN)
async def activities(request: web.Request) -> web.Response:
    at = now(request)
    found = await _desk(request).all(include_past=True)
    upcoming = sorted((a for a in found if a.ends_at > at), key=lambda a: (a.starts_at, a.number))
    past = sorted((a for a in found if a.ends_at <= at), key=lambda a: -a.starts_at)
    return await render(
        request,
        "activities/list.html",
        {
            "upcoming": [_state(a, at, tz(request)) for a in upcoming],
            "past": [_state(a, at, tz(request)) for a in past],
        },
        section=SECTION,
    )


# --- create (``/new`` is registered before ``/{number}``, which would match it) ---------


@routes.get(f"{SECTION}/new")
@allow(ADMIN)
async def new(request: web.Request) -> web.Response:
    return await render(
        request,
        "activities/form.html",
        {"activity": None, "values": _blank(), "limits": LIMITS},
        section=SECTION,
    )


@routes.post(SECTION)
@allow(ADMIN)
async def create(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    activity = await _desk(request).create(_body(fields), actor=actor(request))
    return done(f"{SECTION}/{activity.number}", f"已创建活动《{activity.title}》")


# --- one activity -----------------------------------------------------------------------


@routes.get(f"{SECTION}/{{number}}")
@allow(ADMIN)
async def detail(request: web.Request) -> web.Response:
    at = now(request)
    activity = await _desk(request).get(path_int(request))
    people = await residents(request, (*activity.members, *activity.waitlist))
    return await render(
        request,
        "activities/detail.html",
        {
            "shown": _state(activity, at, tz(request)),
            "a": activity,
            "people": people,
            "editable": _editable(activity, at),
            "cancellable": _cancellable(activity, at),
            "remind_hours": _lead_hours(activity),
        },
        section=SECTION,
    )


@routes.get(f"{SECTION}/{{number}}/edit")
@allow(ADMIN)
async def edit_form(request: web.Request) -> web.Response:
    activity = await _desk(request).get(path_int(request))
    return await render(
        request,
        "activities/form.html",
        {
            "activity": activity,
            "values": _as_form(activity, tz(request)),
            "limits": LIMITS,
            "editable": _editable(activity, now(request)),
        },
        section=SECTION,
    )


@routes.post(f"{SECTION}/{{number}}")
@allow(ADMIN)
async def edit(request: web.Request) -> web.StreamResponse:
    desk = _desk(request)
    number = path_int(request)
    before = await desk.get(number)
    shown = _as_form(before, tz(request))
    # Only what the form changed: an untouched time is not re-sent at minute precision
    # (it would move a start set to the second and re-arm its reminder).
    body = {k: v for k, v in _body(await form(request)).items() if shown.get(k) != v}
    here = f"{SECTION}/{number}"
    if not body:
        return done(here, "没有修改")
    after = await desk.edit(number, body, actor=actor(request))
    return done(here, f"已保存《{after.title}》的修改")


@routes.post(f"{SECTION}/{{number}}/cancel")
@allow(ADMIN)
async def cancel(request: web.Request) -> web.StreamResponse:
    number = path_int(request)
    reason = (await form(request)).get("reason", "")
    if not reason:
        # Residents are told why; the form asks for it, and so does the server.
        raise Invalid("请填写取消原因，报名的居民会收到这个原因")
    activity = await _desk(request).cancel(number, reason, actor=actor(request))
    told = len(activity.members) + len(activity.waitlist)
    return done(
        f"{SECTION}/{number}",
        f"已取消活动《{activity.title}》；报名和候补的{told}位居民会收到取消通知和原因",
    )


@routes.get(f"{SECTION}/{{number}}/qr")
@allow(ADMIN)
async def qr(request: web.Request) -> web.Response:
    activity = await _desk(request).get(path_int(request))
    return await render(
        request,
        "activities/qr.html",
        {
            "shown": _state(activity, now(request), tz(request)),
            "a": activity,
            "opens": activity.starts_at - CHECKIN_OPENS_BEFORE,
            "closes": activity.ends_at + CHECKIN_CLOSES_AFTER,
        },
        section=SECTION,
    )


@routes.get(f"{SECTION}/{{number}}/attendance.csv")
@allow(ADMIN)
async def attendance(request: web.Request) -> web.Response:
    """The JSON API's export (same columns, same rows) for staff logged in to the pages."""
    desk = _desk(request)
    activity = await desk.get(path_int(request))
    rows = desk.attendance(activity)
    return csv_response(
        [header for _, header in ATTENDANCE_COLUMNS],
        ([row[key] for key, _ in ATTENDANCE_COLUMNS] for row in rows),
        filename=f"activity-{activity.number}-attendance.csv",
        title=f"{activity.title}-签到表.csv",
    )
