"""Staff pages: the 户主坝坝会 — meetings, households' answers against the quorum, the
agenda suggestions, votes and their objections.

Every figure comes from :class:`~bot.domain.assembly.AssemblyDesk`, the desk the chat
and ``/admin/api/meetings`` use: the quorum is the desk's :class:`RsvpCounts`, a
meeting is created, edited and cancelled with the same body the JSON API passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from markupsafe import Markup

from bot import keys
from bot.domain import timefmt
from bot.domain.accounts import ADMIN
from bot.domain.assembly import ANSWER_NAMES, AssemblyDesk, RsvpCounts
from bot.domain.errors import Invalid
from bot.web.charts import Bar, Marker, bar_chart
from bot.web.guard import PREFIX, allow
from bot.web.render import actor, done, form, now, path_int, render
from storage.assembly import (
    ANSWERS,
    CANCELLED,
    SCHEDULED,
    VOTE_CLOSED,
    VOTE_OPEN,
    Meeting,
    Objection,
    Rsvp,
    Vote,
)

routes = web.RouteTableDef()

HOME = f"{PREFIX}/assemblies"
SECTION = "/admin/assemblies"
READ_CHUNK = 200
ANSWER_TONES = {"attend": "ok", "absent": "bad", "maybe": "warn"}


def _desk(request: web.Request) -> AssemblyDesk:
    return request.app[keys.SERVICES].assembly


# --- what the templates show ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountsView:
    counts: RsvpCounts
    summary: str  # the figures as one sentence, the same as the chart shows
    chart: Markup
    rows: list[tuple[str, int]]  # (answer's name, households)


def counts_view(meeting: Meeting, counts: RsvpCounts) -> CountsView:
    summary = quorum_text(counts)
    rows = [
        (ANSWER_NAMES["attend"], counts.attend),
        (ANSWER_NAMES["absent"], counts.absent),
        (ANSWER_NAMES["maybe"], counts.maybe),
        ("未答复", counts.unanswered),
    ]
    tones = [ANSWER_TONES["attend"], ANSWER_TONES["absent"], ANSWER_TONES["maybe"], "muted"]
    chart = bar_chart(
        [Bar(name, value, tone) for (name, value), tone in zip(rows, tones, strict=True)],
        label=f"{meeting.title}的答复：{summary}",
        unit="户",
        total=counts.households,
        marker=Marker(counts.quorum, f"法定人数 {counts.quorum} 户"),
    )
    return CountsView(counts, summary, chart, rows)


def quorum_text(counts: RsvpCounts) -> str:
    """``参加 37 户 / 共 120 户，法定人数 61 户，尚差 24 户`` (the desk's figures in words)."""
    head = f"参加 {counts.attend} 户 / 共 {counts.households} 户"
    if counts.households == 0:
        return f"{head}，还没有住户绑定或导入，无法计算法定人数"
    tail = "已达到法定人数" if counts.quorum_reached else f"尚差 {counts.shortfall} 户"
    return f"{head}，法定人数 {counts.quorum} 户，{tail}"


def meeting_state(meeting: Meeting, at: float) -> tuple[str, str]:
    """(what staff read, badge tone) for a meeting at time ``at``."""
    if meeting.status == CANCELLED:
        return "已取消", "bad"
    if meeting.ends_at <= at:
        return "已结束", ""
    if meeting.starts_at <= at:
        return "进行中", "warn"
    return "已安排", "ok"


def vote_state(vote: Vote, at: float) -> tuple[str, str]:
    if vote.status == VOTE_OPEN:
        return "投票中", "ok"
    if vote.status == VOTE_CLOSED and at < vote.publicity_until:
        return "已截止，公示中", "warn"
    return "已截止，公示结束", ""


@dataclass(frozen=True, slots=True)
class VoteView:
    vote: Vote
    state: tuple[str, str]
    turnout: int
    results: list[str]  # the results as residents were told them; [] while open
    chart: Markup | None
    objections: list[Objection]


async def _votes(desk: AssemblyDesk, at: float) -> list[VoteView]:
    found: list[Vote] = []
    after: int | None = None
    while True:
        chunk = await desk.all_votes(after=after, limit=READ_CHUNK)
        found += chunk
        if len(chunk) < READ_CHUNK:
            break
        after = chunk[-1].number
    views = []
    for vote in reversed(found):  # newest first
        closed = vote.status != VOTE_OPEN
        turnout = await desk.turnout(vote)
        chart = None
        if closed and vote.results:
            chart = bar_chart(
                [Bar(o, vote.results[i]) for i, o in enumerate(vote.options)],
                label=f"《{vote.title}》的得票：共 {turnout} 户投票",
                unit="票",
                total=max(vote.results, default=0),
            )
        views.append(
            VoteView(
                vote=vote,
                state=vote_state(vote, at),
                turnout=turnout,
                results=desk.results_text(vote).splitlines()[1:] if closed else [],
                chart=chart,
                objections=await desk.objections(vote.number),
            )
        )
    return views


async def _meetings(desk: AssemblyDesk) -> list[Meeting]:
    """Every meeting, newest first (a community holds about one a month)."""
    found: list[Meeting] = []
    after: int | None = None
    while True:
        chunk = await desk.meetings(after=after, limit=READ_CHUNK)
        found += chunk
        if len(chunk) < READ_CHUNK:
            return found[::-1]
        after = chunk[-1].number


@dataclass(frozen=True, slots=True)
class AnswerRow:
    household: str
    at: float
    suggestions: str  # members' suggestions, "小王：参加；…"


async def _answer_rows(desk: AssemblyDesk, meeting: Meeting, answer: str) -> list[AnswerRow]:
    rows = []
    for rsvp in await desk.answers(meeting, answer):
        household = await desk.households.lookup(rsvp.household)
        rows.append(
            AnswerRow(
                household.label if household else rsvp.household,
                rsvp.at,
                _suggestions(rsvp),
            )
        )
    return sorted(rows, key=lambda r: r.household)


def _suggestions(rsvp: Rsvp) -> str:
    return "；".join(
        f"{s.name or '家人'}：{ANSWER_NAMES.get(s.answer, s.answer)}" for s in rsvp.suggestions
    )


def _meeting_facts(desk: AssemblyDesk, meeting: Meeting, at: float) -> dict[str, Any]:
    return {
        "meeting": meeting,
        "span": timefmt.span(meeting.starts_at, meeting.ends_at, desk.tz),
        "state": meeting_state(meeting, at),
        "editable": meeting.status == SCHEDULED and meeting.starts_at > at,
        "cancellable": meeting.status == SCHEDULED and meeting.ends_at > at,
    }


# --- pages ----------------------------------------------------------------------------


@routes.get(HOME)
@allow(ADMIN)
async def assemblies(request: web.Request) -> web.StreamResponse:
    desk = _desk(request)
    at = now(request)
    upcoming = await desk.next_assembly()
    meetings = []
    for meeting in await _meetings(desk):
        counts = await desk.counts(meeting)
        meetings.append({**_meeting_facts(desk, meeting, at), "counts": counts})
    context: dict[str, Any] = {
        "upcoming": None,
        "meetings": meetings,
        "topics": await desk.topics(),
        "votes": await _votes(desk, at),
        "answer_names": ANSWER_NAMES,
    }
    if upcoming is not None:
        context["upcoming"] = {
            **_meeting_facts(desk, upcoming, at),
            "view": counts_view(upcoming, await desk.counts(upcoming)),
        }
    return await render(request, "assemblies/index.html", context, section=SECTION)


@routes.get(HOME + "/{number}")
@allow(ADMIN)
async def meeting_page(request: web.Request) -> web.StreamResponse:
    desk = _desk(request)
    meeting = await desk.meeting(path_int(request))
    at = now(request)
    answers = [
        (ANSWER_NAMES[answer], await _answer_rows(desk, meeting, answer)) for answer in ANSWERS
    ]
    context = {
        **_meeting_facts(desk, meeting, at),
        "view": counts_view(meeting, await desk.counts(meeting)),
        "answers": answers,
        "topics": await desk.topics(meeting.number),
    }
    return await render(request, "assemblies/meeting.html", context, section=SECTION)


@routes.post(HOME)
@allow(ADMIN)
async def create(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    body = _meeting_body(fields, creating=True)
    meeting = await _desk(request).create_meeting(body, actor=actor(request))
    return done(f"{HOME}/{meeting.number}", f"已安排坝坝会（编号 {meeting.number}）")


@routes.post(HOME + "/{number}/edit")
@allow(ADMIN)
async def edit(request: web.Request) -> web.StreamResponse:
    number = path_int(request)
    fields = await form(request)
    await _desk(request).edit_meeting(
        number, _meeting_body(fields, creating=False), actor=actor(request)
    )
    return done(f"{HOME}/{number}", "已保存会议的修改")


@routes.post(HOME + "/{number}/cancel")
@allow(ADMIN)
async def cancel(request: web.Request) -> web.StreamResponse:
    number = path_int(request)
    fields = await form(request)
    await _desk(request).cancel_meeting(number, fields.get("reason", ""), actor=actor(request))
    return done(f"{HOME}/{number}", "已取消这次坝坝会，答复参加或待定的户会收到通知")


def _meeting_body(fields: dict[str, str], *, creating: bool) -> dict[str, Any]:
    """The JSON API's body from the form; a field left empty keeps its value (or default)."""
    if creating:
        for name, label in (("starts_at", "开始时间"), ("place", "地点")):
            if not fields.get(name):
                raise Invalid(f"请填写“{label}”")
    body: dict[str, Any] = {"agenda": fields.get("agenda", "")}
    for name in ("title", "starts_at", "ends_at", "place"):
        if fields.get(name):
            body[name] = fields[name]
    return body
