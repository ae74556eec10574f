"""Schedules: named cron jobs (the monthly assembly call, reminders) that staff edit.

A schedule's run resolves its audience, renders its message and starts a push
for ``(schedule id, period)``. The push engine claims that pair once, so a second
scheduler, a restart or "run now" twice sends nothing twice.

Times: cron expressions are read in the community's timezone. What is due is
computed from the stored ``last_fire`` and the clock, so a run missed while the
server was down (for less than the grace period) runs once when it comes back,
and tests can drive it with a controllable clock.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from bot.domain.errors import Invalid, NotFound, Refused
from storage.push import campaign_key
from storage.repos import AuditRepo
from storage.schedules import Run, Schedule, ScheduleRepo

log = logging.getLogger("bot.domain.schedules")

SCHEDULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
CHANNELS = ("template", "mass", "custom")
AUDIENCE = re.compile(r"^(all|rsvp:coming|(building|grid|tag):[^\s:]{1,40})$")
MAX_TEMPLATE = 600
PLACEHOLDERS = ("time", "place", "agenda", "month")

ASSEMBLY_CALL = Schedule(
    id="assembly-call",
    name="户主坝坝会通知",
    cron="0 9 1 * *",
    template=(
        "各位户代表：本月户主坝坝会定于{time}在{place}召开。\n议题：{agenda}\n"
        "请回复“坝坝会”告诉我们能否参加（1 参加，2 不参加，3 待定）。"
    ),
    audience="all",
    channel="template",
    period_format="%Y-%m",
)
ASSEMBLY_REMINDER = Schedule(
    id="assembly-reminder",
    name="坝坝会前一天提醒",
    cron="0 18 * * *",
    template="提醒：户主坝坝会明天{time}在{place}召开，期待您参加。",
    audience="rsvp:coming",
    channel="template",
    # Daily, but the "rsvp:coming" audience is empty except on the day before a meeting.
    period_format="%Y-%m-%d",
)
BUILT_IN = (ASSEMBLY_CALL, ASSEMBLY_REMINDER)


class Pusher(Protocol):
    """What runs a push (the push engine): claims ``(campaign, period)`` once."""

    async def start(
        self,
        campaign: str,
        period: str,
        *,
        channel: str,
        text: str,
        recipients: Sequence[str],
        template_id: str = "",
        template_data: Mapping[str, str] | None = None,
        by: str,
    ) -> Any: ...


Audience = Callable[[str], Awaitable[Sequence[str]]]
Context = Callable[[], Awaitable[Mapping[str, str]]]
Changed = Callable[[Schedule], None]


@dataclass(frozen=True, slots=True)
class RunResult:
    run: Run
    text: str


@dataclass(frozen=True, slots=True)
class Draft:
    """What a run at a given moment would send, and to whom (shown before "run now")."""

    period: str
    key: str  # the push's key: a second run of the same period sends nothing
    text: str
    recipients: tuple[str, ...]


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekday_part(part: str) -> str:
    """One comma-separated part of a standard cron weekday field (0 or 7 = Sunday), in
    APScheduler's names: its ``from_crontab`` counts 0 as Monday, so a staff member's
    standard ``1`` (Monday) would silently run on Tuesday."""
    base, slash, step = part.partition("/")
    if base == "*" and slash:
        # A step counts from standard Sunday (0), not from APScheduler's Monday.
        base = "0-6"
    if base == "*" or not any(ch.isdigit() for ch in base):
        return part
    if "-" in base:
        low, high = (int(x) for x in base.split("-", 1))
        if not (0 <= low <= high <= 7):
            raise ValueError(part)
        names = [_DAY_NAMES[d] for d in range(low, high + 1)]
        if slash:
            return ",".join(dict.fromkeys(names[:: int(step)]))
        # APScheduler ranges run Monday to Sunday: a range from Sunday is Sunday plus the rest.
        if low == 0:
            return "sun" if high == 0 else f"sun,mon-{_DAY_NAMES[high]}"
        return f"{names[0]}-{names[-1]}"
    day = int(base)
    if not 0 <= day <= 7 or slash:
        raise ValueError(part)
    return _DAY_NAMES[day]


def _apscheduler_crontab(cron: str) -> str:
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(cron)
    fields[4] = ",".join(_weekday_part(p) for p in fields[4].split(","))
    return " ".join(fields)


def trigger(cron: str, tz: ZoneInfo) -> CronTrigger:
    """A standard five-field cron expression (weekday 0 or 7 = Sunday) in ``tz``."""
    try:
        return CronTrigger.from_crontab(_apscheduler_crontab(cron.strip()), timezone=tz)
    except ValueError as exc:
        raise Invalid(
            f"cron 表达式无效：{cron[:40]}（格式：分 时 日 月 周，如 0 9 1 * *）"
        ) from exc


def next_runs(cron: str, tz: ZoneInfo, after: float, count: int = 5) -> list[datetime]:
    t = trigger(cron, tz)
    now = datetime.fromtimestamp(after, tz)
    found: list[datetime] = []
    previous: datetime | None = None
    while len(found) < count:
        nxt = t.get_next_fire_time(
            previous, now if previous is None else previous + timedelta(seconds=1)
        )
        if nxt is None:
            break
        found.append(nxt)
        previous = nxt
    return found


def latest_fire(cron: str, tz: ZoneInfo, now: float, *, since: float) -> datetime | None:
    """The latest cron time in ``(since, now]``, or None."""
    t = trigger(cron, tz)
    cursor = datetime.fromtimestamp(since + 1, tz)
    end = datetime.fromtimestamp(now, tz)
    latest: datetime | None = None
    previous: datetime | None = None
    for _ in range(100_000):
        nxt = t.get_next_fire_time(previous, cursor)
        if nxt is None or nxt > end:
            break
        latest, previous, cursor = nxt, nxt, nxt + timedelta(seconds=1)
    return latest


class ScheduleDesk:
    def __init__(
        self,
        schedules: ScheduleRepo,
        pusher: Pusher,
        audience: Audience,
        context: Context,
        audit: AuditRepo,
        clock: Callable[[], float],
        tz: ZoneInfo,
        *,
        grace: float,
    ) -> None:
        self._schedules = schedules
        self._pusher = pusher
        self._audience = audience
        self._context = context
        self._audit = audit
        self._clock = clock
        self.tz = tz
        self.grace = grace
        self._listeners: list[Changed] = []

    def on_change(self, listener: Changed) -> None:
        """Called with each schedule created, edited, paused or resumed in this process."""
        self._listeners.append(listener)

    async def install_built_in(self) -> None:
        """The monthly assembly call exists out of the box (created once, never overwritten)."""
        now = self._clock()
        for schedule in BUILT_IN:

            def create(current: Schedule | None, s: Schedule = schedule) -> Schedule:
                if current is not None:
                    raise _Exists
                # The first cron time from now on is the first to run: nothing is caught up.
                return replace(s, last_fire=now, updated_at=now, updated_by="system")

            try:
                await self._schedules.change(schedule.id, create)
            except _Exists:
                continue
            log.info("created the built-in schedule %s", schedule.id)

    async def all(self) -> list[Schedule]:
        return sorted(await self._schedules.all(), key=lambda s: s.id)

    async def get(self, schedule_id: str) -> Schedule:
        found = await self._schedules.get(schedule_id)
        if found is None:
            raise NotFound(f"没有编号为 {schedule_id[:40]} 的定时任务")
        return found

    def next_runs(self, schedule: Schedule, count: int = 5) -> list[datetime]:
        return next_runs(schedule.cron, self.tz, self._clock(), count)

    async def runs(self, schedule_id: str) -> list[Run]:
        await self.get(schedule_id)
        return await self._schedules.runs(schedule_id)

    # --- staff edits ----------------------------------------------------------------

    def validate(self, body: Mapping[str, Any], base: Schedule | None) -> Schedule:
        def text(name: str, limit: int) -> str:
            value = body.get(name, getattr(base, name) if base else None)
            if not isinstance(value, str) or not value.strip():
                raise Invalid(f"需要字段 {name}（文字）")
            if len(value) > limit:
                raise Invalid(f"{name} 最多{limit}个字")
            return value.strip()

        name = text("name", 30)
        cron = text("cron", 60)
        trigger(cron, self.tz)
        template = text("template", MAX_TEMPLATE)
        try:
            template.format(**{p: "" for p in PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as exc:
            raise Invalid(
                f"template 只能使用 {{time}} {{place}} {{agenda}} {{month}}：{exc}"
            ) from exc
        audience = text("audience", 50)
        if not AUDIENCE.match(audience):
            raise Invalid("audience 必须是 all、rsvp:coming、building:楼栋、grid:网格 或 tag:标签")
        channel = text("channel", 10)
        if channel not in CHANNELS:
            raise Invalid(f"channel 必须是 {' / '.join(CHANNELS)} 之一")
        template_id = body.get("template_id", base.template_id if base else "")
        if not isinstance(template_id, str):
            raise Invalid("template_id 必须是文字")
        period_format = body.get("period_format", base.period_format if base else "%Y-%m-%dT%H:%M")
        if not isinstance(period_format, str) or not period_format.startswith("%Y"):
            raise Invalid("period_format 必须以 %Y 开头，例如 %Y-%m")
        enabled = body.get("enabled", base.enabled if base else True)
        if not isinstance(enabled, bool):
            raise Invalid("enabled 必须是 true 或 false")
        return Schedule(
            id=base.id if base else "",
            name=name,
            cron=cron,
            template=template,
            audience=audience,
            channel=channel,
            enabled=enabled,
            template_id=template_id,
            period_format=period_format,
            last_fire=base.last_fire if base else None,
        )

    async def create(self, schedule_id: str, body: Mapping[str, Any], *, actor: str) -> Schedule:
        if not SCHEDULE_ID.match(schedule_id):
            raise Invalid("编号只能是小写字母、数字和 -，最多40个字符")
        draft = self.validate(body, None)
        now = self._clock()

        def create(current: Schedule | None) -> Schedule:
            if current is not None:
                raise Refused(f"已有编号为 {schedule_id} 的定时任务")
            return replace(draft, id=schedule_id, last_fire=now, updated_at=now, updated_by=actor)

        saved = await self._schedules.change(schedule_id, create)
        await self._audit.add(
            actor, "schedule.create", f"schedule/{schedule_id}", _detail(saved), now
        )
        self._changed(saved)
        return saved

    async def edit(self, schedule_id: str, body: Mapping[str, Any], *, actor: str) -> Schedule:
        before = await self.get(schedule_id)
        draft = self.validate(body, before)
        now = self._clock()

        def apply(current: Schedule | None) -> Schedule:
            if current is None:
                raise NotFound(f"没有编号为 {schedule_id} 的定时任务")
            # A new cron starts counting from now: it does not catch up on its own past.
            last = now if draft.cron != current.cron else current.last_fire
            return replace(draft, id=schedule_id, last_fire=last, updated_at=now, updated_by=actor)

        saved = await self._schedules.change(schedule_id, apply)
        changes = {k: v for k, v in _detail(saved).items() if _detail(before).get(k) != v}
        await self._audit.add(actor, "schedule.edit", f"schedule/{schedule_id}", changes, now)
        self._changed(saved)
        return saved

    async def set_enabled(self, schedule_id: str, enabled: bool, *, actor: str) -> Schedule:
        now = self._clock()

        def apply(current: Schedule | None) -> Schedule:
            if current is None:
                raise NotFound(f"没有编号为 {schedule_id} 的定时任务")
            # Resuming does not send what came due while paused.
            last = now if enabled and not current.enabled else current.last_fire
            return replace(
                current, enabled=enabled, last_fire=last, updated_at=now, updated_by=actor
            )

        saved = await self._schedules.change(schedule_id, apply)
        action = "schedule.resume" if enabled else "schedule.pause"
        await self._audit.add(actor, action, f"schedule/{schedule_id}", {}, now)
        self._changed(saved)
        return saved

    # --- running --------------------------------------------------------------------

    async def run_now(self, schedule_id: str, *, actor: str) -> RunResult:
        schedule = await self.get(schedule_id)
        now = self._clock()
        result = await self._run(schedule, now, "manual", actor)
        await self._audit.add(
            actor,
            "schedule.run",
            f"schedule/{schedule_id}",
            {"campaign": result.run.campaign, "claimed": result.run.claimed},
            now,
        )
        return result

    async def run_due(self, *, trigger_name: str = "cron") -> list[RunResult]:
        """Run every enabled schedule whose latest cron time (within the grace period)
        has not run yet: the scheduler's tick, and the catch-up at start-up."""
        now = self._clock()
        results: list[RunResult] = []
        for schedule in await self._schedules.all():
            if not schedule.enabled:
                continue
            since = max(schedule.last_fire or 0.0, now - self.grace)
            fire = latest_fire(schedule.cron, self.tz, now, since=since)
            if fire is None:
                continue
            fire_at = fire.timestamp()

            def claim(current: Schedule | None, at: float = fire_at) -> Schedule:
                if current is None or not current.enabled or (current.last_fire or 0) >= at:
                    raise _Exists
                return replace(current, last_fire=at)

            try:
                claimed = await self._schedules.change(schedule.id, claim)
            except _Exists:
                continue
            late = now - fire_at
            kind = trigger_name if late < 120 else "catch-up"
            if kind == "catch-up":
                log.warning(
                    "schedule %s missed %s by %.0f s: running it now", schedule.id, fire, late
                )
            results.append(await self._run(claimed, fire_at, kind, "scheduler"))
        return results

    async def draft(self, schedule: Schedule, at: float | None = None) -> Draft:
        """The message, recipients and period of a run at ``at`` (now by default)."""
        fire_at = self._clock() if at is None else at
        period = datetime.fromtimestamp(fire_at, self.tz).strftime(schedule.period_format)
        context = {p: "（待定）" for p in PLACEHOLDERS}
        context.update(await self._context())
        return Draft(
            period=period,
            key=campaign_key(schedule.id, period),
            text=schedule.template.format(**context),
            recipients=tuple(await self._audience(schedule.audience)),
        )

    async def _run(
        self, schedule: Schedule, fire_at: float, trigger_name: str, by: str
    ) -> RunResult:
        draft = await self.draft(schedule, fire_at)
        period, text, recipients = draft.period, draft.text, draft.recipients
        started = await self._pusher.start(
            schedule.id,
            period,
            channel=schedule.channel,
            text=text,
            recipients=recipients,
            template_id=schedule.template_id,
            template_data={"first": text.split("\n", 1)[0], "remark": text},
            by=by,
        )
        run = Run(
            schedule=schedule.id,
            fire_at=fire_at,
            ran_at=self._clock(),
            trigger=trigger_name,
            campaign=draft.key,
            claimed=started is not None,
            by=by,
            recipients=len(recipients) if started is not None else 0,
        )
        await self._schedules.add_run(run)
        log.info(
            "schedule %s ran (%s) for %s: %s",
            schedule.id,
            trigger_name,
            period,
            f"{len(recipients)} recipients" if started is not None else "already pushed",
        )
        return RunResult(run, text)

    def _changed(self, schedule: Schedule) -> None:
        for listener in self._listeners:
            listener(schedule)


class _Exists(Exception):
    pass


def _detail(schedule: Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "template": schedule.template,
        "audience": schedule.audience,
        "channel": schedule.channel,
        "enabled": schedule.enabled,
    }
