"""留言: a resident leaves a message for the community office, in two steps."""

from __future__ import annotations

from bot.conversation.context import Context
from bot.conversation.router import AnyText, Router, State, Text
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.menu import MainMenu
from handlers.words import NO, YES

KEYWORD = "留言"
ASK = "请直接输入您想对社区说的话（打字或发语音都可以）。\n回复“取消”退出。"
ONLY_TEXT = "留言请用文字或语音。\n回复“取消”退出。"
TOO_LONG = "留言最多{limit}个字，您写了{n}个字，请精简后重新发送。"
CONFIRM = "您要提交的留言是：\n“{text}”\n\n1. 确认提交\n2. 不提交"
ASK_CONFIRM = "请回复 1 确认提交，或回复 2 不提交。"
DONE = "留言已提交，编号 {number}。社区工作人员会尽快查看。"
DROPPED = "好的，留言没有提交。回复“菜单”查看可以办理的事项。"
MAX_CHARS = 500

WRITING = "feedback:text"
CONFIRMING = "feedback:confirm"


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("feedback")

    @router.on(Text(KEYWORD, "意见", "建议"))
    async def start(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        ctx.set_state(WRITING)
        return ASK

    menu.add("给社区留言", KEYWORD, start)

    @router.on(State(WRITING), AnyText())
    async def write(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        text = (msg.text or "").strip()
        if len(text) > MAX_CHARS:
            return TOO_LONG.format(limit=MAX_CHARS, n=len(text))
        ctx.set_state(CONFIRMING, text=text)
        return CONFIRM.format(text=text)

    @router.on(State(WRITING))
    async def not_text(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return ONLY_TEXT

    @router.on(State(CONFIRMING), Text(*YES))
    async def submit(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        saved = await s.feedback.add(msg.source, str(ctx.data["text"]), s.clock())
        ctx.clear()
        return DONE.format(number=saved.number)

    @router.on(State(CONFIRMING), Text(*NO, "不提交"))
    async def drop(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        return DROPPED

    @router.on(State(CONFIRMING))
    async def unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return ASK_CONFIRM

    return router
