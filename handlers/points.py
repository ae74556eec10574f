"""积分, 积分明细 and 兑换: my balance and rank, my ledger page by page, redeem from the catalogue."""

from __future__ import annotations

from bot.conversation.context import Context
from bot.conversation.router import Number, Router, State, Text
from bot.domain import timefmt
from bot.domain.errors import DomainError
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.menu import MainMenu
from handlers.words import NO, YES, list_choice
from storage.activities import ISSUED
from storage.ledger import Entry

HISTORY = "points:history"
PICKING = "points:redeem"
CONFIRMING = "points:redeem-confirm"
PAGE = 10
MORE_WORDS = ("下一页", "更多", "继续", "1")

NO_POINTS = "您还没有志愿积分。参加志愿活动并扫码签到就能获得积分，回复“报名”看看近期活动。"
NO_HISTORY = "您还没有积分记录。"
HISTORY_END = "以上是全部记录。"
EMPTY_CATALOGUE = "目前没有可以兑换的物品，请留意社区通知。"
PICK_HINT = "请回复物品前面的序号，或回复“取消”退出。"
CONFIRM = "兑换“{name}”需要{cost}积分，兑换后您还剩{left}积分。\n1. 确认兑换\n2. 不兑换"
CONFIRM_HINT = "请回复 1 确认兑换，或回复 2 不兑换。"
REDEEMED = (
    "兑换成功！\n兑换码：{code}\n请带上兑换码到社区服务站领取“{name}”。回复“兑换”可再次查看兑换码。"
)
NOT_NOW = "好的，没有兑换。回复“积分”查看积分。"


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("points")

    @router.on(Text("积分", "我的积分", "查积分", "志愿积分"))
    async def standing(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        me = await s.points.standing(msg.source)
        if me.total_entries == 0:
            return NO_POINTS
        lines = [f"您的志愿积分：{me.balance}分"]
        if me.rank is not None:
            lines.append(f"社区排名：第{me.rank}名（共{me.ranked}人有积分）")
        lines.append("最近记录：")
        lines += [line(e, s) for e in me.recent]
        tail = []
        if me.total_entries > len(me.recent):
            tail.append("回复“积分明细”查看全部记录")
        tail.append("回复“兑换”用积分兑换物品")
        lines.append("，".join(tail) + "。")
        return "\n".join(lines)

    menu.add("我的积分", "积分", standing)

    async def history_page(msg: Message, ctx: Context, s: Services, skip: int) -> str:
        total, entries = await s.points.history(msg.source, skip=skip, limit=PAGE)
        if total == 0:
            ctx.clear()
            return NO_HISTORY
        if not entries:
            ctx.clear()
            return HISTORY_END
        pages = (total + PAGE - 1) // PAGE
        page = skip // PAGE + 1
        lines = [f"积分明细（第{page}/{pages}页，共{total}条）："]
        lines += [line(e, s, year=True) for e in entries]
        if skip + len(entries) < total:
            ctx.set_state(HISTORY, skip=skip + len(entries))
            lines.append("回复“下一页”或 1 继续查看，回复“取消”退出。")
        else:
            ctx.clear()
            lines.append(HISTORY_END)
        return "\n".join(lines)

    @router.on(Text("积分明细", "积分记录"))
    async def history(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        return await history_page(msg, ctx, s, 0)

    @router.on(State(HISTORY), Text(*MORE_WORDS))
    async def next_page(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return await history_page(msg, ctx, s, int(ctx.data.get("skip", 0)))

    @router.on(State(HISTORY))
    async def history_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return "回复“下一页”继续查看积分明细，回复“取消”退出。"

    # --- 兑换 ------------------------------------------------------------------------

    @router.on(Text("兑换", "积分兑换", "兑换码"))
    async def catalogue(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        items = [i for i in await s.points.catalogue(active_only=True) if i.stock > 0]
        balance = await s.points.balance(msg.source)
        vouchers = [v for v in await s.points.vouchers_of(msg.source) if v.state == ISSUED]
        lines = []
        if vouchers:
            lines.append("您有待领取的兑换码：")
            lines += [f"· {v.code}（{v.name}）" for v in vouchers]
        if not items:
            lines.append(EMPTY_CATALOGUE)
            return "\n".join(lines)
        ctx.set_state(PICKING, ids=[i.item.number for i in items[:9]])
        lines.append(f"可兑换物品（您有{balance}积分，回复序号兑换）：")
        for n, stocked in enumerate(items[:9], 1):
            item = stocked.item
            lines.append(f"{n}. {item.name}｜{item.cost}积分｜剩余{stocked.stock}件")
        lines.append("回复“取消”退出。")
        return "\n".join(lines)

    menu.add("积分兑换", "兑换", catalogue)

    @router.on(State(PICKING), Number())
    async def pick(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ids: list[int] = list(ctx.data.get("ids", ()))
        n = list_choice(msg, len(ids))
        if isinstance(n, str):
            return n
        stocked = {i.item.number: i for i in await s.points.catalogue(active_only=True)}
        chosen = stocked.get(ids[n - 1])
        if chosen is None or chosen.stock <= 0:
            return "这件物品已经兑完或下架了，请选择其他物品。"
        balance = await s.points.balance(msg.source)
        if balance < chosen.item.cost:
            return (
                f"积分不足：兑换“{chosen.item.name}”需要{chosen.item.cost}积分，您现在有{balance}积分。"
                "\n可以选择其他物品，或回复“取消”退出。"
            )
        ctx.set_state(CONFIRMING, item=chosen.item.number)
        return CONFIRM.format(
            name=chosen.item.name, cost=chosen.item.cost, left=balance - chosen.item.cost
        )

    @router.on(State(PICKING))
    async def pick_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return PICK_HINT

    @router.on(State(CONFIRMING), Text(*YES))
    async def redeem(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number = int(ctx.data["item"])
        ctx.clear()
        try:
            voucher = await s.points.redeem(msg.source, number)
        except DomainError as exc:
            return f"兑换没有成功：{exc}"
        return REDEEMED.format(code=voucher.code, name=voucher.name)

    @router.on(State(CONFIRMING), Text(*NO, "不兑换"))
    async def keep(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        return NOT_NOW

    @router.on(State(CONFIRMING))
    async def confirm_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return CONFIRM_HINT

    return router


def line(entry: Entry, s: Services, *, year: bool = False) -> str:
    t = timefmt.local(entry.at, s.volunteers.tz)
    day = f"{t.year}年{t.month}月{t.day}日" if year else f"{t.month}月{t.day}日"
    sign = "+" if entry.amount > 0 else ""
    return f"{day} {sign}{entry.amount} {entry.reason}"
