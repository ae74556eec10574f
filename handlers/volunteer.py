"""报名 / 志愿者 and 我的报名: pick an activity by number, confirm, or cancel one of mine."""

from __future__ import annotations

from bot.conversation.context import Context
from bot.conversation.router import Number, Router, State, Text
from bot.domain import timefmt
from bot.domain.errors import DomainError
from bot.domain.volunteers import Outcome
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import MAX_TEXT_BYTES, Reply
from handlers.menu import MainMenu
from handlers.words import NO, YES, list_choice
from storage.activities import Activity

PICKING = "volunteer:pick"
CONFIRMING = "volunteer:confirm"
MINE = "volunteer:mine"
CANCELLING = "volunteer:cancel"
LIST_SIZE = 9  # more than a phone screen of choices helps no one

NONE_OPEN = "近期没有可以报名的志愿活动。有新活动时，回复“报名”就能看到。"
LIST_HEAD = "近期志愿活动（回复序号查看详情）："
LIST_FOOT = "回复“取消”退出。"
PICK_HINT = "请回复活动前面的序号，或回复“取消”退出。"
CONFIRM_HINT = "请回复 1 确认，或回复 2 返回列表。"
SIGNED_UP = "报名成功！\n《{title}》\n时间：{time}\n地点：{place}\n活动开始前会提醒您；到场后扫描活动签到码签到{earn}。\n回复“我的报名”可查看或取消。"
WAITLISTED = (
    "《{title}》名额已满，已为您加入候补，排第{position}位。有人取消时会自动为您递补并通知您。"
)
ALREADY = "您已经报名了《{title}》，不用重复报名。回复“我的报名”查看。"
ALREADY_WAITING = "您已经在《{title}》的候补名单上，排第{position}位。"
NOTHING_MINE = "您目前没有报名未开始的志愿活动。回复“报名”看看近期活动。"
MINE_HEAD = "您的报名（回复序号可取消）："
CANCEL_ASK = "确定取消《{title}》（{time}）的报名吗？\n1. 确认取消\n2. 不取消"
CANCEL_HINT = "请回复 1 确认取消，或回复 2 保留报名。"
CANCELLED = "已取消《{title}》的报名。"
KEPT = "好的，报名保留。回复“菜单”查看其他服务。"


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("volunteer")

    async def show_list(ctx: Context, s: Services, intro: str = "") -> str:
        activities = (await s.volunteers.upcoming())[:LIST_SIZE]
        if not activities:
            ctx.clear()
            return f"{intro}\n{NONE_OPEN}".strip()
        ctx.clear()
        head = [intro, LIST_HEAD] if intro else [LIST_HEAD]
        budget = MAX_TEXT_BYTES - len("\n".join([*head, LIST_FOOT]).encode()) - 1
        items: list[str] = []
        for i, a in enumerate(activities, 1):
            places = f"剩余{a.places_left}个名额" if a.places_left else "已报满，可候补"
            when = timefmt.span(a.starts_at, a.ends_at, s.volunteers.tz)
            item = f"{i}. {a.title}\n   {when}｜{a.place}\n   {places}｜{a.points}积分"
            # A reply over WeChat's 2048 bytes would be cut mid-list: show fewer, whole.
            budget -= len(item.encode()) + 1
            if budget < 0 and items:
                break
            items.append(item)
        ctx.set_state(PICKING, ids=[a.number for a in activities[: len(items)]])
        return "\n".join([*head, *items, LIST_FOOT])

    @router.on(Text("报名", "志愿者", "志愿活动", "志愿服务"))
    async def start(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return await show_list(ctx, s)

    menu.add("志愿活动报名", "报名", start)

    @router.on(State(PICKING), Number())
    async def pick(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ids: list[int] = list(ctx.data.get("ids", ()))
        n = list_choice(msg, len(ids))
        if isinstance(n, str):
            return n
        try:
            activity = await s.volunteers.get(ids[n - 1])
        except DomainError as exc:
            return await show_list(ctx, s, str(exc))
        if activity.cancelled or activity.starts_at <= s.clock():
            return await show_list(ctx, s, f"《{activity.title}》已不能报名，请看看其他活动。")
        ctx.set_state(CONFIRMING, activity=activity.number)
        return details(activity, s)

    @router.on(State(PICKING))
    async def pick_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return PICK_HINT

    @router.on(State(CONFIRMING), Text(*YES))
    async def confirm(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number = int(ctx.data["activity"])
        ctx.clear()
        try:
            result = await s.volunteers.sign_up(msg.source, number)
        except DomainError as exc:
            return f"{exc}\n回复“报名”查看其他活动。"
        a = result.activity
        if result.outcome is Outcome.CONFIRMED:
            earn = f"可得{a.points}积分" if a.points else ""
            time = timefmt.span(a.starts_at, a.ends_at, s.volunteers.tz)
            return SIGNED_UP.format(title=a.title, time=time, place=a.place, earn=earn)
        if result.outcome is Outcome.WAITLISTED:
            return WAITLISTED.format(title=a.title, position=result.position)
        if result.outcome is Outcome.ALREADY_CONFIRMED:
            return ALREADY.format(title=a.title)
        return ALREADY_WAITING.format(title=a.title, position=result.position)

    @router.on(State(CONFIRMING), Text(*NO, "返回"))
    async def back(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return await show_list(ctx, s)

    @router.on(State(CONFIRMING))
    async def confirm_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return CONFIRM_HINT

    # --- 我的报名 --------------------------------------------------------------------

    @router.on(Text("我的报名", "我的活动"))
    async def mine(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        items = await s.volunteers.mine(msg.source)
        if not items:
            return NOTHING_MINE
        ctx.set_state(MINE, ids=[a.number for _, a in items])
        lines = [MINE_HEAD]
        for i, (signup, a) in enumerate(items, 1):
            if signup.status == "confirmed":
                status = "已签到" if msg.source in a.checked_in else "已报名"
            else:
                status = f"候补第{a.waitlist.index(msg.source) + 1}位"
            lines.append(
                f"{i}. 《{a.title}》{timefmt.span(a.starts_at, a.ends_at, s.volunteers.tz)}｜{status}"
            )
        lines.append(LIST_FOOT)
        return "\n".join(lines)

    menu.add("我的报名", "我的报名", mine)

    @router.on(State(MINE), Number())
    async def pick_mine(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ids: list[int] = list(ctx.data.get("ids", ()))
        n = list_choice(msg, len(ids))
        if isinstance(n, str):
            return n
        activity = await s.volunteers.get(ids[n - 1])
        ctx.set_state(CANCELLING, activity=activity.number)
        time = timefmt.span(activity.starts_at, activity.ends_at, s.volunteers.tz)
        return CANCEL_ASK.format(title=activity.title, time=time)

    @router.on(State(MINE))
    async def mine_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return PICK_HINT

    @router.on(State(CANCELLING), Text(*YES))
    async def cancel_mine(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number = int(ctx.data["activity"])
        ctx.clear()
        try:
            activity = await s.volunteers.cancel_signup(msg.source, number)
        except DomainError as exc:
            return str(exc)
        return CANCELLED.format(title=activity.title)

    @router.on(State(CANCELLING), Text(*NO, "不取消"))
    async def keep_mine(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        return KEPT

    @router.on(State(CANCELLING))
    async def cancel_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return CANCEL_HINT

    return router


def details(a: Activity, s: Services) -> str:
    lines = [
        f"《{a.title}》",
        f"时间：{timefmt.span(a.starts_at, a.ends_at, s.volunteers.tz)}",
        f"地点：{a.place}",
        f"积分：签到可得{a.points}积分" if a.points else "积分：无",
    ]
    if a.description:
        lines.append(f"说明：{a.description}")
    if a.places_left:
        lines.append(f"名额：剩余{a.places_left}个（共{a.capacity}个）")
        lines += ["", "1. 确认报名", "2. 返回列表"]
    else:
        waiting = f"，已有{len(a.waitlist)}人候补" if a.waitlist else ""
        lines.append(f"名额：已报满（共{a.capacity}个）{waiting}")
        lines += ["", "1. 加入候补（有人取消时自动递补）", "2. 返回列表"]
    return "\n".join(lines)
