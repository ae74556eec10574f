"""The conversation engine: lock the user, load their state, run one handler, save.

Handlers get a typed message and a context and return a reply; they never see
XML, HTTP or crypto, and they never manage state persistence themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.conversation.context import Context
from bot.conversation.router import Router
from bot.coordination.base import UserLock
from bot.redact import mask
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply, TextReply
from storage.repos import ConversationRepo

log = logging.getLogger("bot.conversation")

# States under this prefix are navigation, not a half-done task: expiring them needs no notice.
QUIET_PREFIX = "menu:"


def expiry_notice(minutes: float) -> str:
    return f"您上次的操作超过{minutes:g}分钟没有完成，已自动结束。"


class Engine:
    def __init__(
        self,
        router: Router[Services],
        conversations: ConversationRepo,
        locks: UserLock,
        services: Services,
        *,
        idle_minutes: float,
        lock_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._router = router
        self._conversations = conversations
        self._locks = locks
        self._services = services
        self._idle_minutes = idle_minutes
        self._idle_seconds = idle_minutes * 60
        self._lock_timeout = lock_timeout
        self._clock = clock

    async def handle(self, msg: Message) -> Reply | None:
        async with self._locks.hold(msg.source, self._lock_timeout):
            ctx = await self._load(msg.source)
            handler = self._router.match(msg, ctx)
            if handler is None:
                reply = None
            else:
                result = await handler(msg, ctx, self._services)
                reply = TextReply(result) if isinstance(result, str) else result
            if ctx.changed or ctx.expired_state is not None:
                await self._conversations.save(msg.source, ctx.state, ctx.data, self._clock())
        if ctx.expired_state is not None and not ctx.expired_state.startswith(QUIET_PREFIX):
            log.info("flow %s of %s expired", ctx.expired_state, mask(msg.source))
            notice = expiry_notice(self._idle_minutes)
            if isinstance(reply, TextReply):
                return TextReply(f"{notice}\n\n{reply.content}")
            if reply is None and not msg.is_event:
                return TextReply(notice)
        return reply

    async def _load(self, openid: str) -> Context:
        saved = await self._conversations.load(openid)
        if saved is None:
            return Context(openid)
        if saved.state is not None and self._clock() - saved.updated_at > self._idle_seconds:
            return Context(openid, expired_state=saved.state)
        return Context(openid, saved.state, saved.data)
