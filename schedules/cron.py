"""Staff-edited schedules as APScheduler cron jobs in the process that holds the scheduler lease.

Two APScheduler defaults would lose the monthly push, so both are set here on
purpose: ``misfire_grace_time`` (default 1 s: a run late by a busy loop or a GC
pause would be skipped) is the configured grace period, and jobs are added with
``replace_existing=True`` at start-up from the store, which by itself would
silently drop a run missed while the server was down, so start-up also runs
:meth:`ScheduleDesk.run_due` once to catch such a run up. Runs are idempotent
(the push engine claims each period once), so an overlap is harmless.

Edits take effect at once in the process that made them (a listener) and within
``sync_seconds`` in the leader when another process made them.
"""

from __future__ import annotations

import contextlib
import logging

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.domain.schedules import ScheduleDesk, trigger
from bot.errors import BotError
from storage.schedules import Schedule

log = logging.getLogger("schedules.cron")


class CronJobs:
    def __init__(self, desk: ScheduleDesk, *, sync_seconds: float = 30.0) -> None:
        self._desk = desk
        self._sync_seconds = sync_seconds
        self._scheduler: AsyncIOScheduler | None = None
        self._installed: dict[str, tuple[str, bool]] = {}
        desk.on_change(self._changed)

    def setup(self, scheduler: AsyncIOScheduler) -> None:
        """Called when this process becomes the leader (before the scheduler starts)."""
        self._scheduler = scheduler
        self._installed = {}
        scheduler.add_job(self.start_up, id="schedules-start-up", replace_existing=True)
        scheduler.add_job(
            self.sync,
            "interval",
            seconds=self._sync_seconds,
            id="schedules-sync",
            replace_existing=True,
            misfire_grace_time=None,  # a missed tick is simply the next one
            coalesce=True,
        )

    def job_ids(self) -> list[str]:
        if self._scheduler is None:
            return []
        return sorted(j.id for j in self._scheduler.get_jobs() if j.id.startswith("schedule:"))

    def next_run(self, schedule_id: str) -> float | None:
        """When APScheduler will next run ``schedule_id`` here (None: not scheduled here)."""
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(f"schedule:{schedule_id}")
        return None if job is None or job.next_run_time is None else job.next_run_time.timestamp()

    async def start_up(self) -> None:
        await self.sync()
        try:
            caught = await self._desk.run_due(trigger_name="catch-up")
        except BotError as exc:
            log.error("catching up on missed schedules failed: %s", exc)
            return
        if caught:
            log.warning("ran %s schedule(s) missed while the server was down", len(caught))

    async def sync(self) -> None:
        try:
            schedules = await self._desk.all()
        except BotError as exc:
            log.error("could not read the schedules, keeping the current jobs: %s", exc)
            return
        seen = set()
        for schedule in schedules:
            seen.add(schedule.id)
            self._changed(schedule)
        for gone in set(self._installed) - seen:
            self._remove(gone)

    def _changed(self, schedule: Schedule) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        state = (schedule.cron, schedule.enabled)
        if self._installed.get(schedule.id) == state:
            return
        if not schedule.enabled:
            self._remove(schedule.id)
            self._installed[schedule.id] = state
            return
        scheduler.add_job(
            self._fire,
            trigger(schedule.cron, self._desk.tz),
            id=f"schedule:{schedule.id}",
            name=schedule.name,
            replace_existing=True,
            misfire_grace_time=int(self._desk.grace),
            coalesce=True,
            max_instances=1,
        )
        self._installed[schedule.id] = state
        log.info(
            "schedule %s (%s) set to run at cron %r", schedule.id, schedule.name, schedule.cron
        )

    def _remove(self, schedule_id: str) -> None:
        self._installed.pop(schedule_id, None)
        if self._scheduler is None:
            return
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(f"schedule:{schedule_id}")

    async def _fire(self) -> None:
        try:
            await self._desk.run_due()
        except BotError as exc:
            log.error("a scheduled run failed; the next tick or start-up retries it: %s", exc)
