"""The jobs the scheduler runs, registered when this process becomes the leader."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.config import Config
from bot.domain.media import PhotoKeeper
from bot.domain.push import PushEngine
from bot.errors import BotError
from bot.services import Services

log = logging.getLogger("schedules.jobs")


async def volunteer_upkeep(services: Services) -> None:
    """Send the reminders that are due, close finished activities, finish stuck redemptions."""
    try:
        reminded = await services.volunteers.send_due_reminders()
        await services.volunteers.close_finished()
        settled = await services.points.resume()
    except BotError as exc:
        log.error("volunteer upkeep failed, will try again at the next run: %s", exc)
        return
    if reminded or settled:
        log.info(
            "volunteer upkeep: %s activities reminded, %s redemptions settled", reminded, settled
        )


async def report_upkeep(services: Services, photos: PhotoKeeper) -> None:
    """Retry undelivered alerts, escalate overdue reports, keep photos WeChat still holds."""
    try:
        await services.reports.escalate_due()
        await services.reports.alerts.deliver_due()
        await photos.fetch_missing()
    except BotError as exc:
        log.error("report upkeep failed, will try again at the next run: %s", exc)


async def push_upkeep(push: PushEngine) -> None:
    """Continue pushes no process is sending (a crash, a pause, unknowns staff retried)."""
    try:
        await push.resume()
    except BotError as exc:
        log.error("push upkeep failed, will try again at the next run: %s", exc)


def setup(
    scheduler: AsyncIOScheduler,
    services: Services,
    config: Config,
    photos: PhotoKeeper,
    *,
    push: PushEngine | None = None,
) -> None:
    if push is not None:
        scheduler.add_job(
            push_upkeep,
            "interval",
            seconds=60,
            args=(push,),
            id="push-upkeep",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )
    scheduler.add_job(
        report_upkeep,
        "interval",
        seconds=60,
        args=(services, photos),
        id="report-upkeep",
        replace_existing=True,
        misfire_grace_time=None,
        coalesce=True,
    )
    scheduler.add_job(
        volunteer_upkeep,
        "interval",
        seconds=config.volunteer.reminder_check_seconds,
        args=(services,),
        id="volunteer-upkeep",
        replace_existing=True,
        # A missed tick is simply the next tick: never run a backlog of them.
        misfire_grace_time=None,
        coalesce=True,
    )
