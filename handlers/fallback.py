"""The last word: anything no flow took gets a short, kind hint instead of silence."""

from __future__ import annotations

from bot.conversation.context import Context
from bot.conversation.router import AnyText, MsgType, Router
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.menu import MENU_STATE, MainMenu

NOT_HEARD = "抱歉，没有听清您的语音。请再说一遍，或者直接打字。"
UNKNOWN = "抱歉，没看懂“{text}”。"
RECEIVED = "已收到。"
_QUOTE_MAX = 20


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("fallback")

    def with_menu(ctx: Context, intro: str) -> str:
        ctx.clear()
        ctx.set_state(MENU_STATE)
        return f"{intro}\n\n{menu.render()}"

    @router.on(AnyText())
    async def unknown_text(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        text = msg.text or ""
        quoted = text if len(text) <= _QUOTE_MAX else text[:_QUOTE_MAX] + "…"
        return with_menu(ctx, UNKNOWN.format(text=quoted))

    @router.on(MsgType("voice"))
    async def unheard(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return NOT_HEARD

    @router.on(MsgType("image", "video", "shortvideo", "location", "link", "miniprogrampage"))
    async def media_outside_flow(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return with_menu(ctx, RECEIVED)

    # Events that need no answer (template/mass results, menu views, location reports,
    # subscribe-message results...) match nothing and are answered with `success`.
    return router
