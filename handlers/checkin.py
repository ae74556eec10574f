"""Check-in: a volunteer scans the activity's QR code (a ``SCAN``, or ``subscribe`` for a new follower)."""

from __future__ import annotations

from bot.conversation.context import Context
from bot.conversation.router import Filter, Router
from bot.domain.errors import DomainError
from bot.domain.volunteers import scene_activity
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.menu import MainMenu

FIRST = "签到成功！《{title}》\n{earned}谢谢您为社区出力！"
EARNED = "已为您记入{points}积分，现在共有{balance}积分。\n"
AGAIN = "您已经签到过《{title}》了，积分只记一次{balance}。"
NEW_FOLLOWER = "欢迎关注社区共治服务号！\n"
MORE = "\n回复“积分”查看积分，回复“菜单”查看更多服务。"


class ActivityScene(Filter):
    """A scan of an activity's check-in code."""

    def __call__(self, msg: Message, ctx: Context) -> bool:
        return msg.event in ("scan", "subscribe") and scene_activity(msg.scene) is not None


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("checkin")

    @router.on(ActivityScene())
    async def check_in(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        intro = ""
        if msg.event == "subscribe":
            await s.residents.set_subscribed(msg.source, True, s.clock())
            intro = NEW_FOLLOWER
        number = scene_activity(msg.scene)
        assert number is not None  # the filter checked it
        # A scan leaves whatever flow was open: the resident's attention is elsewhere now.
        ctx.clear()
        try:
            result = await s.volunteers.check_in(msg.source, number)
        except DomainError as exc:
            return f"{intro}{exc}{MORE}"
        entry = result.entry
        total = await s.points.balance(msg.source) if entry else 0
        if result.first:
            earned = EARNED.format(points=entry.amount, balance=total) if entry else ""
            return f"{intro}{FIRST.format(title=result.activity.title, earned=earned)}{MORE}"
        balance = f"（现在共有{total}积分）" if entry else ""
        return f"{intro}{AGAIN.format(title=result.activity.title, balance=balance)}{MORE}"

    return router
