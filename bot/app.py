"""The one place that builds shared objects and ties each one's lifetime to the app."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from bot import keys, webhook
from bot import web as admin_web
from bot.admin import api as admin_api
from bot.admin import open311
from bot.backends import build_coordinator, build_store
from bot.config import Config
from bot.conversation.engine import Engine
from bot.conversation.router import Router
from bot.coordination.base import LockTimeout
from bot.delivery import HandleFn, RetryGuard, SendFn
from bot.domain.accounts import AccountDesk
from bot.domain.alerts import AlertDesk, RobotSend
from bot.domain.assembly import AssemblyDesk
from bot.domain.feedback import FeedbackDesk
from bot.domain.grids import GridDirectory
from bot.domain.households import HouseholdDesk
from bot.domain.media import PhotoKeeper
from bot.domain.notify import Notifier
from bot.domain.points import PointsDesk
from bot.domain.push import PushEngine
from bot.domain.reports import ReportDesk
from bot.domain.schedules import ScheduleDesk
from bot.domain.volunteers import VolunteerDesk
from bot.errors import BotError
from bot.metrics import Metrics
from bot.redact import mask
from bot.services import Services
from bot.tasks import TaskTracker
from bot.wechat.client import WeChatClient
from bot.wechat.crypto import MessageCrypto
from bot.wechat.messages import Message
from bot.wechat.replies import ArticlesReply, Reply, TextReply, fit_text
from bot.wechat.wecom import send_robot_message
from handlers import build_router
from schedules import jobs
from schedules.cron import CronJobs
from schedules.runner import SchedulerService
from storage.accounts import SessionRepo, UserRepo
from storage.activities import ActivityRepo, CatalogueRepo, RedemptionRepo, SignUpRepo
from storage.assembly import (
    AgendaRepo,
    BallotRepo,
    MeetingRepo,
    ObjectionRepo,
    RsvpRepo,
    VoteRepo,
)
from storage.households import HouseholdRepo, MembershipRepo
from storage.ledger import LedgerRepo
from storage.push import PushRepo
from storage.reports import AlertRepo, GridRepo, Photo, ReportRepo
from storage.repos import AuditRepo, ConversationRepo, FeedbackRepo, ResidentRepo, Sequences
from storage.schedules import ScheduleRepo

log = logging.getLogger("bot.app")

SORRY = "抱歉，系统暂时出了点问题，请稍后再试。"
BUSY = "您的上一条消息还在处理中，请稍等片刻再发。"
SHUTDOWN_GRACE = 8.0


def create_app(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    router: Router[Services] | None = None,
) -> web.Application:
    """The whole server: webhook, health, metrics; resources opened on startup.

    ``clock`` drives conversation time (idle expiry); ``router`` replaces the
    product's handlers, for tests that need a handler the product lacks.
    """
    app = web.Application(client_max_size=config.webhook.max_body_bytes)
    app[keys.CONFIG] = config
    app[keys.METRICS] = Metrics()
    app[keys.TASKS] = TaskTracker()
    if config.aes_enabled:
        w = config.wechat
        app[keys.CRYPTO] = MessageCrypto(w.token, w.encoding_aes_key, w.app_id)

    async def coordination_ctx(app: web.Application) -> AsyncIterator[None]:
        coordinator = build_coordinator(config)
        await coordinator.open()
        app[keys.COORDINATOR] = coordinator
        log.info("coordination: %s", coordinator.name)
        yield
        await coordinator.close()

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store = build_store(config)
        await store.open()
        # The loaded records live as long as the process: keep the cyclic GC from
        # walking them all on every full collection.
        gc.freeze()
        app[keys.STORE] = store
        log.info("store %s open", store.backend)
        yield
        await store.close()
        log.info("store closed")

    async def wechat_ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=config.wechat.api_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app[keys.WECHAT_SESSION] = session
            app[keys.WECHAT] = WeChatClient(
                session,
                app_id=config.wechat.app_id,
                app_secret=config.wechat.app_secret,
                base_url=config.wechat.api_base_url,
                timeout=config.wechat.api_timeout,
                observer=app[keys.METRICS].observe_api_call,
                tokens=app[keys.COORDINATOR].tokens,
            )
            if config.wechat.check_at_start:
                app[keys.TASKS].spawn(_check_credentials(app[keys.WECHAT]), name="check-token")
            yield
            # Late replies still need the HTTP session: drain tasks before it closes.
            await app[keys.TASKS].close(SHUTDOWN_GRACE)

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        store = app[keys.STORE]
        sequences = Sequences(store)
        audit = AuditRepo(store)
        points = PointsDesk(
            LedgerRepo(store),
            CatalogueRepo(store),
            RedemptionRepo(store),
            sequences,
            audit,
            clock,
        )
        wechat = app[keys.WECHAT]
        tasks = app[keys.TASKS]

        def spawn(job: Awaitable[object], name: str) -> None:
            tasks.spawn(_logged(job), name=name)

        # Pushes run on wall time (leases are compared across processes), not the test clock.
        push = PushEngine(
            PushRepo(store),
            wechat,
            app[keys.COORDINATOR].limiter,
            audit,
            config.push,
            timezone=ZoneInfo(config.scheduler.timezone),
            spawn=spawn,
        )
        app[keys.PUSH] = push
        spawn(push.resume(), "push-resume")
        volunteers = VolunteerDesk(
            ActivityRepo(store),
            SignUpRepo(store),
            sequences,
            points,
            audit,
            app[keys.WECHAT],
            Notifier(app[keys.WECHAT], template_id=config.volunteer.reminder_template_id),
            clock,
            ZoneInfo(config.scheduler.timezone),
            pusher=push,
            reminder_template_id=config.volunteer.reminder_template_id,
            waitlist_max=config.volunteer.waitlist_max,
        )
        report_repo = ReportRepo(store)
        photos = PhotoKeeper(wechat, report_repo, _media_dir(config), clock)

        async def fetch_photo(number: int, photo: Photo) -> None:
            spawn(photos.fetch(number, photo), f"photo-{number}")

        reports = ReportDesk(
            report_repo,
            sequences,
            GridDirectory(GridRepo(store), audit, clock),
            AlertDesk(
                AlertRepo(store),
                wechat,
                _robot_sender(app),
                clock,
                template_id=config.reports.alert_template_id,
                spawn=spawn,
            ),
            Notifier(wechat, template_id=config.reports.alert_template_id),
            audit,
            config.reports,
            clock,
            ZoneInfo(config.scheduler.timezone),
            fetch_photo=fetch_photo,
        )
        households = HouseholdDesk(
            HouseholdRepo(store),
            MembershipRepo(store),
            audit,
            Notifier(wechat, template_id=config.assembly.notice_template_id),
            config.assembly,
            clock,
        )
        services = Services(
            config=config,
            clock=clock,
            residents=ResidentRepo(store),
            feedback=FeedbackRepo(store, sequences),
            volunteers=volunteers,
            points=points,
            reports=reports,
            households=households,
            assembly=AssemblyDesk(
                MeetingRepo(store),
                RsvpRepo(store),
                AgendaRepo(store),
                VoteRepo(store),
                BallotRepo(store),
                ObjectionRepo(store),
                households,
                sequences,
                audit,
                Notifier(wechat, template_id=config.assembly.notice_template_id),
                config.assembly,
                clock,
                ZoneInfo(config.scheduler.timezone),
            ),
        )
        app[keys.PHOTOS] = photos
        schedule_desk = ScheduleDesk(
            ScheduleRepo(store),
            push,
            services.assembly.households_for,
            services.assembly.template_context,
            audit,
            clock,
            ZoneInfo(config.scheduler.timezone),
            grace=config.scheduler.missed_run_grace_hours * 3600,
        )
        await schedule_desk.install_built_in()
        app[keys.SCHEDULES] = schedule_desk
        app[keys.CRON_JOBS] = CronJobs(schedule_desk)
        engine = Engine(
            router or build_router(),
            ConversationRepo(store),
            app[keys.COORDINATOR].locks,
            services,
            idle_minutes=config.conversation.idle_minutes,
            lock_timeout=config.conversation.lock_timeout,
            clock=clock,
        )
        app[keys.ENGINE] = engine
        app[keys.SERVICES] = services
        app[keys.AUDIT] = audit
        app[keys.ACCOUNTS] = AccountDesk(
            UserRepo(store), SessionRepo(store), audit, config.admin, clock
        )
        app[keys.FEEDBACK_DESK] = FeedbackDesk(services.feedback, audit, app[keys.WECHAT], clock)
        app[keys.GUARD] = RetryGuard(
            _safe_handler(engine, app[keys.METRICS]),
            _late_sender(app[keys.WECHAT]),
            app[keys.TASKS],
            app[keys.METRICS],
            app[keys.COORDINATOR].deliveries,
            shared=app[keys.COORDINATOR].shared,
            deadline=config.webhook.reply_deadline,
            ttl=config.webhook.dedup_ttl,
            clock=time.monotonic,
        )
        yield
        # Sends in flight finish; the rest waits for resume() after the restart.
        push.stop()

    async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
        service = SchedulerService(
            app[keys.COORDINATOR].lease("scheduler"),
            timezone=config.scheduler.timezone,
            setup_jobs=lambda scheduler: jobs.setup(
                scheduler,
                app[keys.SERVICES],
                config,
                app[keys.PHOTOS],
                push=app[keys.PUSH],
                cron=app[keys.CRON_JOBS],
                accounts=app[keys.ACCOUNTS],
            ),
        )
        app[keys.SCHEDULER] = service
        runner = app[keys.TASKS].spawn(service.run(), name="scheduler-lease")
        yield
        await service.stop()
        await asyncio.wait_for(runner, timeout=5)

    app.cleanup_ctx.extend([store_ctx, coordination_ctx, wechat_ctx, engine_ctx, scheduler_ctx])
    webhook.setup(app)
    admin_api.setup(app)
    open311.setup(app)
    admin_web.setup(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def _safe_handler(engine: Engine, metrics: Metrics) -> HandleFn:
    async def handle(msg: Message) -> Reply | None:
        started = time.perf_counter()
        try:
            return await engine.handle(msg)
        except LockTimeout:
            log.warning("lock for %s still held; asked the resident to wait", mask(msg.source))
            return TextReply(BUSY)
        except Exception:
            # A resident must never see a traceback, and never silence.
            log.exception(
                "handler failed for %s (%s/%s)", mask(msg.source), msg.msg_type, msg.event
            )
            return TextReply(SORRY)
        finally:
            metrics.handler_seconds.observe(time.perf_counter() - started)

    return handle


def _late_sender(client: WeChatClient) -> SendFn:
    async def send(openid: str, reply: Reply) -> None:
        if isinstance(reply, TextReply):
            await client.send_text(openid, fit_text(reply.content))
        elif isinstance(reply, ArticlesReply):
            article = reply.article
            await client.send_text(openid, fit_text(f"{article.title}\n{article.url}".strip()))
        else:
            log.warning("a late %s reply for %s cannot be sent", type(reply).__name__, mask(openid))

    return send


def _media_dir(config: Config) -> Path:
    if config.reports.media_dir:
        return Path(config.reports.media_dir)
    return Path(config.storage.path or "./data") / "media"


def _robot_sender(app: web.Application) -> RobotSend:
    async def send(url: str, text: str) -> None:
        await send_robot_message(
            app[keys.WECHAT_SESSION],
            url,
            text,
            timeout=app[keys.CONFIG].wechat.api_timeout,
            observer=app[keys.METRICS].observe_api_call,
        )

    return send


async def _logged(job: Awaitable[object]) -> None:
    try:
        await job
    except BotError as exc:
        log.error("background job failed: %s", exc)


async def _check_credentials(client: WeChatClient) -> None:
    try:
        await client.access_token()
    except BotError as exc:
        log.error(
            "cannot get a WeChat access token (check app_id, app_secret, IP whitelist): %s", exc
        )
    else:
        log.info("WeChat access token ok")


async def healthz(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    try:
        await store.ping()
    except BotError as exc:
        log.error("health check failed: %s", exc)
        return web.json_response({"status": "unavailable", "store": store.backend}, status=503)
    scheduler = "leader" if request.app[keys.SCHEDULER].leading else "standby"
    return web.json_response({"status": "ok", "store": store.backend, "scheduler": scheduler})


async def metrics(request: web.Request) -> web.Response:
    m = request.app[keys.METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})
