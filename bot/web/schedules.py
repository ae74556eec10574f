"""Staff pages for schedules: list, edit with a preview of the run times, pause and
resume, run now after a confirmation, and each run's deliveries.

Every change goes through :class:`bot.domain.schedules.ScheduleDesk` (which checks
it, writes the audit log and moves the scheduler's job at once) and the push
engine; the pages only show what those answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot import keys
from bot.domain.accounts import ADMIN
from bot.domain.cron_words import describe
from bot.domain.errors import Invalid, NotFound
from bot.domain.push import PushEngine
from bot.domain.schedules import CHANNELS, ScheduleDesk, next_runs
from bot.domain.timefmt import WEEKDAYS
from bot.web.guard import PREFIX, allow
from bot.web.render import actor, done, form, now, render, tz
from storage.push import DELIVERY_STATES, UNKNOWN, Delivery
from storage.schedules import Run, Schedule

log = logging.getLogger("bot.web")

routes = web.RouteTableDef()

BASE = f"{PREFIX}/schedules"
SECTION = BASE
PREVIEW_RUNS = 5
FORM_FIELDS = ("name", "cron", "template", "audience", "channel", "template_id")

CHANNEL_WORDS = {"template": "模板消息", "mass": "群发消息", "custom": "客服消息"}
TRIGGER_WORDS = {"cron": "按时运行", "catch-up": "补发（服务器恢复后）", "manual": "立即发送"}
STATE_WORDS = {
    "pending": "待发送",
    "sending": "发送中",
    "retry": "等待重试",
    "sent": "已发送",
    "failed": "失败",
    "unknown": "状态不明",
}
PUSH_STATE_WORDS = {"claimed": "准备中", "running": "发送中", "done": "已完成"}
# What WeChat's codes mean to staff (codes: WeChat's global return-code page).
ERRCODE_WORDS = {
    -2: "没有收到微信的答复，消息可能已送达",
    -1: "微信系统繁忙",
    40003: "openid 无效（不是本公众号的用户）",
    40008: "消息类型无效",
    40037: "模板 ID 无效",
    43004: "对方已取消关注公众号",
    44004: "消息内容为空",
    45009: "接口调用超过限额",
    45015: "已超过 48 小时互动时限",
    45047: "客服消息条数已用完",
    47001: "消息格式错误",
}


# --- what the pages show ------------------------------------------------------------


def audience_words(audience: str) -> str:
    kind, _, value = audience.partition(":")
    if audience == "all":
        return "全体户代表"
    if audience == "rsvp:coming":
        return "回复参加或待定的户代表（仅在会前提醒那一天）"
    if kind == "building":
        return f"{value}栋的户代表"
    if kind == "grid":
        return f"网格 {value} 的户代表"
    if kind == "tag":
        return f"标签为“{value}”的户代表"
    return audience


def run_by_words(by: str) -> str:
    return "系统" if by in ("scheduler", "system") else by


def moment(at: datetime) -> str:
    """``2026-12-15 周二 08:30``: the weekday in Chinese, whatever the server's locale."""
    return f"{at:%Y-%m-%d} 周{WEEKDAYS[at.weekday()]} {at:%H:%M}"


@dataclass(frozen=True, slots=True)
class Preview:
    cron: str
    words: str = ""
    runs: tuple[str, ...] = ()
    error: str = ""


def preview(request: web.Request, cron: str) -> Preview:
    """The description and next run times of ``cron``, or the domain's reason it is invalid."""
    cron = cron.strip()
    try:
        runs = next_runs(cron, tz(request), now(request), PREVIEW_RUNS)
    except Invalid as exc:
        # Not a failed action: the preview shows why the typed expression cannot be saved.
        return Preview(cron, error=str(exc))
    return Preview(cron, describe(cron), tuple(moment(t) for t in runs))


@dataclass(frozen=True, slots=True)
class Row:
    """One schedule in the list."""

    schedule: Schedule
    words: str
    next_run: str


@dataclass(frozen=True, slots=True)
class RunRow:
    run: Run
    period: str
    progress: Mapping[str, Any] | None
    state: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery: Delivery
    household: str
    meaning: str


def _desk(request: web.Request) -> ScheduleDesk:
    return request.app[keys.SCHEDULES]


def _push(request: web.Request) -> PushEngine:
    return request.app[keys.PUSH]


def _next_run(desk: ScheduleDesk, schedule: Schedule) -> str:
    if not schedule.enabled:
        return ""
    upcoming = desk.next_runs(schedule, 1)
    return moment(upcoming[0]) if upcoming else ""


def _values(schedule: Schedule) -> dict[str, str]:
    return {name: str(getattr(schedule, name)) for name in FORM_FIELDS}


async def _run_rows(request: web.Request, schedule: Schedule) -> list[RunRow]:
    rows = []
    for run in reversed(await _desk(request).runs(schedule.id)):
        progress: Mapping[str, Any] | None = None
        if run.claimed:
            try:
                progress = (await _push(request).progress(run.campaign)).to_doc()
            except NotFound:
                # A run recorded while its push was being written elsewhere: no counts yet.
                progress = None
        state = PUSH_STATE_WORDS.get(str(progress["state"]), "") if progress else ""
        period = run.campaign.removeprefix(f"{schedule.id}:")
        rows.append(RunRow(run, period, progress, state))
    return rows


def _context(schedule: Schedule, **extra: Any) -> dict[str, Any]:
    return {
        "schedule": schedule,
        "here": f"{BASE}/{schedule.id}",
        "channel_words": CHANNEL_WORDS,
        "trigger_words": TRIGGER_WORDS,
        "state_words": STATE_WORDS,
        "audience_words": audience_words,
        "run_by_words": run_by_words,
        **extra,
    }


async def _schedule_page(
    request: web.Request, schedule: Schedule, values: Mapping[str, str], *, previewed: bool
) -> web.Response:
    desk = _desk(request)
    runs = await _run_rows(request, schedule)
    return await render(
        request,
        "schedules/edit.html",
        _context(
            schedule,
            values=values,
            channels=CHANNELS,
            preview=preview(request, values["cron"]),
            previewed=previewed,
            words=describe(schedule.cron),
            next_run=_next_run(desk, schedule),
            runs=runs[:5],
            more_runs=len(runs) > 5,
        ),
        section=SECTION,
    )


# --- the list and a new schedule ----------------------------------------------------


@routes.get(BASE)
@allow(ADMIN)
async def schedule_list(request: web.Request) -> web.StreamResponse:
    desk = _desk(request)
    rows = [Row(s, describe(s.cron), _next_run(desk, s)) for s in await desk.all()]
    return await render(
        request,
        "schedules/list.html",
        {
            "rows": rows,
            "channels": CHANNELS,
            "channel_words": CHANNEL_WORDS,
            "audience_words": audience_words,
        },
        section=SECTION,
    )


@routes.post(BASE)
@allow(ADMIN)
async def schedule_create(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    body = {name: fields.get(name, "") for name in FORM_FIELDS}
    saved = await _desk(request).create(fields.get("id", ""), body, actor=actor(request))
    return done(f"{BASE}/{saved.id}", f"已新建定时任务“{saved.name}”")


# --- one schedule: edit, preview, pause, resume -------------------------------------


@routes.get(BASE + "/{id}")
@allow(ADMIN)
async def schedule_page(request: web.Request) -> web.StreamResponse:
    schedule = await _desk(request).get(request.match_info["id"])
    values = _values(schedule)
    typed = request.query.get("cron")
    if typed is not None:
        values["cron"] = typed.strip()
    return await _schedule_page(request, schedule, values, previewed=typed is not None)


@routes.post(BASE + "/{id}")
@allow(ADMIN)
async def schedule_save(request: web.Request) -> web.StreamResponse:
    """``预览`` shows the typed form again with its run times (nothing saved); ``保存`` saves."""
    desk = _desk(request)
    schedule = await desk.get(request.match_info["id"])
    fields = await form(request)
    body = {name: fields.get(name, "") for name in FORM_FIELDS}
    if fields.get("action") != "save":
        return await _schedule_page(request, schedule, body, previewed=True)
    saved = await desk.edit(schedule.id, body, actor=actor(request))
    log.info("%s saved schedule %s", actor(request), saved.id)
    return done(f"{BASE}/{saved.id}", f"已保存：{describe(saved.cron)}，立即生效")


@routes.get(BASE + "/{id}/preview")
@allow(ADMIN)
async def cron_preview(request: web.Request) -> web.StreamResponse:
    """The preview region alone, for the page's script to refresh while staff type."""
    schedule = await _desk(request).get(request.match_info["id"])
    shown = preview(request, request.query.get("cron", schedule.cron))
    response = aiohttp_jinja2.render_template(
        "schedules/_preview.html", request, {"preview": shown}
    )
    response.headers["X-Fragment"] = "cron-preview"
    return response


@routes.post(BASE + "/{id}/pause")
@allow(ADMIN)
async def schedule_pause(request: web.Request) -> web.StreamResponse:
    saved = await _desk(request).set_enabled(request.match_info["id"], False, actor=actor(request))
    return done(f"{BASE}/{saved.id}", f"已暂停“{saved.name}”，恢复前不会按时发送")


@routes.post(BASE + "/{id}/resume")
@allow(ADMIN)
async def schedule_resume(request: web.Request) -> web.StreamResponse:
    desk = _desk(request)
    saved = await desk.set_enabled(request.match_info["id"], True, actor=actor(request))
    upcoming = _next_run(desk, saved)
    after = f"，下次运行：{upcoming}" if upcoming else ""
    return done(f"{BASE}/{saved.id}", f"已恢复“{saved.name}”{after}")


# --- run now ------------------------------------------------------------------------


@routes.get(BASE + "/{id}/run")
@allow(ADMIN)
async def run_confirm(request: web.Request) -> web.StreamResponse:
    """What "run now" would send and to whom; only the button below sends it."""
    desk = _desk(request)
    schedule = await desk.get(request.match_info["id"])
    draft = await desk.draft(schedule)
    pushed_before = await _push(request).campaign(draft.key) is not None
    return await render(
        request,
        "schedules/run.html",
        _context(schedule, draft=draft, pushed_before=pushed_before),
        section=SECTION,
    )


@routes.post(BASE + "/{id}/run")
@allow(ADMIN)
async def run_now(request: web.Request) -> web.StreamResponse:
    schedule_id = request.match_info["id"]
    result = await _desk(request).run_now(schedule_id, actor=actor(request))
    run = result.run
    period = run.campaign.removeprefix(f"{schedule_id}:")
    if run.claimed:
        message = f"已开始发送（{period}），共 {run.recipients} 位接收人，结果见运行记录"
    else:
        message = f"本期（{period}）已经发送过，这次没有重复发送"
    return done(f"{BASE}/{schedule_id}/runs", message)


# --- history and deliveries ---------------------------------------------------------


@routes.get(BASE + "/{id}/runs")
@allow(ADMIN)
async def run_history(request: web.Request) -> web.StreamResponse:
    schedule = await _desk(request).get(request.match_info["id"])
    runs = await _run_rows(request, schedule)
    return await render(
        request, "schedules/runs.html", _context(schedule, runs=runs), section=SECTION
    )


async def _push_key(request: web.Request) -> tuple[Schedule, str]:
    """The schedule and one of its pushes (a push of another schedule is not found here)."""
    schedule = await _desk(request).get(request.match_info["id"])
    key = request.match_info["key"]
    if not key.startswith(f"{schedule.id}:"):
        raise web.HTTPNotFound()
    return schedule, key


@routes.get(BASE + "/{id}/pushes/{key}")
@allow(ADMIN)
async def push_deliveries(request: web.Request) -> web.StreamResponse:
    """A push's recipients in one state (the failed ones by default) with WeChat's answer."""
    schedule, key = await _push_key(request)
    state = request.query.get("state", "failed")
    push = _push(request)
    progress = (await push.progress(key)).to_doc()
    found = await push.deliveries(key, state, limit=500)
    households = request.app[keys.SERVICES].households
    rows = []
    for delivery in found:
        household = await households.of(delivery.recipient)
        rows.append(
            DeliveryRow(
                delivery,
                household.label if household else "",
                ERRCODE_WORDS.get(delivery.errcode, "") if delivery.errcode is not None else "",
            )
        )
    return await render(
        request,
        "schedules/deliveries.html",
        _context(
            schedule,
            key=key,
            period=key.removeprefix(f"{schedule.id}:"),
            state=state,
            states=DELIVERY_STATES,
            progress=progress,
            rows=rows,
            unknown=UNKNOWN,
        ),
        section=SECTION,
    )


@routes.post(BASE + "/{id}/pushes/{key}/retry-unknown")
@allow(ADMIN)
async def retry_unknown(request: web.Request) -> web.StreamResponse:
    """Staff decided to send again what may or may not have arrived (the engine audits it)."""
    schedule, key = await _push_key(request)
    again = await _push(request).retry_unknown(key, by=actor(request))
    if again:
        message = f"已重新发送 {again} 条状态不明的消息（对方可能收到两次）"
    else:
        message = "没有状态不明的消息需要重发"
    return done(f"{BASE}/{schedule.id}/runs", message)
