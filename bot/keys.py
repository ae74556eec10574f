"""Typed keys for what the app shares between its parts (aiohttp ``web.AppKey``)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from bot.config import Config
from bot.conversation.engine import Engine
from bot.coordination.base import Coordinator
from bot.delivery import RetryGuard
from bot.domain.accounts import AccountDesk
from bot.domain.feedback import FeedbackDesk
from bot.domain.media import PhotoKeeper
from bot.domain.push import PushEngine
from bot.domain.schedules import ScheduleDesk
from bot.metrics import Metrics
from bot.services import Services
from bot.tasks import TaskTracker
from bot.wechat.client import WeChatClient
from bot.wechat.crypto import MessageCrypto
from schedules.cron import CronJobs
from schedules.runner import SchedulerService
from storage.contract import Store
from storage.repos import AuditRepo

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", Store)
COORDINATOR = web.AppKey("coordinator", Coordinator)
TASKS = web.AppKey("tasks", TaskTracker)
WECHAT = web.AppKey("wechat", WeChatClient)
ENGINE = web.AppKey("engine", Engine)
GUARD = web.AppKey("guard", RetryGuard)
CRYPTO = web.AppKey("crypto", MessageCrypto)
SCHEDULER = web.AppKey("scheduler", SchedulerService)
SERVICES = web.AppKey("services", Services)
AUDIT = web.AppKey("audit", AuditRepo)
FEEDBACK_DESK = web.AppKey("feedback_desk", FeedbackDesk)
WECHAT_SESSION = web.AppKey("wechat_session", aiohttp.ClientSession)
PHOTOS = web.AppKey("photos", PhotoKeeper)
PUSH = web.AppKey("push", PushEngine)
SCHEDULES = web.AppKey("schedules", ScheduleDesk)
CRON_JOBS = web.AppKey("cron_jobs", CronJobs)
ACCOUNTS = web.AppKey("accounts", AccountDesk)
