"""How much residents take part, month by month, for the staff dashboard.

What each count means (months are calendar months in the community's timezone):

- **志愿报名** (``signups``): places taken on the rosters (confirmed and waitlisted) of
  the activities that start in that month; a cancelled activity's roster is left out.
  The roster keeps no time of sign-up, so a sign-up counts in its activity's month.
- **活动签到** (``checkins``): check-ins, in the month of the scan.
- **报事** (``reports``): reports filed in that month.
- **坝坝会答复** (``rsvps``): households' answers (参加 / 不参加 / 待定) to an assembly, in
  the month of the household's latest answer; members' suggestions are not answers.

**Cost.** No store index is ordered by time, so one count walks every activity and
every report, a page at a time, and the answers of each assembly that starts within the
window. That is a full scan, acceptable at a community's scale (thousands of records)
for a page staff open a few times a day; memory holds the tallies, not the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.domain import timefmt
from bot.domain.assembly import AssemblyDesk
from bot.domain.report_stats import ReportPages, each
from bot.domain.schedules import ScheduleDesk
from storage.activities import Activity
from storage.assembly import ANSWERS
from storage.schedules import Schedule

SCAN_CHUNK = 500
MONTHS = 12
# (field, name staff read): the order of the dashboard's charts and table columns.
SERIES: tuple[tuple[str, str], ...] = (
    ("signups", "志愿报名"),
    ("checkins", "活动签到"),
    ("reports", "报事"),
    ("rsvps", "坝坝会答复"),
)


class ActivityPages(Protocol):
    async def page(self, *, after: int | None, limit: int) -> list[Activity]: ...


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @property
    def label(self) -> str:
        return f"{self.year}年{self.month}月"

    def start(self, tz: ZoneInfo) -> float:
        return datetime(self.year, self.month, 1, tzinfo=tz).timestamp()

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)


@dataclass(slots=True)
class MonthCounts:
    month: Month
    signups: int = 0
    checkins: int = 0
    reports: int = 0
    rsvps: int = 0

    def get(self, series: str) -> int:
        value: int = getattr(self, series)
        return value


@dataclass(frozen=True, slots=True)
class Participation:
    months: list[MonthCounts]  # oldest first, the current month last
    open_reports: int  # reports not yet resolved or rejected, now

    def series(self, name: str) -> list[int]:
        return [m.get(name) for m in self.months]


@dataclass(slots=True)
class _Tally:
    tz: ZoneInfo
    months: dict[Month, MonthCounts] = field(default_factory=dict)

    def add(self, series: str, at: float, count: int = 1) -> None:
        if not at:
            return
        moment = timefmt.local(at, self.tz)
        found = self.months.get(Month(moment.year, moment.month))
        if found is not None:  # outside the window: not shown
            setattr(found, series, found.get(series) + count)


def last_months(now: float, tz: ZoneInfo, count: int = MONTHS) -> list[Month]:
    """The ``count`` calendar months up to and including the current one, oldest first."""
    today = timefmt.local(now, tz)
    months = [Month(today.year, today.month)]
    while len(months) < count:
        months.append(months[-1].previous())
    return months[::-1]


async def monthly(
    *,
    activities: ActivityPages,
    reports: ReportPages,
    assembly: AssemblyDesk,
    now: float,
    tz: ZoneInfo,
    months: int = MONTHS,
) -> Participation:
    """The counts of the last ``months`` months (see the module's note on what each means)."""
    window = last_months(now, tz, months)
    tally = _Tally(tz, {m: MonthCounts(m) for m in window})
    await _count_activities(activities, tally)
    open_reports = 0
    async for report in each(reports):
        tally.add("reports", report.created_at)
        open_reports += report.is_open
    await _count_answers(assembly, tally, since=window[0].start(tz))
    return Participation([tally.months[m] for m in window], open_reports)


async def _count_activities(activities: ActivityPages, tally: _Tally) -> None:
    after: int | None = None
    while True:
        chunk = await activities.page(after=after, limit=SCAN_CHUNK)
        for activity in chunk:
            if activity.cancelled:
                continue
            tally.add("signups", activity.starts_at, len(activity.members) + len(activity.waitlist))
            for at in activity.checked_in.values():
                tally.add("checkins", at)
        if len(chunk) < SCAN_CHUNK:
            return
        after = chunk[-1].number


async def _count_answers(assembly: AssemblyDesk, tally: _Tally, *, since: float) -> None:
    after: int | None = None
    while True:
        chunk = await assembly.meetings(after=after, limit=SCAN_CHUNK)
        for meeting in chunk:
            # Answers close when an assembly starts: one that started before the
            # window holds none within it.
            if meeting.starts_at < since:
                continue
            for answer in ANSWERS:
                for rsvp in await assembly.answers(meeting, answer):
                    tally.add("rsvps", rsvp.at)
        if len(chunk) < SCAN_CHUNK:
            return
        after = chunk[-1].number


@dataclass(frozen=True, slots=True)
class NextPush:
    schedule: Schedule
    at: datetime


async def next_push(schedules: ScheduleDesk) -> NextPush | None:
    """The enabled schedule that fires soonest, and when (None if every one is paused)."""
    found: list[NextPush] = []
    for schedule in await schedules.all():
        if not schedule.enabled:
            continue
        runs: Sequence[datetime] = schedules.next_runs(schedule, 1)
        if runs:
            found.append(NextPush(schedule, runs[0]))
    return min(found, key=lambda n: (n.at, n.schedule.id), default=None)
