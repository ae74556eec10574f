"""``/admin/api/``: reports (报事) and grids, for community staff.

Handlers translate HTTP to :class:`~bot.domain.reports.ReportDesk` and
:class:`~bot.domain.grids.GridDirectory` calls and back; filtering and counting
live in :mod:`bot.domain.report_stats`. Staff see everything, the reporter's
openid included. Times go out as ISO 8601 (to the second) in the community's
timezone.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
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
from bot.domain import report_stats, timefmt
from bot.domain.errors import Invalid
from bot.domain.report_stats import ReportFilter
from bot.domain.reports import STATE_NAMES, ReportDesk
from storage.reports import Grid, Photo, Report, ReportRepo, Transition

DEFAULT_QUEUE_NAME = "社区默认队列"
# Column order and the headers staff see in the export.
CSV_COLUMNS = (
    "编号",
    "状态",
    "类别",
    "描述",
    "网格编号",
    "网格",
    "地址",
    "纬度",
    "经度",
    "报事人openid",
    "关注人数",
    "处理人",
    "评分",
    "照片数",
    "重新处理过",
    "合并到",
    "报事时间",
    "接单时间",
    "办结时间",
    "关闭时间",
    "最新处理说明",
)


def _desk(request: web.Request) -> ReportDesk:
    return request.app[keys.SERVICES].reports


def _repo(request: web.Request) -> ReportRepo:
    # The desk has no bulk read; the repository is a stateless view of the shared store.
    return ReportRepo(request.app[keys.STORE])


def _iso(at: float | None, tz: ZoneInfo) -> str | None:
    return None if at is None else timefmt.local(at, tz).isoformat(timespec="seconds")


def _grid_names(grids: list[Grid]) -> dict[str, str]:
    return {g.id: g.name for g in grids}


async def _filter(request: web.Request) -> ReportFilter:
    desk = _desk(request)
    found = report_stats.filter_from(request.query, desk.tz)
    if found.grid:
        # A grid's name works as well as its id; an id no longer configured still filters.
        grid = await desk.grids.find(found.grid)
        if grid is not None and grid.id != found.grid:
            return replace(found, grid=grid.id)
    return found


# --- views --------------------------------------------------------------------------


def _report(r: Report, tz: ZoneInfo, grids: dict[str, str]) -> dict[str, Any]:
    return {
        "number": r.number,
        "state": r.state,
        "state_name": STATE_NAMES.get(r.state, r.state),
        "category": r.category,
        "text": r.text,
        "voice": bool(r.voice_media_id),
        "grid": r.grid,
        "grid_name": grids.get(r.grid, r.grid) if r.grid else DEFAULT_QUEUE_NAME,
        "lat": r.lat,
        "lng": r.lng,
        "label": r.label,
        "reporter": r.reporter,
        "followers": list(r.followers),
        "assignee": r.assignee,
        "rating": r.rating,
        "reopened": r.reopened,
        "duplicate_of": r.duplicate_of,
        "escalated": dict(r.escalated),
        "photo_count": len(r.photos),
        "latest_note": report_stats.latest_staff_note(r),
        "created_at": _iso(r.created_at, tz),
        "accepted_at": _iso(r.accepted_at, tz),
        "resolved_at": _iso(r.resolved_at, tz),
        "closed_at": _iso(r.closed_at, tz),
        "updated_at": _iso(report_stats.updated_at(r), tz),
    }


def _transition(t: Transition, tz: ZoneInfo) -> dict[str, Any]:
    return {"at": _iso(t.at, tz), "by": t.by, "action": t.action, "state": t.state, "note": t.note}


def _photo(p: Photo) -> dict[str, Any]:
    return {
        "media_id": p.media_id,
        # WeChat's copy: it expires three days after the photo was sent.
        "pic_url": p.pic_url,
        # Whether our own copy (fetched through the media API) is on disk.
        "stored": bool(p.path) and Path(p.path).is_file(),
    }


def _detail(r: Report, tz: ZoneInfo, grids: dict[str, str]) -> dict[str, Any]:
    return {
        **_report(r, tz, grids),
        "photos": [_photo(p) for p in r.photos],
        "history": [_transition(t, tz) for t in r.history],
    }


def _grid(g: Grid, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": g.id,
        "name": g.name,
        "area": dict(g.area),
        "workers": list(g.workers),
        "leader": g.leader,
        "wecom_url": g.wecom_url,
        "updated_at": _iso(g.updated_at, tz) if g.updated_at else None,
    }


def _local_minute(at: float | None, tz: ZoneInfo) -> str:
    return "" if at is None else f"{timefmt.local(at, tz):%Y-%m-%d %H:%M}"


def _csv_row(r: Report, tz: ZoneInfo, grids: dict[str, str]) -> list[object]:
    return [
        r.number,
        STATE_NAMES.get(r.state, r.state),
        r.category,
        r.text or "（语音）",
        r.grid,
        grids.get(r.grid, r.grid) if r.grid else DEFAULT_QUEUE_NAME,
        r.label,
        r.lat,
        r.lng,
        r.reporter,
        len(r.followers),
        r.assignee,
        r.rating,
        len(r.photos),
        r.reopened,
        r.duplicate_of,
        _local_minute(r.created_at, tz),
        _local_minute(r.accepted_at, tz),
        _local_minute(r.resolved_at, tz),
        _local_minute(r.closed_at, tz),
        report_stats.latest_staff_note(r),
    ]


# --- reports ------------------------------------------------------------------------


async def list_reports(request: web.Request) -> web.Response:
    desk = _desk(request)
    limit = page_limit(request)
    wanted = await _filter(request)
    found = await report_stats.select(
        _repo(request), wanted.matches, after=query_int(request, "after", None), limit=limit
    )
    grids = _grid_names(await desk.grids.all())
    return web.json_response(
        {
            "items": [_report(r, desk.tz, grids) for r in found],
            "next": found[-1].number if len(found) == limit else None,
        }
    )


async def export_reports(request: web.Request) -> web.Response:
    desk = _desk(request)
    wanted = await _filter(request)
    found = await report_stats.select(_repo(request), wanted.matches)
    grids = _grid_names(await desk.grids.all())
    today = f"{timefmt.local(request.app[keys.SERVICES].clock(), desk.tz):%Y%m%d}"
    return csv_response(
        CSV_COLUMNS,
        (_csv_row(r, desk.tz, grids) for r in found),
        filename=f"reports-{today}.csv",
        title=f"报事-{today}.csv",
    )


async def summary(request: web.Request) -> web.Response:
    desk = _desk(request)
    since, until = report_stats.window(request.query, desk.tz)
    wanted = ReportFilter(since=since, until=until)
    result = await report_stats.summarize_pages(
        _repo(request), wanted.matches, desk.config.categories
    )
    return web.json_response(
        {
            "since": _iso(since, desk.tz),
            "until": _iso(until, desk.tz),
            "total": result.total,
            "by_state": result.by_state,
            "by_category": result.by_category,
            "accepted": result.accepted,
            "median_minutes_to_accept": result.median_minutes_to_accept,
            "resolved": result.resolved,
            "median_minutes_to_resolve": result.median_minutes_to_resolve,
            "satisfaction": {
                "count": result.satisfaction.count,
                "mean": result.satisfaction.mean,
                "distribution": result.satisfaction.distribution,
            },
        }
    )


async def get_report(request: web.Request) -> web.Response:
    desk = _desk(request)
    found = await desk.get(path_number(request, "报事"))
    grids = _grid_names(await desk.grids.all())
    return web.json_response(_detail(found, desk.tz, grids))


async def set_state(request: web.Request) -> web.Response:
    desk = _desk(request)
    number = path_number(request, "报事")
    body = await json_body(request)
    state, note = body.get("state"), body.get("note", "")
    if not isinstance(state, str):
        raise Invalid("需要字段 state（reported / accepted / resolved / rejected）")
    if not isinstance(note, str):
        raise Invalid("note 必须是文字")
    changed = await desk.set_state(operator_name(request), number, state, note)
    grids = _grid_names(await desk.grids.all())
    return web.json_response(_detail(changed, desk.tz, grids))


async def transfer(request: web.Request) -> web.Response:
    desk = _desk(request)
    number = path_number(request, "报事")
    target = (await json_body(request)).get("grid")
    if not isinstance(target, str) or not target.strip():
        raise Invalid("需要字段 grid（网格编号或名称）")
    actor = operator_name(request)
    after = await desk.transfer(actor, number, target, staff=True, audit_as=actor)
    grids = _grid_names(await desk.grids.all())
    return web.json_response(_detail(after, desk.tz, grids))


# --- grids --------------------------------------------------------------------------


async def list_grids(request: web.Request) -> web.Response:
    desk = _desk(request)
    return web.json_response({"items": [_grid(g, desk.tz) for g in await desk.grids.all()]})


async def put_grid(request: web.Request) -> web.Response:
    desk = _desk(request)
    grid_id = request.match_info["id"]
    body = await json_body(request)
    existed = await desk.grids.get(grid_id) is not None
    saved = await desk.grids.put(grid_id, body, actor=operator_name(request))
    return web.json_response(_grid(saved, desk.tz), status=200 if existed else 201)


async def delete_grid(request: web.Request) -> web.Response:
    grid_id = request.match_info["id"]
    await _desk(request).delete_grid(grid_id, actor=operator_name(request))
    return web.json_response({"deleted": grid_id})


def setup(app: web.Application) -> None:
    add = app.router
    add.add_get(f"{PREFIX}/reports", list_reports)
    add.add_get(f"{PREFIX}/reports.csv", export_reports)
    # Before /reports/{number}, which would otherwise take "summary" as a number.
    add.add_get(f"{PREFIX}/reports/summary", summary)
    add.add_get(f"{PREFIX}/reports/{{number}}", get_report)
    add.add_post(f"{PREFIX}/reports/{{number}}/state", set_state)
    add.add_post(f"{PREFIX}/reports/{{number}}/transfer", transfer)
    add.add_get(f"{PREFIX}/grids", list_grids)
    add.add_put(f"{PREFIX}/grids/{{id}}", put_grid)
    add.add_delete(f"{PREFIX}/grids/{{id}}", delete_grid)
