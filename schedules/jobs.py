"""The jobs the scheduler runs, registered when this process becomes the leader."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.config import Config
from bot.domain.accounts import AccountDesk
from bot.domain.media import PhotoKeeper
from bot.domain.push import PushEngine
from bot.errors import BotError
from bot.services import Services
from schedules.cron import CronJobs

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


async def session_upkeep(accounts: AccountDesk) -> None:
    """Delete staff sessions that have ended (each also goes when its cookie is next seen)."""
    try:
        removed = await accounts.purge_expired()
    except BotError as exc:
        log.error("session upkeep failed, will try again at the next run: %s", exc)
        return
    if removed:
        log.info("removed %s ended staff sessions", removed)


async def vote_results(services: Services, push: PushEngine) -> int:
    """Close votes whose time is up and push their results to every household, once."""
    pushed = 0
    try:
        for closed in await services.assembly.close_due_votes():
            recipients = await services.assembly.households_for(closed.audience)
            campaign, _, period = closed.campaign.rpartition(":")
            # The claim of (campaign, period) is unique: a repeat after a crash sends nothing.
            await push.start(
                campaign,
                period,
                channel="template" if services.config.assembly.notice_template_id else "custom",
                text=closed.text,
                recipients=recipients,
                template_id=services.config.assembly.notice_template_id,
                by="scheduler",
            )
            await services.assembly.mark_results_pushed(closed.vote.number)
            pushed += 1
    except BotError as exc:
        log.error("pushing vote results failed, will try again at the next run: %s", exc)
    return pushed


def every(
    scheduler: AsyncIOScheduler,
    seconds: float,
    job: Callable[..., Awaitable[object]],
    *args: object,
) -> None:
    """Run ``job(*args)`` every ``seconds`` in the scheduler's process. A missed tick is
    simply the next tick: never a backlog of them (coalesced, no misfire limit)."""
    scheduler.add_job(
        job,
        "interval",
        seconds=seconds,
        args=args,
        id=getattr(job, "__name__", repr(job)).replace("_", "-"),
        replace_existing=True,
        misfire_grace_time=None,
        coalesce=True,
    )


def setup(
    scheduler: AsyncIOScheduler,
    services: Services,
    config: Config,
    photos: PhotoKeeper,
    *,
    push: PushEngine,
    cron: CronJobs,
    accounts: AccountDesk,
) -> None:
    cron.setup(scheduler)
    every(scheduler, 3600, session_upkeep, accounts)
    every(scheduler, 60, vote_results, services, push)
    every(scheduler, 60, push_upkeep, push)
    every(scheduler, 60, report_upkeep, services, photos)
    every(scheduler, config.volunteer.reminder_check_seconds, volunteer_upkeep, services)
