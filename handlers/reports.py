"""报事 / 随手拍 and 我的报事: a resident reports a problem in a few short steps.

category → description (text or voice) → optional photo (跳过) → location (WeChat's
location message, or a typed address) → "is it one of these?" for open reports
nearby → confirm → a report number. ``我的报事`` lists my reports; a resolved one
can be rated 1–5 or reopened once.
"""

from __future__ import annotations

from typing import Any

from bot.conversation.context import Context
from bot.conversation.router import AnyText, MsgType, Number, Router, State, Text
from bot.conversation.text import as_number
from bot.domain import timefmt
from bot.domain.errors import DomainError
from bot.domain.reports import STATE_NAMES, Draft
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.menu import MainMenu
from handlers.words import NO, YES, list_choice
from storage.reports import RESOLVED, Photo, Report

CATEGORY = "report:category"
DESCRIBING = "report:text"
PHOTO = "report:photo"
LOCATION = "report:location"
DUPLICATE = "report:duplicate"
CONFIRMING = "report:confirm"
MINE = "report:mine"
RATING = "report:rate"

ASK_TEXT = "请描述一下问题（打字或发语音都可以），比如：“3栋门口下水道堵了，污水漫到路上”。"
ASK_PHOTO = "如果方便，请拍一张照片发过来；没有照片请回复“跳过”。"
ASK_LOCATION = (
    "请发送问题所在的位置：点击输入框旁的“+”，选择“位置”发送；\n"
    "也可以直接输入地址，比如“清源路12号3栋”。"
)
TOO_LONG = "描述最多{limit}个字，您写了{n}个字，请精简后重新发送。"
PHOTO_HINT = "请发送一张照片，或回复“跳过”。"
LOCATION_HINT = "请发送位置，或直接输入地址。"
CONFIRM_HINT = "请回复 1 确认提交，或回复 2 不提交。"
DUPLICATE_HINT = "请回复上面的序号（是同一件事），或回复 0 继续提交新的报事。"
DROPPED = "好的，报事没有提交。回复“菜单”查看可以办理的事项。"
NOTHING_MINE = "您还没有报事。发现问题时，回复“报事”就能告诉网格员。"
MAX_TEXT = 500


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("reports")

    @router.on(Text("报事", "随手拍", "我要报事", "反映问题"))
    async def start(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        ctx.set_state(CATEGORY)
        categories = s.reports.config.categories
        lines = ["请选择问题类别（回复序号）："]
        lines += [f"{i}. {c}" for i, c in enumerate(categories, 1)]
        lines.append("回复“取消”退出。")
        return "\n".join(lines)

    menu.add("报事（随手拍）", "报事", start)

    @router.on(State(CATEGORY), Number())
    async def category(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        categories = s.reports.config.categories
        n = list_choice(msg, len(categories))
        if isinstance(n, str):
            return n
        ctx.set_state(DESCRIBING, category=categories[n - 1])
        return f"类别：{categories[n - 1]}\n{ASK_TEXT}"

    @router.on(State(CATEGORY))
    async def category_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return "请回复类别前面的序号，或回复“取消”退出。"

    @router.on(State(DESCRIBING), AnyText())
    async def describe(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        text = (msg.text or "").strip()
        if len(text) > MAX_TEXT:
            return TOO_LONG.format(limit=MAX_TEXT, n=len(text))
        ctx.set_state(PHOTO, text=text)
        return ASK_PHOTO

    @router.on(State(DESCRIBING), MsgType("voice"))
    async def describe_by_voice(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        # No recognition: keep the voice itself; the grid worker can listen to it.
        ctx.set_state(PHOTO, text="", voice=msg.media_id or "")
        return f"已收到语音。\n{ASK_PHOTO}"

    @router.on(State(DESCRIBING))
    async def describe_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return f"请先用文字或语音描述问题。\n{ASK_TEXT}"

    @router.on(State(PHOTO), MsgType("image"))
    async def photo(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        photos = [
            *ctx.data.get("photos", []),
            {"media_id": msg.media_id or "", "pic_url": msg.pic_url or ""},
        ]
        ctx.set_state(LOCATION, photos=photos)
        return f"已收到照片。\n{ASK_LOCATION}"

    @router.on(State(PHOTO), Text("跳过", "没有", "无", "不用", "0"))
    async def no_photo(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.set_state(LOCATION)
        return ASK_LOCATION

    @router.on(State(PHOTO), MsgType("location"))
    async def location_instead_of_photo(
        msg: Message, ctx: Context, s: Services
    ) -> Reply | str | None:
        return await located(msg, ctx, s)

    @router.on(State(PHOTO))
    async def photo_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return PHOTO_HINT

    @router.on(State(LOCATION), MsgType("location"))
    async def located(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        point = msg.location
        if point is None:
            return LOCATION_HINT
        ctx.set_state(CONFIRMING, lat=point.latitude, lng=point.longitude, label=point.label or "")
        nearby = await s.reports.nearby(str(ctx.data["category"]), point.latitude, point.longitude)
        if not nearby:
            return confirmation(ctx)
        ctx.set_state(DUPLICATE, nearby=[n.report.number for n in nearby])
        lines = ["附近已经有人反映了类似的问题，是其中之一吗？"]
        for i, n in enumerate(nearby, 1):
            r = n.report
            followers = f"，{len(r.followers) + 1}人关注" if r.followers else ""
            lines.append(
                f"{i}. 编号{r.number}（{STATE_NAMES[r.state]}{followers}，约{n.distance_m:.0f}米）{_short(r.text)}"
            )
        lines.append("回复序号表示是同一件事，我们会通知您进展；回复 0 继续提交新的报事。")
        return "\n".join(lines)

    @router.on(State(LOCATION), AnyText())
    async def address(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        text = (msg.text or "").strip()
        if len(text) < 2 or len(text) > 100:
            return "地址请写2到100个字，或发送位置。"
        ctx.set_state(CONFIRMING, label=text, lat=None, lng=None)
        return confirmation(ctx)

    @router.on(State(LOCATION))
    async def location_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return LOCATION_HINT

    @router.on(State(DUPLICATE), Number())
    async def same_as(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ids: list[int] = list(ctx.data.get("nearby", ()))
        n = as_number(msg.text)
        if n == 0:
            ctx.set_state(CONFIRMING)
            return confirmation(ctx)
        if n is None or not 1 <= n <= len(ids):
            return DUPLICATE_HINT
        ctx.clear()
        try:
            report = await s.reports.follow(msg.source, ids[n - 1])
        except DomainError as exc:
            return f"{exc}\n回复“报事”重新开始。"
        return (
            f"好的，您已关注报事（编号 {report.number}），现在共有{len(report.followers) + 1}人反映这个问题。"
            "处理有进展时会通知您。"
        )

    @router.on(State(DUPLICATE), Text("不是", "都不是", "新的"))
    async def not_same(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.set_state(CONFIRMING)
        return confirmation(ctx)

    @router.on(State(DUPLICATE))
    async def duplicate_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return DUPLICATE_HINT

    @router.on(State(CONFIRMING), Text(*YES))
    async def submit(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        d = ctx.data
        draft = Draft(
            category=str(d["category"]),
            text=str(d.get("text", "")),
            photos=tuple(Photo(p["media_id"], p["pic_url"]) for p in d.get("photos", [])),
            voice_media_id=str(d.get("voice", "")),
            lat=d.get("lat"),
            lng=d.get("lng"),
            label=str(d.get("label", "")),
        )
        ctx.clear()
        try:
            report = await s.reports.file(msg.source, draft)
        except DomainError as exc:
            return f"报事没有提交：{exc}\n回复“报事”重新开始。"
        grid = await s.reports.grids.get(report.grid) if report.grid else None
        to = f"“{grid.name}”网格员" if grid else "社区工作人员"
        return f"报事已提交，编号 {report.number}。已转给{to}，处理有进展时会通知您。\n回复“我的报事”查看进度。"

    @router.on(State(CONFIRMING), Text(*NO, "不提交"))
    async def drop(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        return DROPPED

    @router.on(State(CONFIRMING))
    async def confirm_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return CONFIRM_HINT

    # --- 我的报事 --------------------------------------------------------------------

    @router.on(Text("我的报事", "报事进度"))
    async def mine(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        reports = (await s.reports.mine(msg.source))[:9]
        if not reports:
            return NOTHING_MINE
        ctx.set_state(MINE, ids=[r.number for r in reports])
        lines = ["您的报事（回复序号查看详情）："]
        for i, r in enumerate(reports, 1):
            whose = "" if r.reporter == msg.source else "（关注）"
            lines.append(
                f"{i}. 编号{r.number} {r.category}｜{STATE_NAMES[r.state]}{whose}｜{_short(r.text)}"
            )
        return "\n".join(lines)

    menu.add("我的报事", "我的报事", mine)

    @router.on(State(MINE), Number())
    async def detail(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ids: list[int] = list(ctx.data.get("ids", ()))
        n = list_choice(msg, len(ids))
        if isinstance(n, str):
            return n
        report = await s.reports.get(ids[n - 1])
        text = report_details(report, s)
        if report.reporter == msg.source and report.state == RESOLVED:
            ctx.set_state(RATING, number=report.number)
            asks = []
            if report.rating is None:
                asks.append("回复 1–5 给处理结果打分（5分最满意）")
            if not report.reopened:
                asks.append("问题没解决请回复“重新处理”")
            if asks:
                return f"{text}\n" + "；".join(asks) + "。"
        ctx.clear()
        return text

    @router.on(State(MINE))
    async def mine_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return "请回复报事前面的序号，或回复“取消”退出。"

    @router.on(State(RATING), Number())
    async def rate(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number = int(ctx.data["number"])
        stars = as_number(msg.text) or 0
        try:
            await s.reports.rate(msg.source, number, stars)
        except DomainError as exc:
            return str(exc)
        ctx.clear()
        return f"谢谢您的评价（{stars}星）！"

    @router.on(State(RATING), Text("重新处理", "没解决", "没有解决"))
    async def reopen(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number = int(ctx.data["number"])
        ctx.clear()
        try:
            await s.reports.reopen(msg.source, number, "居民反映问题没有解决")
        except DomainError as exc:
            return str(exc)
        return f"报事（编号 {number}）已重新打开，网格员会再次处理。"

    @router.on(State(RATING))
    async def rate_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return "请回复 1–5 打分，或回复“重新处理”，或回复“取消”退出。"

    return router


def confirmation(ctx: Context) -> str:
    d: Any = ctx.data
    place = d.get("label") or (f"{d['lat']:.5f},{d['lng']:.5f}" if d.get("lat") is not None else "")
    photos = len(d.get("photos", []))
    text = d.get("text") or "（语音）"
    return (
        f"请确认您的报事：\n类别：{d['category']}\n内容：{text}\n地点：{place}\n"
        f"照片：{f'{photos}张' if photos else '无'}\n\n1. 确认提交\n2. 不提交"
    )


def report_details(report: Report, s: Services) -> str:
    lines = [
        f"报事编号 {report.number}（{report.category}）：{STATE_NAMES[report.state]}",
        f"内容：{report.text or '（语音）'}",
        f"提交时间：{timefmt.when(report.created_at, s.reports.tz)}",
    ]
    # Residents see what happened and the workers' notes, never who else reported.
    for t in report.history:
        if t.action in ("accepted", "resolved", "rejected", "reopened", "transferred"):
            label = {
                "accepted": "已接单",
                "resolved": "已办结",
                "rejected": "已退回",
                "reopened": "重新打开",
                "transferred": "已转派",
            }[t.action]
            note = f"：{t.note}" if t.note and t.action != "transferred" else ""
            lines.append(f"· {timefmt.when(t.at, s.reports.tz)} {label}{note}")
    if report.rating is not None:
        lines.append(f"您的评价：{report.rating}星")
    return "\n".join(lines)


def _short(text: str, limit: int = 16) -> str:
    if not text:
        return "（语音）"
    return text if len(text) <= limit else text[:limit] + "…"
