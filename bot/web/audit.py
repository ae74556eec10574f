"""Staff pages: the audit log — every change, who made it and when, newest first.

Filters (who, what, on what, between which dates) and paging are
:mod:`bot.domain.audit_log`'s; this page reads the query and shows a page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from bot import keys
from bot.domain import audit_log
from bot.domain.accounts import ADMIN
from bot.web.guard import PREFIX, allow
from bot.web.render import local, render, tz
from storage.repos import AuditEntry

routes = web.RouteTableDef()

FILTERS = ("actor", "action", "target", "since", "until")
MAX_DETAIL = 300
MAX_CURSOR = 64

# What the areas of the log are called (an action is "<area>.<verb>").
AREAS = {
    "activity.": "志愿活动",
    "catalogue.": "积分商品",
    "feedback.": "留言",
    "grid.": "网格",
    "household.": "住户",
    "meeting.": "坝坝会",
    "points.": "积分",
    "push.": "推送",
    "redemption.": "兑换",
    "report.": "报事",
    "schedule.": "定时任务",
    "user.": "工作人员账号",
    "vote.": "投票",
}
VERBS = {
    "create": "新建",
    "edit": "修改",
    "cancel": "取消",
    "delete": "删除",
    "put": "保存",
    "import": "导入",
    "run": "立即执行",
    "locked": "锁定",
    "unlock": "解锁",
    "password": "改密码",
    "award": "奖励",
    "correct": "更正",
    "reply": "回复",
    "confirm": "确认",
    "stock": "调整库存",
    "transfer": "转派",
    "representative": "更换户代表",
    "remove_member": "移除成员",
}


@routes.get(f"{PREFIX}/audit")
@allow(ADMIN)
async def audit(request: web.Request) -> web.StreamResponse:
    query = {name: request.query.get(name, "").strip() for name in FILTERS}
    zone = tz(request)
    keep = audit_log.filter_from(query, zone)
    before = request.query.get("before", "").strip()[:MAX_CURSOR] or None
    page = await audit_log.newest(request.app[keys.AUDIT], keep, before=before)
    filled = {k: v for k, v in query.items() if v}
    older = None
    if page.older is not None:
        older = f"{PREFIX}/audit?" + urlencode({**filled, "before": page.older})
    context = {
        "query": query,
        "entries": [_row(e, zone) for e in page.entries],
        "older": older,
        "paged": before is not None,
        "latest": f"{PREFIX}/audit" + (f"?{urlencode(filled)}" if filled else ""),
        "filtered": any(query.values()),
        "areas": AREAS,
        "reset": f"{PREFIX}/audit",
    }
    return await render(request, "audit/list.html", context, section="/admin/audit")


def action_name(action: str) -> str:
    """``meeting.create`` → ``坝坝会 · 新建`` (the code itself where no name is known)."""
    area, _, verb = action.partition(".")
    area_name = AREAS.get(f"{area}.")
    if area_name is None:
        return action
    return f"{area_name} · {VERBS.get(verb, verb)}"


def detail_text(detail: Mapping[str, Any], zone: ZoneInfo) -> str:
    """``place：社区活动室；closes_at：2026-11-24 20:00`` (times in the community's zone)."""
    parts = [f"{key}：{_value(key, value, zone)}" for key, value in detail.items()]
    text = "；".join(parts)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "…"


def _value(key: str, value: Any, zone: ZoneInfo) -> str:
    if key.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool):
        return local(value, zone) or "—"
    if isinstance(value, list | tuple):
        return "、".join(str(v) for v in value) or "（空）"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _row(entry: AuditEntry, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "actor": entry.actor,
        "action": entry.action,
        "name": action_name(entry.action),
        "target": entry.target,
        "detail": detail_text(entry.detail, zone),
        "at": entry.at,
    }
