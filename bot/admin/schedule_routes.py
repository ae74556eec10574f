"""``/admin/api/schedules``: staff list, create, edit, pause/resume, preview and run schedules.

Edits take effect at once (no restart); every change is in the audit log (the desk
writes it). Times go out as ISO 8601 in the community's timezone.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot import keys
from bot.admin.api import PREFIX, json_body, operator_name
from bot.domain import timefmt
from bot.domain.errors import Invalid, NotFound
from bot.domain.schedules import ScheduleDesk, next_runs
from storage.schedules import Run, Schedule


def _desk(request: web.Request) -> ScheduleDesk:
    return request.app[keys.SCHEDULES]


def _schedule(desk: ScheduleDesk, s: Schedule) -> dict[str, Any]:
    upcoming = desk.next_runs(s, 5) if s.enabled else []
    return {
        "id": s.id,
        "name": s.name,
        "cron": s.cron,
        "template": s.template,
        "audience": s.audience,
        "channel": s.channel,
        "template_id": s.template_id,
        "period_format": s.period_format,
        "enabled": s.enabled,
        "next_run": upcoming[0].isoformat() if upcoming else None,
        "next_runs": [t.isoformat() for t in upcoming],
        "last_fire": timefmt.iso(s.last_fire, desk.tz) if s.last_fire else None,
        "updated_at": timefmt.iso(s.updated_at, desk.tz) if s.updated_at else None,
        "updated_by": s.updated_by,
    }


async def _run(request: web.Request, desk: ScheduleDesk, run: Run) -> dict[str, Any]:
    try:
        progress: dict[str, Any] | None = (
            await request.app[keys.PUSH].progress(run.campaign)
        ).to_doc()
    except NotFound:
        progress = None
    return {
        "fire_at": timefmt.iso(run.fire_at, desk.tz),
        "ran_at": timefmt.iso(run.ran_at, desk.tz),
        "trigger": run.trigger,
        "campaign": run.campaign,
        "claimed": run.claimed,
        "by": run.by,
        "recipients": run.recipients,
        "deliveries": progress,
    }


async def list_schedules(request: web.Request) -> web.Response:
    desk = _desk(request)
    return web.json_response({"items": [_schedule(desk, s) for s in await desk.all()]})


async def create_schedule(request: web.Request) -> web.Response:
    desk = _desk(request)
    body = await json_body(request)
    schedule_id = body.get("id")
    if not isinstance(schedule_id, str):
        raise Invalid("需要字段 id（定时任务编号，如 activity-reminder）")
    saved = await desk.create(schedule_id, body, actor=operator_name(request))
    return web.json_response(_schedule(desk, saved), status=201)


async def get_schedule(request: web.Request) -> web.Response:
    desk = _desk(request)
    schedule = await desk.get(request.match_info["id"])
    runs = [await _run(request, desk, r) for r in await desk.runs(schedule.id)]
    return web.json_response({**_schedule(desk, schedule), "runs": runs})


async def edit_schedule(request: web.Request) -> web.Response:
    desk = _desk(request)
    body = await json_body(request)
    saved = await desk.edit(request.match_info["id"], body, actor=operator_name(request))
    return web.json_response(_schedule(desk, saved))


async def pause(request: web.Request) -> web.Response:
    desk = _desk(request)
    saved = await desk.set_enabled(request.match_info["id"], False, actor=operator_name(request))
    return web.json_response(_schedule(desk, saved))


async def resume(request: web.Request) -> web.Response:
    desk = _desk(request)
    saved = await desk.set_enabled(request.match_info["id"], True, actor=operator_name(request))
    return web.json_response(_schedule(desk, saved))


async def preview(request: web.Request) -> web.Response:
    """The next run times of a cron expression before it is saved (``?cron=``)."""
    desk = _desk(request)
    cron = request.query.get("cron")
    if cron is None:
        cron = (await desk.get(request.match_info["id"])).cron
    runs = next_runs(cron, desk.tz, request.app[keys.SERVICES].clock(), 5)
    return web.json_response({"cron": cron, "next_runs": [t.isoformat() for t in runs]})


async def run_now(request: web.Request) -> web.Response:
    desk = _desk(request)
    result = await desk.run_now(request.match_info["id"], actor=operator_name(request))
    body = await _run(request, desk, result.run)
    return web.json_response(
        {**body, "text": result.text}, status=202 if result.run.claimed else 200
    )


async def runs(request: web.Request) -> web.Response:
    desk = _desk(request)
    found = await desk.runs(request.match_info["id"])
    return web.json_response({"items": [await _run(request, desk, r) for r in found]})


async def push_progress(request: web.Request) -> web.Response:
    """A push's progress while it runs: pending, sending, sent, failed, unknown."""
    progress = await request.app[keys.PUSH].progress(request.match_info["key"])
    return web.json_response(progress.to_doc())


async def push_deliveries(request: web.Request) -> web.Response:
    """The recipients of a push in one state (``?state=failed`` by default), with WeChat's code."""
    state = request.query.get("state", "failed")
    found = await request.app[keys.PUSH].deliveries(request.match_info["key"], state, limit=500)
    items = [
        {
            "openid": d.recipient,
            "state": d.state,
            "errcode": d.errcode,
            "reason": d.reason,
            "attempts": d.attempts,
        }
        for d in found
    ]
    return web.json_response({"items": items})


async def push_retry_unknown(request: web.Request) -> web.Response:
    """Staff decide to send again what may or may not have arrived (audited)."""
    push = request.app[keys.PUSH]
    key = request.match_info["key"]
    again = await push.retry_unknown(key, by=operator_name(request))
    return web.json_response({"retried": again, "progress": (await push.progress(key)).to_doc()})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/schedules", list_schedules)
    r.add_post(f"{PREFIX}/schedules", create_schedule)
    r.add_get(f"{PREFIX}/schedules/{{id}}", get_schedule)
    r.add_patch(f"{PREFIX}/schedules/{{id}}", edit_schedule)
    r.add_post(f"{PREFIX}/schedules/{{id}}/pause", pause)
    r.add_post(f"{PREFIX}/schedules/{{id}}/resume", resume)
    r.add_get(f"{PREFIX}/schedules/{{id}}/preview", preview)
    r.add_post(f"{PREFIX}/schedules/{{id}}/run", run_now)
    r.add_get(f"{PREFIX}/schedules/{{id}}/runs", runs)
    r.add_get(f"{PREFIX}/pushes/{{key}}", push_progress)
    r.add_get(f"{PREFIX}/pushes/{{key}}/deliveries", push_deliveries)
    r.add_post(f"{PREFIX}/pushes/{{key}}/retry-unknown", push_retry_unknown)
