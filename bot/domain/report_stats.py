"""Reading reports (报事) in bulk: filters, date windows, the staff summary.

Pure, apart from walking the reports a page at a time through whatever serves
:class:`ReportPages` (a :class:`~storage.reports.ReportRepo`), so the admin API,
its CSV export, the Open311 endpoint and the web pages to come filter and count
the same way.

**Dates.** A bound is an ISO 8601 date or date-time; one without an offset is local
to the community's timezone. Both ends are inclusive: ``since=2026-05-01`` starts at
that day's midnight, ``until=2026-05-31`` takes in the whole of May 31st, and
``until=2026-05-31T18:00`` stops at 18:00. They apply to when a report was filed.

**Cost.** The store has no index on the filing time, so a listing walks the reports
in number order from ``after``, and a summary or an export walks them all, a page
of :data:`SCAN_CHUNK` at a time (memory holds the matches, not the whole store).
"""

from __future__ import annotations

import heapq
import re
import statistics
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.domain import timefmt
from bot.domain.errors import Invalid
from storage.reports import STATES, Report

SCAN_CHUNK = 500
RATINGS = (1, 2, 3, 4, 5)
# A grid filter naming the community's default queue (reports outside every grid). No
# grid id can be this: ids are letters, digits, "-" and "_".
DEFAULT_QUEUE = "@default"
# Transitions whose note a member of staff wrote (the resident's own reopen reason is not one).
STAFF_NOTE_ACTIONS = ("resolved", "rejected", "transferred", "reopened")
_DATE_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

Keep = Callable[[Report], bool]


class ReportPages(Protocol):
    async def page(self, *, after: int | None, limit: int) -> list[Report]: ...


# --- filters ---------------------------------------------------------------------------


def parse_bound(value: str, tz: ZoneInfo, name: str, *, end: bool) -> float:
    """One end of a date window (see the module's note on dates) as epoch seconds."""
    text = value.strip()
    at = timefmt.parse(text, tz, name)
    if end and _DATE_ONLY.match(text):
        # The whole of that local day: up to its last microsecond (datetimes' resolution).
        next_midnight = timefmt.local(at, tz) + timedelta(days=1)
        return next_midnight.timestamp() - 1e-6
    return at


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which reports to take; every field left empty takes all."""

    states: frozenset[str] = frozenset()
    grid: str | None = None  # a grid id; "" is the community's default queue
    categories: frozenset[str] = frozenset()
    since: float | None = None
    until: float | None = None

    def matches(self, report: Report) -> bool:
        return (
            (not self.states or report.state in self.states)
            and (self.grid is None or report.grid == self.grid)
            and (not self.categories or report.category in self.categories)
            and (self.since is None or report.created_at >= self.since)
            and (self.until is None or report.created_at <= self.until)
        )


def window(query: Mapping[str, str], tz: ZoneInfo) -> tuple[float | None, float | None]:
    """``since`` and ``until`` from a query (either may be absent); Invalid if reversed."""
    since = _bound(query, "since", tz, end=False)
    until = _bound(query, "until", tz, end=True)
    if since is not None and until is not None and since > until:
        raise Invalid("since 不能晚于 until")
    return since, until


def filter_from(query: Mapping[str, str], tz: ZoneInfo) -> ReportFilter:
    """The staff filter (state, grid, category, since, until) from a query string.

    ``grid`` is taken as given (an id, or :data:`DEFAULT_QUEUE`); the caller resolves a
    grid's name to its id. An empty parameter is the same as an absent one.
    """
    state = query.get("state", "").strip()
    if state and state not in STATES:
        raise Invalid(f"参数 state 必须是 {' / '.join(STATES)} 之一")
    grid = query.get("grid", "").strip()
    category = query.get("category", "").strip()
    since, until = window(query, tz)
    return ReportFilter(
        states=frozenset({state}) if state else frozenset(),
        grid=("" if grid == DEFAULT_QUEUE else grid) if grid else None,
        categories=frozenset({category}) if category else frozenset(),
        since=since,
        until=until,
    )


def _bound(query: Mapping[str, str], name: str, tz: ZoneInfo, *, end: bool) -> float | None:
    raw = query.get(name, "").strip()
    return parse_bound(raw, tz, name, end=end) if raw else None


# --- walking the reports -----------------------------------------------------------------


async def each(pages: ReportPages, *, after: int | None = None) -> AsyncGenerator[Report, None]:
    """Every report numbered above ``after``, in number order, a page at a time."""
    cursor = after
    while True:
        chunk = await pages.page(after=cursor, limit=SCAN_CHUNK)
        for report in chunk:
            yield report
        if len(chunk) < SCAN_CHUNK:
            return
        cursor = chunk[-1].number


async def select(
    pages: ReportPages, keep: Keep, *, after: int | None = None, limit: int | None = None
) -> list[Report]:
    """The reports ``keep`` takes, numbered above ``after``, in number order, at most ``limit``."""
    found: list[Report] = []
    if limit is not None and limit <= 0:
        return found
    async with aclosing(each(pages, after=after)) as reports:
        async for report in reports:
            if keep(report):
                found.append(report)
                if limit is not None and len(found) >= limit:
                    break
    return found


class _Newest:
    """The ``limit`` most recently filed of the reports offered, and how many were offered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._heap: list[tuple[float, int, Report]] = []

    def offer(self, report: Report) -> None:
        self.total += 1
        item = (report.created_at, report.number, report)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        elif self.limit and item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def reports(self) -> list[Report]:
        return [r for _, _, r in sorted(self._heap, key=lambda i: i[:2], reverse=True)]


async def newest(pages: ReportPages, keep: Keep, limit: int) -> list[Report]:
    """The ``limit`` most recently filed reports ``keep`` takes, newest first."""
    if limit <= 0:
        return []
    kept = _Newest(limit)
    async with aclosing(each(pages)) as reports:
        async for report in reports:
            if keep(report):
                kept.offer(report)
    return kept.reports()


async def newest_by_state(
    pages: ReportPages, keep: Keep, states: Sequence[str], limit: int
) -> dict[str, tuple[list[Report], int]]:
    """For each of ``states``, in one pass over the reports: the ``limit`` most recently
    filed that ``keep`` takes (newest first), and how many it takes in all."""
    kept = {state: _Newest(limit) for state in states}
    async with aclosing(each(pages)) as reports:
        async for report in reports:
            if report.state in kept and keep(report):
                kept[report.state].offer(report)
    return {state: (k.reports(), k.total) for state, k in kept.items()}


# --- what a report says ------------------------------------------------------------------


def latest_staff_note(report: Report) -> str:
    """The newest note a worker or member of staff wrote on it ("" if none).

    Notes by the reporter or a follower (a reopen reason) are residents' words, not staff's.
    """
    residents = {report.reporter, *report.followers}
    for t in reversed(report.history):
        if t.action in STAFF_NOTE_ACTIONS and t.note and t.by not in residents:
            return t.note
    return ""


def updated_at(report: Report) -> float:
    """When anything last happened to it."""
    return max((t.at for t in report.history), default=report.created_at)


# --- the summary -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Satisfaction:
    count: int
    mean: float | None  # two decimals; None without ratings
    distribution: dict[str, int]  # "1".."5" -> how many ratings of that many stars


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    by_state: dict[str, int]
    by_category: dict[str, int]
    accepted: int  # how many were ever accepted (resolving directly counts as accepting)
    median_minutes_to_accept: float | None
    resolved: int  # how many were ever resolved
    median_minutes_to_resolve: float | None
    satisfaction: Satisfaction


def median_minutes(seconds: Sequence[float]) -> float | None:
    """The median of durations in seconds, in minutes to one decimal (None if there are none)."""
    if not seconds:
        return None
    return round(statistics.median(seconds) / 60, 1)


@dataclass(slots=True)
class Tally:
    """Adds reports up one at a time (so a summary need not hold them all)."""

    categories: Sequence[str] = ()
    total: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)
    to_accept: list[float] = field(default_factory=list)
    to_resolve: list[float] = field(default_factory=list)
    ratings: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_state = dict.fromkeys(STATES, 0)
        # Every configured category shows, with 0 if nothing was reported in it.
        self.by_category = dict.fromkeys(self.categories, 0)

    def add(self, report: Report) -> None:
        self.total += 1
        self.by_state[report.state] = self.by_state.get(report.state, 0) + 1
        self.by_category[report.category] = self.by_category.get(report.category, 0) + 1
        if report.accepted_at is not None:
            self.to_accept.append(max(0.0, report.accepted_at - report.created_at))
        if report.resolved_at is not None:
            self.to_resolve.append(max(0.0, report.resolved_at - report.created_at))
        if report.rating is not None:
            self.ratings.append(report.rating)

    def summary(self) -> Summary:
        counted = [r for r in self.ratings if r in RATINGS]
        mean = round(sum(counted) / len(counted), 2) if counted else None
        distribution = {str(stars): counted.count(stars) for stars in RATINGS}
        return Summary(
            total=self.total,
            by_state=dict(self.by_state),
            by_category=dict(self.by_category),
            accepted=len(self.to_accept),
            median_minutes_to_accept=median_minutes(self.to_accept),
            resolved=len(self.to_resolve),
            median_minutes_to_resolve=median_minutes(self.to_resolve),
            satisfaction=Satisfaction(len(counted), mean, distribution),
        )


async def summarize_pages(
    pages: ReportPages, keep: Keep, categories: Sequence[str] = ()
) -> Summary:
    """The summary of every report ``keep`` takes."""
    tally = Tally(categories)
    async with aclosing(each(pages)) as reports:
        async for report in reports:
            if keep(report):
                tally.add(report)
    return tally.summary()
