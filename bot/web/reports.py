"""Staff pages: reports (报事) — the board, the map, one report's facts, history and photos.

Admins see and act on every report, through the staff path of the desk (audited by
:meth:`~bot.domain.reports.ReportDesk.set_state`). A grid worker sees and acts on the
reports of their own grids only, by the same rule as the chat's ``接单`` (the desk's
:meth:`~bot.domain.reports.ReportDesk.scope` and ``may_act`` on their openid); any other
report answers 404 as if it did not exist, whatever the URL says.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot import keys
from bot.domain import report_stats
from bot.domain.accounts import ADMIN, GRID
from bot.domain.errors import Invalid, NotFound
from bot.domain.geo import parse_area
from bot.domain.report_stats import DEFAULT_QUEUE, ReportFilter
from bot.domain.reports import STATE_NAMES, ReportDesk, within
from bot.redact import mask
from bot.web import svgmap
from bot.web.guard import PREFIX, allow
from bot.web.render import actor, current_user, done, form, now, path_int, render
from storage.reports import (
    ACCEPTED,
    CLOSED_STATES,
    OPEN_STATES,
    REJECTED,
    REPORTED,
    RESOLVED,
    STATES,
    Grid,
    Photo,
    Report,
    ReportRepo,
)

log = logging.getLogger("bot.web")

routes = web.RouteTableDef()

PAGE = f"{PREFIX}/reports"
NUMBER = "{number:[0-9]{1,9}}"
# Closed reports pile up for years: the board shows the newest of each closed state.
CLOSED_LIMIT = 30
DEFAULT_QUEUE_NAME = "社区默认队列"
SHORT_TEXT = 40
STATE_BADGES = {REPORTED: "bad", ACCEPTED: "warn", RESOLVED: "ok", REJECTED: ""}
ACTION_NAMES = {
    "filed": "提交报事",
    "accepted": "接单",
    "resolved": "办结",
    "rejected": "退回",
    "transferred": "转派",
    "reopened": "重新打开",
    "rated": "评价",
    "escalated": "超时提醒",
    "followed": "关注",
    "photo": "补充照片",
}
WECHAT_PHOTO_DAYS = 3


# --- who may see what ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in staff member as the desk knows them.

    ``grids`` None: every report (an admin, or a worker whose openid is a community
    admin's). A grid worker without an openid has no grids and sees nothing.
    """

    admin: bool
    openid: str
    grids: frozenset[str] | None

    def sees(self, report: Report) -> bool:
        return within(self.grids, report)


def _desk(request: web.Request) -> ReportDesk:
    return request.app[keys.SERVICES].reports


def _repo(request: web.Request) -> ReportRepo:
    # The desk has no bulk read; the repository is a stateless view of the shared store.
    return ReportRepo(request.app[keys.STORE])


async def _viewer(request: web.Request) -> Viewer:
    user = current_user(request)
    if user.role == ADMIN:
        return Viewer(True, "", None)
    grids = await _desk(request).scope(user.openid) if user.openid else frozenset[str]()
    return Viewer(False, user.openid, grids)


async def _visible(request: web.Request, viewer: Viewer) -> Report:
    """The report in the URL, or 404 if there is none or it is not this viewer's to see."""
    number = path_int(request)
    report = await _desk(request).get(number)
    if not viewer.sees(report):
        log.warning(
            "refused report %s to %s: not in their grids", number, current_user(request).name
        )
        # The same words as for a report that does not exist: its existence is not revealed.
        raise NotFound(f"没有编号为 {number} 的报事")
    return report


# --- filters -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    wanted: ReportFilter
    values: dict[str, str]  # as the form shows them again
    error: str = ""

    @property
    def query(self) -> str:
        """The filters as a query string (to carry them between the board and the map)."""
        kept = {k: v for k, v in self.values.items() if v}
        return f"?{urlencode(kept)}" if kept else ""


FILTER_FIELDS = ("state", "grid", "category", "since", "until")


def _filters(request: web.Request) -> Filters:
    values = {name: request.query.get(name, "").strip()[:40] for name in FILTER_FIELDS}
    try:
        wanted = report_stats.filter_from(values, _desk(request).tz)
    except Invalid as exc:
        # A filter staff typed wrong: show the board unfiltered and say why.
        return Filters(ReportFilter(), dict.fromkeys(FILTER_FIELDS, ""), str(exc))
    return Filters(wanted, values)


def _shown_states(filters: Filters) -> tuple[str, ...]:
    return tuple(s for s in STATES if not filters.wanted.states or s in filters.wanted.states)


@dataclass(frozen=True, slots=True)
class Column:
    state: str
    name: str
    reports: list[Report]
    total: int  # matching reports of this state, some maybe not shown (closed ones)


async def _columns(request: web.Request, filters: Filters, viewer: Viewer) -> list[Column]:
    repo = _repo(request)
    shown = _shown_states(filters)

    def keep(r: Report) -> bool:
        return filters.wanted.matches(r) and viewer.sees(r)

    # Open reports come from the state index; closed ones need a walk, one for both columns.
    closed_states = [s for s in shown if s not in OPEN_STATES]
    closed = (
        await report_stats.newest_by_state(repo, keep, closed_states, CLOSED_LIMIT)
        if closed_states
        else {}
    )
    columns = []
    for state in shown:
        if state in OPEN_STATES:
            found = sorted(
                (r for r in await repo.by_state(state) if keep(r)),
                key=lambda r: (r.created_at, r.number),
            )
            columns.append(Column(state, STATE_NAMES[state], found, len(found)))
        else:
            newest, total = closed[state]
            columns.append(Column(state, STATE_NAMES[state], newest, total))
    return columns


async def _grid_choices(request: web.Request, viewer: Viewer) -> list[Grid]:
    grids = await _desk(request).grids.all()
    return [g for g in grids if viewer.grids is None or g.id in viewer.grids]


async def _page_context(request: web.Request, filters: Filters, viewer: Viewer) -> dict[str, Any]:
    desk = _desk(request)
    grids = await _grid_choices(request, viewer)
    choices = [(g.id, g.name) for g in grids]
    if viewer.grids is None:
        choices.append((DEFAULT_QUEUE, DEFAULT_QUEUE_NAME))
    return {
        "filters": filters,
        "grid_choices": choices,
        "categories": desk.config.categories,
        "state_choices": [(s, STATE_NAMES[s]) for s in STATES],
        "grid_names": {g.id: g.name for g in await desk.grids.all()},
        "default_queue_name": DEFAULT_QUEUE_NAME,
        "badges": STATE_BADGES,
        "state_names": STATE_NAMES,
        "viewer": viewer,
    }


# --- the board and the map -----------------------------------------------------------


def age(seconds: float) -> str:
    """How long ago, as staff say it."""
    minutes = max(0, int(seconds // 60))
    if minutes < 60:
        return f"{minutes} 分钟前" if minutes else "刚刚"
    if minutes < 48 * 60:
        return f"{minutes // 60} 小时前"
    return f"{minutes // (24 * 60)} 天前"


def short(report: Report) -> str:
    text = report.text or "（语音）"
    return text if len(text) <= SHORT_TEXT else text[: SHORT_TEXT - 1] + "…"


@routes.get(PAGE)
@allow(ADMIN, GRID)
async def board(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    filters = _filters(request)
    columns = await _columns(request, filters, viewer)
    context = await _page_context(request, filters, viewer)
    return await render(
        request,
        "reports/board.html",
        {
            **context,
            "columns": columns,
            "closed_states": CLOSED_STATES,
            "closed_limit": CLOSED_LIMIT,
            "age": age,
            "short": short,
            "now_at": now(request),
        },
        section=PAGE,
    )


def _map(
    grids: list[Grid],
    reports: list[Report],
    names: Mapping[str, str],
    *,
    title: str,
    width: float = svgmap.WIDTH,
) -> tuple[Any, int]:
    """The SVG of ``grids`` and the located ``reports`` (None if nothing to draw), and how
    many reports have no location."""
    shapes = []
    for grid in grids:
        try:
            shapes.append(svgmap.Shape(grid.name, parse_area(grid.area)))
        except Invalid as exc:
            log.error("grid %s not drawn: its area is unusable: %s", grid.id, exc)
    points = [
        svgmap.Point(
            r.lat,
            r.lng,
            r.state,
            f"{PAGE}/{r.number}",
            f"编号 {r.number} {r.category}｜{STATE_NAMES[r.state]}｜"
            f"{names.get(r.grid, DEFAULT_QUEUE_NAME) if r.grid else DEFAULT_QUEUE_NAME}｜{short(r)}",
        )
        for r in reports
        if r.lat is not None and r.lng is not None
    ]
    counts = "，".join(
        f"{STATE_NAMES[s]} {n} 件" for s in STATES if (n := sum(1 for p in points if p.kind == s))
    )
    label = f"{title}：{len(shapes)} 个网格，{len(points)} 件有位置的报事" + (
        f"（{counts}）" if counts else ""
    )
    return svgmap.draw(shapes, points, label=label, width=width), len(reports) - len(points)


@routes.get(f"{PAGE}/map")
@allow(ADMIN, GRID)
async def report_map(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    filters = _filters(request)
    columns = await _columns(request, filters, viewer)
    context = await _page_context(request, filters, viewer)
    reports = [r for c in columns for r in c.reports]
    grids = await _grid_choices(request, viewer)
    drawing, unplaced = _map(grids, reports, context["grid_names"], title="报事地图")
    return await render(
        request,
        "reports/map.html",
        {
            **context,
            "columns": columns,
            "drawing": drawing,
            "unplaced": unplaced,
            "located": len(reports) - unplaced,
            "legend": svgmap.legend(),
            "closed_limit": CLOSED_LIMIT,
        },
        section=PAGE,
    )


# --- one report ----------------------------------------------------------------------


async def _who(request: web.Request, report: Report) -> dict[str, str]:
    """How the history names each actor: staff by their account, residents by their role.

    Anyone else is named as the history has it (an operator name from the JSON API).
    """
    desk = _desk(request)
    names: dict[str, str] = {"system": "系统"}
    for openid in desk.config.admin_openids:
        names[openid] = f"社区管理员 {mask(openid)}"
    for grid in await desk.grids.all():
        for openid in grid.workers:
            names[openid] = f"{grid.name}网格员 {mask(openid)}"
        if grid.leader:
            names[grid.leader] = f"{grid.name}网格长 {mask(grid.leader)}"
    for user in await request.app[keys.ACCOUNTS].users():
        names[f"web:{user.name}"] = f"{user.label}（网页）"
        if user.openid:
            names[user.openid] = f"{user.label}（网格员）"
    for openid in report.followers:
        names[openid] = f"关注的居民 {mask(openid)}"
    names[report.reporter] = "报事人"
    return names


def _stored_photo(request: web.Request, number: int, photo: Photo) -> Path | None:
    """Our own copy of the photo, only where PhotoKeeper puts it (never a path from input)."""
    if not photo.path:
        return None
    expected = request.app[keys.PHOTOS].path_for(number, photo)
    if Path(photo.path) != expected or not expected.is_file():
        return None
    return expected


@routes.get(f"{PAGE}/{NUMBER}")
@allow(ADMIN, GRID)
async def detail(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    report = await _visible(request, viewer)
    desk = _desk(request)
    all_grids = await desk.grids.all()
    names = {g.id: g.name for g in all_grids}
    grid = next((g for g in all_grids if g.id == report.grid), None)
    # Half the board map's width: it sits in a card beside the facts.
    drawing, _ = _map(
        [grid] if grid else [], [report], names, title=f"报事 {report.number} 的位置", width=400
    )
    photos = [
        {"index": i, "stored": _stored_photo(request, report.number, p) is not None, "photo": p}
        for i, p in enumerate(report.photos, 1)
    ]
    who = await _who(request, report)
    return await render(
        request,
        "reports/detail.html",
        {
            "report": report,
            "state_name": STATE_NAMES[report.state],
            "badge": STATE_BADGES[report.state],
            "grid_name": names.get(report.grid, report.grid) if report.grid else DEFAULT_QUEUE_NAME,
            "assignee": who.get(report.assignee, report.assignee),
            "who": who,
            "action_names": ACTION_NAMES,
            "state_names": STATE_NAMES,
            "photos": photos,
            "photo_days": WECHAT_PHOTO_DAYS,
            "transfer_to": [g for g in all_grids if g.id != report.grid],
            "is_open": report.is_open,
            "viewer": viewer,
            "latest_note": report_stats.latest_staff_note(report),
            "drawing": drawing,
            "age": age(now(request) - report.created_at),
        },
        section=PAGE,
    )


@routes.get(f"{PAGE}/{NUMBER}/photos/{{i:[0-9]{{1,2}}}}")
@allow(ADMIN, GRID)
async def photo(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    report = await _visible(request, viewer)
    index = path_int(request, "i")
    if not 1 <= index <= len(report.photos):
        raise NotFound(f"报事 {report.number} 没有第 {index} 张照片")
    stored = _stored_photo(request, report.number, report.photos[index - 1])
    if stored is None:
        raise NotFound("这张照片还没有保存到本地")
    return web.FileResponse(stored, headers={"Content-Type": "image/jpeg"})


# --- acting on it --------------------------------------------------------------------
#
# An admin acts through the desk's staff path (set_state audits it); a grid worker as
# in the chat, on their openid, and the desk audits it under their web login.


def _here(number: int) -> str:
    return f"{PAGE}/{number}"


async def _set_state(request: web.Request, state: str, note_field: str = "") -> Report:
    """One state change, as an admin (staff path) or as the grid worker (their own rule)."""
    viewer = await _viewer(request)
    report = await _visible(request, viewer)
    note = (await form(request)).get(note_field, "") if note_field else ""
    worker = "" if viewer.admin else viewer.openid
    return await _desk(request).set_state(actor(request), report.number, state, note, worker=worker)


@routes.post(f"{PAGE}/{NUMBER}/accept")
@allow(ADMIN, GRID)
async def accept(request: web.Request) -> web.StreamResponse:
    after = await _set_state(request, ACCEPTED)
    return done(_here(after.number), f"已接单：报事 {after.number}，已通知居民。")


@routes.post(f"{PAGE}/{NUMBER}/resolve")
@allow(ADMIN, GRID)
async def resolve(request: web.Request) -> web.StreamResponse:
    after = await _set_state(request, RESOLVED, "note")
    return done(_here(after.number), f"报事 {after.number} 已办结，已通知居民。")


@routes.post(f"{PAGE}/{NUMBER}/reject")
@allow(ADMIN, GRID)
async def reject(request: web.Request) -> web.StreamResponse:
    after = await _set_state(request, REJECTED, "reason")
    merged = f"，已合并到报事 {after.duplicate_of}" if after.duplicate_of else ""
    return done(_here(after.number), f"报事 {after.number} 已退回{merged}，已通知居民。")


@routes.post(f"{PAGE}/{NUMBER}/reopen")
@allow(ADMIN)
async def reopen(request: web.Request) -> web.StreamResponse:
    report = await _visible(request, await _viewer(request))
    note = (await form(request)).get("note", "")
    await _desk(request).set_state(actor(request), report.number, REPORTED, note)
    return done(_here(report.number), f"报事 {report.number} 已重新打开，已通知网格员和居民。")


@routes.post(f"{PAGE}/{NUMBER}/transfer")
@allow(ADMIN, GRID)
async def transfer(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    report = await _visible(request, viewer)
    target = (await form(request)).get("grid", "")
    if not target:
        raise Invalid("请选择要转派到的网格")
    desk, who = _desk(request), actor(request)
    if viewer.admin:
        after = await desk.transfer(who, report.number, target, staff=True, audit_as=who)
    else:
        after = await desk.transfer(viewer.openid, report.number, target, audit_as=who)
    grid = await desk.grids.get(after.grid)
    text = f"报事 {report.number} 已转派到“{grid.name if grid else after.grid}”，已通知该网格。"
    # A worker who hands a report to another grid no longer sees it: back to their board.
    where = _here(report.number) if viewer.sees(after) else PAGE
    return done(where, text)
