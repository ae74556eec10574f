"""What works everywhere: follow/unfollow, 帮助/菜单, 取消, and menu numbers."""

from __future__ import annotations

from bot.conversation.context import Context
from bot.conversation.router import Event, NoState, Number, Router, State, Text
from bot.conversation.text import as_number
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.menu import MENU_STATE, MainMenu

WELCOME = "您好，欢迎关注社区共治服务号！在这里可以和社区一起把家门口的事办好。"
CANCELLED = "已退出当前操作。"
NOTHING_TO_CANCEL = "当前没有进行中的操作。"
BAD_QR = "这个二维码暂时无法识别，请联系社区工作人员。"
GREETING = "您好！请问要办什么事？"
GREETING_WORDS = ("你好", "您好", "在吗", "在不在", "有人吗", "hello", "hi", "嗨")
HELP_WORDS = ("帮助", "菜单", "help", "?", "？", "主菜单")
CANCEL_WORDS = ("取消", "退出")


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("basics")

    def show_menu(ctx: Context, intro: str = "") -> str:
        ctx.clear()
        ctx.set_state(MENU_STATE)
        return f"{intro}\n\n{menu.render()}" if intro else menu.render()

    @router.on(Event("subscribe"))
    async def welcome(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        await s.residents.set_subscribed(msg.source, True, s.clock())
        return show_menu(ctx, WELCOME)

    @router.on(Event("unsubscribe"))
    async def farewell(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        await s.residents.set_subscribed(msg.source, False, s.clock())
        ctx.clear()
        return None  # WeChat delivers nothing to someone who just left.

    @router.on(Event("scan"))
    async def unknown_scene(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return BAD_QR

    @router.on(Text(*HELP_WORDS))
    async def help_menu(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return show_menu(ctx)

    @router.on(Text(*GREETING_WORDS), NoState() | State(MENU_STATE))
    async def greet(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return show_menu(ctx, GREETING)

    @router.on(Text(*CANCEL_WORDS))
    async def cancel(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        in_flow = ctx.state is not None and ctx.state != MENU_STATE
        ctx.clear()
        return f"{CANCELLED if in_flow else NOTHING_TO_CANCEL}回复“菜单”查看可以办理的事项。"

    @router.on(Event("click"))
    async def menu_button(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        # Custom-menu buttons carry a keyword as their key, so a button is a typed keyword.
        entry = menu.by_keyword(msg.event_key or "")
        if entry is None:
            return show_menu(ctx)
        ctx.clear()
        return await entry.start(msg, ctx, s)

    @router.on(State(MENU_STATE) | NoState(), Number())
    async def menu_number(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number = as_number(msg.text) or 0
        entry = menu.entry(number)
        if entry is None:
            return show_menu(ctx, f"没有第{number}项，请回复 1–{len(menu)} 之间的数字。")
        ctx.clear()
        return await entry.start(msg, ctx, s)

    return router
