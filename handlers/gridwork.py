"""Grid workers' commands: 待办, 接单 N, 办结 N 说明, 退回 N 原因, 转派 N 网格.

Only the workers of a report's grid, its leader, or a community admin may act on
it; the rule lives in the domain (:class:`bot.domain.reports.ReportDesk`).
"""

from __future__ import annotations

import re

from bot.conversation.context import Context
from bot.conversation.router import MsgType, Router, State, Text, TextPrefix
from bot.domain import timefmt
from bot.domain.errors import DomainError
from bot.domain.reports import STATE_NAMES
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.menu import MainMenu
from storage.reports import Photo

RESOLVE_PHOTO = "grid:resolve-photo"
COMMAND = re.compile(r"^(接单|办结|退回|转派)\s*#?(\d{1,9})?\s*(.*)$", re.S)
NOT_STAFF = "这是网格员使用的指令。居民反映问题请回复“报事”。"
USAGE = {
    "接单": "格式：接单 编号，例如“接单 12”。",
    "办结": "格式：办结 编号 说明，例如“办结 12 已疏通下水道”。",
    "退回": "格式：退回 编号 原因，例如“退回 12 不属于本社区”或“退回 12 重复 8”。",
    "转派": "格式：转派 编号 网格名，例如“转派 12 二网格”。",
}


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("gridwork")

    @router.on(Text("待办", "我的待办"))
    async def todo(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        if not await s.reports.is_staff(msg.source):
            return NOT_STAFF
        ctx.clear()
        reports = await s.reports.todo(msg.source)
        if not reports:
            return "目前没有待处理的报事。"
        lines = [f"待处理的报事（{len(reports)}件，最早的在前）："]
        for r in reports[:15]:
            place = r.label or "见位置"
            lines.append(
                f"· 编号{r.number} {r.category}｜{STATE_NAMES[r.state]}｜"
                f"{timefmt.when(r.created_at, s.reports.tz)}｜{place}｜{(r.text or '（语音）')[:20]}"
            )
        if len(reports) > 15:
            lines.append(f"……还有{len(reports) - 15}件")
        lines.append("回复“接单 编号”接单，“办结 编号 说明”办结。")
        return "\n".join(lines)

    @router.on(TextPrefix("接单", "办结", "退回", "转派"))
    async def command(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        if not await s.reports.is_staff(msg.source):
            return NOT_STAFF
        m = COMMAND.match((msg.text or "").strip())
        if m is None or m.group(2) is None:
            verb = (msg.text or "")[:2]
            return USAGE.get(verb, USAGE["接单"])
        verb, number, rest = m.group(1), int(m.group(2)), m.group(3).strip()
        desk = s.reports
        try:
            if verb == "接单":
                report = await desk.accept(msg.source, number)
                mine = report.assignee == msg.source
                return (
                    f"已接单：报事 {number}（{report.category}）。办好后回复“办结 {number} 说明”。"
                    if mine
                    else f"报事 {number} 已由其他网格员接单。"
                )
            if verb == "办结":
                if not rest:
                    return USAGE["办结"]
                await desk.resolve(msg.source, number, rest)
                ctx.clear()
                ctx.set_state(RESOLVE_PHOTO, number=number)
                return f"报事 {number} 已办结，已通知居民。如需附上处理后的照片，请直接发送；不需要请回复“跳过”。"
            if verb == "退回":
                if not rest:
                    return USAGE["退回"]
                report = await desk.reject(msg.source, number, rest)
                merged = f"，已合并到报事 {report.duplicate_of}" if report.duplicate_of else ""
                return f"报事 {number} 已退回{merged}，已通知居民。"
            if not rest:
                return USAGE["转派"]
            report = await desk.transfer(msg.source, number, rest)
            grid = await desk.grids.get(report.grid)
            return f"报事 {number} 已转派到“{grid.name if grid else rest}”，已通知该网格的网格员。"
        except DomainError as exc:
            return str(exc)

    @router.on(State(RESOLVE_PHOTO), MsgType("image"))
    async def resolve_photo(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number = int(ctx.data["number"])
        ctx.clear()
        try:
            await s.reports.add_photo(
                msg.source, number, Photo(msg.media_id or "", msg.pic_url or "")
            )
        except DomainError as exc:
            return str(exc)
        return f"照片已附到报事 {number}。"

    @router.on(State(RESOLVE_PHOTO))
    async def no_resolve_photo(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        return "好的，不附照片。回复“待办”查看其他报事。"

    return router
