"""Exactly one scheduler across the server processes: the holder of the "scheduler" lease.

Every process runs this loop; the one that holds the lease runs APScheduler,
the others stand by and try again every ``poll_interval``. If the leader dies,
its lease ends within the lease's takeover bound and the next poll of another
process starts the scheduler there. A leader that loses its lease (a network
split) stops its scheduler at once, so two never run together for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.coordination.base import CoordinationError, LeaderLease

log = logging.getLogger("schedules.runner")

# APScheduler's own default (1 s) would silently skip a run missed by a restart;
# a monthly push must rather run late than never (see the scheduling reference).
MISFIRE_GRACE = 6 * 3600


class SchedulerService:
    def __init__(
        self,
        lease: LeaderLease,
        *,
        timezone: str,
        poll_interval: float = 2.0,
        setup_jobs: Callable[[AsyncIOScheduler], None] = lambda scheduler: None,
    ) -> None:
        self._lease = lease
        self._timezone = ZoneInfo(timezone)
        self._poll = poll_interval
        self._setup_jobs = setup_jobs
        self._scheduler: AsyncIOScheduler | None = None
        self._stopped = asyncio.Event()

    @property
    def leading(self) -> bool:
        return self._scheduler is not None

    @property
    def takeover_bound(self) -> float:
        return self._lease.takeover_bound + self._poll

    async def run(self) -> None:
        """Contend for the lease until :meth:`stop`; runs the scheduler while holding it."""
        while not self._stopped.is_set():
            try:
                holding = await self._lease.try_acquire()
            except CoordinationError as exc:
                log.warning("scheduler lease check failed: %s", exc)
                holding = False
            if holding and self._scheduler is None:
                self._start()
            elif not holding and self._scheduler is not None:
                log.warning("scheduler lease lost: stopping the scheduler in this process")
                self._shutdown()
            # Sleep until the next poll, waking at once on stop().
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._poll)

    def _start(self) -> None:
        scheduler = AsyncIOScheduler(
            timezone=self._timezone,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE,
            },
        )
        self._setup_jobs(scheduler)
        scheduler.start()
        self._scheduler = scheduler
        log.info("this process now runs the scheduler (%s jobs)", len(scheduler.get_jobs()))

    def _shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def stop(self) -> None:
        self._stopped.set()
        was_leading = self.leading
        self._shutdown()
        if was_leading:
            try:
                await self._lease.release()
            except CoordinationError as exc:
                log.warning("could not release the scheduler lease: %s", exc)
