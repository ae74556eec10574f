"""绑定 / 我的家庭 / 移交户代表 / 解除绑定: a resident's household (户).

Binding is address → 称呼 (or 跳过) → confirm. The first resident of a household
becomes its representative (户代表), who answers the 坝坝会 and votes for it; the
representative can hand over to another member. A flow that needed a household
first (``坝坝会``) passes its keyword as ``then`` and continues after binding.
"""

from __future__ import annotations

from bot.conversation.context import Context
from bot.conversation.router import AnyText, Number, Router, State, Text
from bot.domain import timefmt
from bot.domain.errors import DomainError
from bot.domain.households import MAX_NAME, Address, Outcome
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.menu import MainMenu
from handlers.words import NO, YES, list_choice
from storage.households import Household

ADDRESS = "household:address"
NAMING = "household:name"
CONFIRMING = "household:confirm"
HANDOVER = "household:handover"
HANDOVER_CONFIRM = "household:handover-confirm"
LEAVING = "household:leave"

BIND_WORDS = ("绑定", "绑定房屋", "绑定住址", "绑定地址", "改绑", "房屋绑定")
MINE_WORDS = ("我的家庭", "我家", "我的房屋", "家庭成员")
HANDOVER_WORDS = ("移交户代表", "转让户代表", "更换户代表")
LEAVE_WORDS = ("解除绑定", "解绑", "退出家庭")
KEYWORDS = (*BIND_WORDS, *MINE_WORDS, *HANDOVER_WORDS, *LEAVE_WORDS)
SKIP = ("跳过", "不填", "0", "无", "不用")

ASK_ADDRESS = "请发送您家的地址（楼栋、单元、房号），例如“{example}”。\n回复“取消”退出。"
ASK_NAME = "请告诉我们您的称呼（如“王阿姨”“李先生”），方便家人和社区认出您；不想填请回复“跳过”。"
NAME_TOO_LONG = "称呼最多{limit}个字，请短一点。"
CONFIRM = "请确认：\n地址：{label}\n称呼：{name}\n{role}\n1. 确认绑定\n2. 重新填写"
CONFIRM_HINT = "请回复 1 确认绑定，或回复 2 重新填写。"
BOUND_REPRESENTATIVE = (
    "绑定成功！您是{label}的户代表：坝坝会的参会答复和投票由您代表全家。\n家人也可以绑定同一地址。"
)
BOUND_MEMBER = (
    "绑定成功！您已加入{label}，户代表是{rep}。坝坝会的答复和投票以户代表为准，您的意见会转告TA。"
)
ALREADY = "您已经绑定了{label}，不用重复绑定。"
NOT_BOUND = "您还没有绑定房屋。"
NO_OTHER = "您家还没有其他成员绑定。请家人先回复“绑定”并发送同一地址，再来移交。"
HANDOVER_HEAD = "要把户代表交给哪位家人？"
HANDOVER_HINT = "请回复家人前面的序号，或回复“取消”退出。"
HANDOVER_ASK = (
    "确定把户代表交给{who}吗？交出后，坝坝会答复和投票由TA代表全家。\n1. 确认移交\n2. 不移交"
)
HANDOVER_CONFIRM_HINT = "请回复 1 确认移交，或回复 2 不移交。"
HANDED_OVER = "已把户代表交给{who}，并通知了TA。"
LEAVE_ASK = "确定解除与{label}的绑定吗？{note}\n1. 确认解绑\n2. 不解绑"
LEAVE_HINT = "请回复 1 确认解绑，或回复 2 不解绑。"
LEFT = "已解除与{label}的绑定。需要时回复“绑定”重新绑定。"
KEPT = "好的，保持不变。回复“菜单”查看其他服务。"


def start_binding(ctx: Context, s: Services, *, intro: str = "", then: str = "") -> str:
    """Ask for the address; ``then`` is a menu keyword to continue with once bound."""
    ctx.clear()
    ctx.set_state(ADDRESS, then=then)
    ask = ASK_ADDRESS.format(example=s.households.config.address_example)
    return f"{intro}\n{ask}" if intro else ask


def who(household: Household, openid: str) -> str:
    """A member as their family reads it: their 称呼, or 一位家人."""
    member = household.member(openid)
    return f"“{member.name}”" if member and member.name else "一位家人"


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("household")

    # Keywords first: a keyword typed inside one of these flows starts that keyword.

    @router.on(Text(*BIND_WORDS))
    async def bind_start(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        household = await s.households.of(msg.source)
        if household is None:
            return start_binding(ctx, s)
        role = "户代表" if household.representative == msg.source else "家庭成员"
        return start_binding(
            ctx,
            s,
            intro=f"您已绑定{household.label}（{role}）。如需改绑到别的地址，请发送新地址；"
            "回复“取消”保持不变。",
        )

    @router.on(Text(*MINE_WORDS))
    async def mine(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        household = await s.households.of(msg.source)
        if household is None:
            return start_binding(ctx, s, intro=NOT_BOUND)
        ctx.clear()
        return describe(household, msg.source, s)

    @router.on(Text(*HANDOVER_WORDS))
    async def handover(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        household = await s.households.of(msg.source)
        if household is None:
            return f"{NOT_BOUND}回复“绑定”绑定您家的地址。"
        if household.representative != msg.source:
            return (
                f"只有户代表可以移交户代表。您家的户代表是"
                f"{who(household, household.representative)}。"
            )
        others = [m for m in household.members if m.openid != msg.source]
        if not others:
            return NO_OTHER
        ctx.set_state(HANDOVER, ids=[m.openid for m in others])
        lines = [HANDOVER_HEAD]
        for i, m in enumerate(others, 1):
            joined = timefmt.local(m.joined_at, s.assembly.tz)
            lines.append(f"{i}. {m.name or '未留称呼的家人'}（{joined.month}月{joined.day}日绑定）")
        lines.append("回复序号；回复“取消”退出。")
        return "\n".join(lines)

    @router.on(Text(*LEAVE_WORDS))
    async def leave(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        household = await s.households.of(msg.source)
        if household is None:
            return NOT_BOUND
        note = ""
        if household.representative == msg.source and len(household.members) > 1:
            note = "\n解绑后，户代表会交给最早绑定的家人。"
        ctx.set_state(LEAVING)
        return LEAVE_ASK.format(label=household.label, note=note)

    # --- binding --------------------------------------------------------------------

    @router.on(State(ADDRESS), AnyText())
    async def address(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        try:
            parsed = s.households.parse(msg.text or "")
        except DomainError as exc:
            return f"{exc}\n回复“取消”退出。"
        existing = await s.households.find(parsed)
        if existing is None and not s.households.config.open_binding:
            return (
                f"没有找到{parsed.label}。请核对地址后重新发送，或联系社区工作人员登记。"
                "\n回复“取消”退出。"
            )
        ctx.set_state(NAMING, building=parsed.building, unit=parsed.unit, room=parsed.room)
        return f"地址：{parsed.label}\n{ASK_NAME}"

    @router.on(State(ADDRESS))
    async def address_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return ASK_ADDRESS.format(example=s.households.config.address_example)

    @router.on(State(NAMING), AnyText())
    async def name(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        text = (msg.text or "").strip()
        if text in SKIP:
            text = ""
        if len(text) > MAX_NAME:
            return NAME_TOO_LONG.format(limit=MAX_NAME)
        parsed = _address(ctx)
        existing = await s.households.find(parsed)
        if existing is None or not existing.members:
            role = "您是这一户第一个绑定的，将成为户代表。"
        else:
            role = f"这一户已有家人绑定，户代表是{who(existing, existing.representative)}；您将作为家庭成员加入。"
        ctx.set_state(CONFIRMING, name=text)
        return CONFIRM.format(label=parsed.label, name=text or "（未填）", role=role)

    @router.on(State(NAMING))
    async def name_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return ASK_NAME

    @router.on(State(CONFIRMING), Text(*YES))
    async def confirm(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        parsed = _address(ctx)
        then = str(ctx.data.get("then", ""))
        name_given = str(ctx.data.get("name", ""))
        ctx.clear()
        try:
            result = await s.households.bind(msg.source, parsed, name_given)
        except DomainError as exc:
            return f"{exc}\n回复“绑定”重新填写。"
        household = result.household
        if result.outcome is Outcome.ALREADY:
            done = ALREADY.format(label=household.label)
        elif result.outcome is Outcome.REPRESENTATIVE:
            done = BOUND_REPRESENTATIVE.format(label=household.label)
        else:
            done = BOUND_MEMBER.format(
                label=household.label, rep=who(household, household.representative)
            )
        if result.left is not None:
            done = f"已解除与{result.left.label}的绑定。\n{done}"
        entry = menu.by_keyword(then) if then else None
        if entry is None:
            return done
        follow = await entry.start(msg, ctx, s)
        return f"{done}\n\n{follow}" if isinstance(follow, str) else done

    @router.on(State(CONFIRMING), Text(*NO, "重新填写"))
    async def again(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return start_binding(ctx, s, then=str(ctx.data.get("then", "")))

    @router.on(State(CONFIRMING))
    async def confirm_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return CONFIRM_HINT

    # --- handover -------------------------------------------------------------------

    @router.on(State(HANDOVER), Number())
    async def pick_heir(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ids: list[str] = list(ctx.data.get("ids", ()))
        n = list_choice(msg, len(ids))
        if isinstance(n, str):
            return n
        household = await s.households.of(msg.source)
        if household is None or household.member(ids[n - 1]) is None:
            ctx.clear()
            return "这位家人已经不在您家了，请回复“移交户代表”重新选择。"
        ctx.set_state(HANDOVER_CONFIRM, to=ids[n - 1])
        return HANDOVER_ASK.format(who=who(household, ids[n - 1]))

    @router.on(State(HANDOVER))
    async def heir_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return HANDOVER_HINT

    @router.on(State(HANDOVER_CONFIRM), Text(*YES))
    async def hand_over(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        to = str(ctx.data["to"])
        ctx.clear()
        try:
            household = await s.households.hand_over(msg.source, to)
        except DomainError as exc:
            return str(exc)
        return HANDED_OVER.format(who=who(household, to))

    @router.on(State(HANDOVER_CONFIRM), Text(*NO, "不移交"))
    async def keep_role(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        return KEPT

    @router.on(State(HANDOVER_CONFIRM))
    async def handover_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return HANDOVER_CONFIRM_HINT

    # --- leaving --------------------------------------------------------------------

    @router.on(State(LEAVING), Text(*YES))
    async def leave_confirmed(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        try:
            household = await s.households.leave(msg.source)
        except DomainError as exc:
            return str(exc)
        return LEFT.format(label=household.label)

    @router.on(State(LEAVING), Text(*NO, "不解绑"))
    async def stay(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        return KEPT

    @router.on(State(LEAVING))
    async def leave_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return LEAVE_HINT

    return router


def describe(household: Household, openid: str, s: Services) -> str:
    representative = household.representative == openid
    names = [
        (m.name or "未留称呼的家人") + ("（您）" if m.openid == openid else "")
        for m in household.members
    ]
    lines = [
        f"您家：{household.label}",
        "户代表：您" if representative else f"户代表：{who(household, household.representative)}",
        f"已绑定的家人（{len(names)}人）：{'、'.join(names)}",
    ]
    if representative and len(household.members) > 1:
        lines.append("回复“移交户代表”可以把户代表交给家人。")
    lines.append("回复“解除绑定”解绑；回复“绑定”改绑其他地址。")
    return "\n".join(lines)


def _address(ctx: Context) -> Address:
    return Address(str(ctx.data["building"]), str(ctx.data["unit"]), str(ctx.data["room"]))
