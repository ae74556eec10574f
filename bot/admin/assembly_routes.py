"""``/admin/api/``: households, the 户主坝坝会 (meetings, answers, agenda) and votes.

Handlers translate HTTP to :class:`~bot.domain.households.HouseholdDesk` and
:class:`~bot.domain.assembly.AssemblyDesk` calls and back; the rules (and the audit
log entry of every change) live there. Times go out as ISO 8601 in the community's
timezone.
"""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot import keys
from bot.admin.api import PREFIX, json_body, operator_name, page_limit, path_number, query_int
from bot.domain import timefmt
from bot.domain.assembly import AssemblyDesk, RsvpCounts
from bot.domain.errors import Invalid
from bot.domain.households import HouseholdDesk, ImportReport
from storage.assembly import ANSWERS, VOTE_OPEN, AgendaItem, Meeting, Objection, Rsvp, Vote
from storage.households import Household

CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel")
MAX_FILTERED = 5000


def _households(request: web.Request) -> HouseholdDesk:
    return request.app[keys.SERVICES].households


def _assembly(request: web.Request) -> AssemblyDesk:
    return request.app[keys.SERVICES].assembly


def _iso(at: float | None, tz: ZoneInfo) -> str | None:
    return None if at is None else timefmt.iso(at, tz)


# --- views --------------------------------------------------------------------------


def _household(h: Household, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": h.id,
        "label": h.label,
        "building": h.building,
        "unit": h.unit,
        "room": h.room,
        "representative": h.representative,
        "members": [
            {"openid": m.openid, "name": m.name, "joined_at": timefmt.iso(m.joined_at, tz)}
            for m in h.members
        ],
        "grid": h.grid,
        "tags": list(h.tags),
        "created_at": timefmt.iso(h.created_at, tz),
        "created_by": h.created_by,
    }


def _counts(c: RsvpCounts, ratio: float) -> dict[str, Any]:
    return {
        "households": c.households,
        "attend": c.attend,
        "absent": c.absent,
        "maybe": c.maybe,
        "unanswered": c.unanswered,
        "quorum": {"ratio": ratio, "needed": c.quorum, "reached": c.quorum_reached},
    }


async def _meeting(desk: AssemblyDesk, m: Meeting) -> dict[str, Any]:
    return {
        "number": m.number,
        "title": m.title,
        "starts_at": timefmt.iso(m.starts_at, desk.tz),
        "ends_at": timefmt.iso(m.ends_at, desk.tz),
        "place": m.place,
        "agenda": list(m.agenda),
        "status": m.status,
        "cancel_reason": m.cancel_reason,
        "created_at": timefmt.iso(m.created_at, desk.tz),
        "created_by": m.created_by,
        "rsvp": _counts(await desk.counts(m), desk.config.quorum_ratio),
    }


def _rsvp(r: Rsvp, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "household": r.household,
        "answer": r.answer,
        "by": r.by,
        "at": _iso(r.at or None, tz),
        "suggestions": [
            {"openid": s.openid, "name": s.name, "answer": s.answer, "at": timefmt.iso(s.at, tz)}
            for s in r.suggestions
        ],
    }


def _topic(item: AgendaItem, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "number": item.number,
        "meeting": item.meeting or None,
        "openid": item.openid,
        "household": item.household,
        "text": item.text,
        "at": timefmt.iso(item.at, tz),
    }


async def _vote(desk: AssemblyDesk, v: Vote) -> dict[str, Any]:
    winners = set(v.winners())
    closed = v.status != VOTE_OPEN
    return {
        "number": v.number,
        "title": v.title,
        "options": list(v.options),
        "seats": v.seats,
        "meeting": v.meeting or None,
        "status": v.status,
        "closes_at": timefmt.iso(v.closes_at, desk.tz),
        "publicity_days": v.publicity_days,
        "publicity_until": timefmt.iso(v.publicity_until, desk.tz),
        "turnout": await desk.turnout(v),
        # Counts per option only once it has closed: no running tally while households vote.
        "results": [
            {"option": option, "votes": v.results[i], "winner": i in winners}
            for i, option in enumerate(v.options)
        ]
        if closed and v.results
        else None,
        "results_text": desk.results_text(v) if closed else None,
        "closed_at": _iso(v.closed_at, desk.tz),
        "results_pushed_at": _iso(v.results_pushed_at, desk.tz),
        "created_at": timefmt.iso(v.created_at, desk.tz),
        "created_by": v.created_by,
    }


def _objection(o: Objection, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "number": o.number,
        "vote": o.vote,
        "openid": o.openid,
        "household": o.household,
        "text": o.text,
        "at": timefmt.iso(o.at, tz),
    }


def _report(report: ImportReport) -> dict[str, Any]:
    return {
        "created": report.count("created"),
        "skipped": report.count("skipped"),
        "invalid": report.count("invalid"),
        "rows": [
            {"line": r.line, "result": r.result, "household": r.household, "reason": r.reason}
            for r in report.rows
        ],
    }


# --- households ---------------------------------------------------------------------


async def import_households(request: web.Request) -> web.Response:
    desk = _households(request)
    limit = desk.config.import_max_bytes
    # Read here, not with request.read(): a community's roster is larger than the
    # webhook's body limit, which the app applies to every other request.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return web.json_response(
                {"error": f"文件超过 {limit} 字节，请分批导入（[assembly] import_max_bytes）"},
                status=413,
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = body.decode("gb18030")  # Excel on a Chinese Windows saves CSV in GBK
        except UnicodeDecodeError as exc:
            raise Invalid("CSV 必须是 UTF-8 或 GBK 编码") from exc
    if request.content_type == "application/json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise Invalid("请求体必须是 JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("csv"), str):
            raise Invalid("JSON 请求体需要字段 csv（文字），或直接发送 Content-Type: text/csv")
        text = data["csv"]
    elif request.content_type not in CSV_TYPES:
        raise Invalid('请以 Content-Type: text/csv 发送 CSV，或 JSON {"csv": "..."}')
    if not text.strip():
        raise Invalid("CSV 是空的")
    report = await desk.import_csv(text, actor=operator_name(request))
    return web.json_response(_report(report), status=200)


async def list_households(request: web.Request) -> web.Response:
    desk = _households(request)
    tz = _assembly(request).tz
    building = request.query.get("building")
    grid = request.query.get("grid")
    if building is not None or grid is not None:
        if building is not None and grid is not None:
            raise Invalid("building 和 grid 只能选一个")
        found = await desk.in_building(building) if building is not None else []
        if grid is not None:
            found = await desk.in_grid(grid)
        return web.json_response(
            {"items": [_household(h, tz) for h in found[:MAX_FILTERED]], "next": None}
        )
    limit = page_limit(request)
    items = await desk.page(after=request.query.get("after"), limit=limit)
    return web.json_response(
        {
            "items": [_household(h, tz) for h in items],
            "next": items[-1].id if len(items) == limit else None,
            "total": await desk.count(),
        }
    )


async def get_household(request: web.Request) -> web.Response:
    household = await _households(request).get(request.match_info["id"])
    return web.json_response(_household(household, _assembly(request).tz))


async def set_representative(request: web.Request) -> web.Response:
    openid = (await json_body(request)).get("openid")
    if not isinstance(openid, str) or not openid:
        raise Invalid("需要字段 openid（新的户代表）")
    household = await _households(request).set_representative(
        request.match_info["id"], openid, actor=operator_name(request)
    )
    return web.json_response(_household(household, _assembly(request).tz))


async def remove_member(request: web.Request) -> web.Response:
    household = await _households(request).remove_member(
        request.match_info["id"], request.match_info["openid"], actor=operator_name(request)
    )
    return web.json_response(_household(household, _assembly(request).tz))


# --- meetings -----------------------------------------------------------------------


async def create_meeting(request: web.Request) -> web.Response:
    desk = _assembly(request)
    meeting = await desk.create_meeting(await json_body(request), actor=operator_name(request))
    return web.json_response(await _meeting(desk, meeting), status=201)


async def list_meetings(request: web.Request) -> web.Response:
    desk = _assembly(request)
    limit = page_limit(request)
    items = await desk.meetings(after=query_int(request, "after", None), limit=limit)
    upcoming = await desk.next_assembly()
    return web.json_response(
        {
            "items": [await _meeting(desk, m) for m in items],
            "next": items[-1].number if len(items) == limit else None,
            "upcoming": upcoming.number if upcoming else None,
        }
    )


async def get_meeting(request: web.Request) -> web.Response:
    desk = _assembly(request)
    meeting = await desk.meeting(path_number(request, "会议"))
    return web.json_response(await _meeting(desk, meeting))


async def edit_meeting(request: web.Request) -> web.Response:
    desk = _assembly(request)
    number = path_number(request, "会议")
    meeting = await desk.edit_meeting(
        number, await json_body(request), actor=operator_name(request)
    )
    return web.json_response(await _meeting(desk, meeting))


async def cancel_meeting(request: web.Request) -> web.Response:
    desk = _assembly(request)
    number = path_number(request, "会议")
    reason = (await json_body(request)).get("reason", "")
    if not isinstance(reason, str):
        raise Invalid("reason 必须是文字")
    meeting = await desk.cancel_meeting(number, reason, actor=operator_name(request))
    return web.json_response(await _meeting(desk, meeting))


async def meeting_rsvps(request: web.Request) -> web.Response:
    desk = _assembly(request)
    meeting = await desk.meeting(path_number(request, "会议"))
    answer = request.query.get("answer")
    if answer is not None and answer not in ANSWERS:
        raise Invalid(f"参数 answer 必须是 {' / '.join(ANSWERS)} 之一")
    found: list[Rsvp] = []
    for one in (answer,) if answer else ANSWERS:
        found += await desk.answers(meeting, one)
    return web.json_response(
        {
            "meeting": meeting.number,
            "counts": _counts(await desk.counts(meeting), desk.config.quorum_ratio),
            "items": [_rsvp(r, desk.tz) for r in found],
        }
    )


async def agenda_suggestions(request: web.Request) -> web.Response:
    desk = _assembly(request)
    meeting = query_int(request, "meeting", None)
    items = await desk.topics(meeting)
    return web.json_response({"items": [_topic(i, desk.tz) for i in items]})


# --- votes --------------------------------------------------------------------------


async def create_vote(request: web.Request) -> web.Response:
    desk = _assembly(request)
    vote = await desk.create_vote(await json_body(request), actor=operator_name(request))
    return web.json_response(await _vote(desk, vote), status=201)


async def list_votes(request: web.Request) -> web.Response:
    desk = _assembly(request)
    limit = page_limit(request)
    items = await desk.all_votes(after=query_int(request, "after", None), limit=limit)
    return web.json_response(
        {
            "items": [await _vote(desk, v) for v in items],
            "next": items[-1].number if len(items) == limit else None,
        }
    )


async def get_vote(request: web.Request) -> web.Response:
    desk = _assembly(request)
    number = path_number(request, "投票")
    await desk.settle()  # a vote whose time is up is counted before it is shown
    return web.json_response(await _vote(desk, await desk.vote(number)))


async def vote_objections(request: web.Request) -> web.Response:
    desk = _assembly(request)
    found = await desk.objections(path_number(request, "投票"))
    return web.json_response({"items": [_objection(o, desk.tz) for o in found]})


def setup(app: web.Application) -> None:
    add = app.router
    add.add_post(f"{PREFIX}/households/import", import_households)
    add.add_get(f"{PREFIX}/households", list_households)
    add.add_get(f"{PREFIX}/households/{{id}}", get_household)
    add.add_put(f"{PREFIX}/households/{{id}}/representative", set_representative)
    add.add_delete(f"{PREFIX}/households/{{id}}/members/{{openid}}", remove_member)
    add.add_post(f"{PREFIX}/meetings", create_meeting)
    add.add_get(f"{PREFIX}/meetings", list_meetings)
    add.add_get(f"{PREFIX}/meetings/{{number}}", get_meeting)
    add.add_patch(f"{PREFIX}/meetings/{{number}}", edit_meeting)
    add.add_post(f"{PREFIX}/meetings/{{number}}/cancel", cancel_meeting)
    add.add_get(f"{PREFIX}/meetings/{{number}}/rsvps", meeting_rsvps)
    add.add_get(f"{PREFIX}/agenda-suggestions", agenda_suggestions)
    add.add_post(f"{PREFIX}/votes", create_vote)
    add.add_get(f"{PREFIX}/votes", list_votes)
    add.add_get(f"{PREFIX}/votes/{{number}}", get_vote)
    add.add_get(f"{PREFIX}/votes/{{number}}/objections", vote_objections)
