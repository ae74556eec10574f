"""The office answers residents' 留言: the reply reaches the resident, then it is recorded."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.domain.errors import Invalid, NotFound, Refused
from bot.wechat.api_errors import NotFollowing, OutOfReplyWindow, ReplyCountExceeded
from bot.wechat.client import WeChatClient
from storage.repos import AuditRepo, Feedback, FeedbackReply, FeedbackRepo

log = logging.getLogger("bot.domain.feedback")

MAX_REPLY_CHARS = 600
REPLY_TEMPLATE = "社区回复了您的留言（编号 {number}）：\n{text}"


class FeedbackDesk:
    def __init__(
        self,
        feedback: FeedbackRepo,
        audit: AuditRepo,
        wechat: WeChatClient,
        clock: Callable[[], float],
    ) -> None:
        self._feedback = feedback
        self._audit = audit
        self._wechat = wechat
        self._clock = clock

    async def reply(self, number: int, text: str, *, actor: str) -> Feedback:
        text = text.strip()
        if not text:
            raise Invalid("回复内容不能为空")
        if len(text) > MAX_REPLY_CHARS:
            raise Invalid(f"回复最多{MAX_REPLY_CHARS}个字")
        item = await self._feedback.get(number)
        if item is None:
            raise NotFound(f"没有编号为 {number} 的留言")
        try:
            await self._wechat.send_text(
                item.openid, REPLY_TEMPLATE.format(number=number, text=text)
            )
        except (OutOfReplyWindow, ReplyCountExceeded) as exc:
            # WeChat lets an account write to a resident only within 48 h of their last message.
            raise Refused(
                "居民超过48小时没有和服务号互动，微信不允许直接回复；请等居民再次发消息后回复，或电话联系"
            ) from exc
        except NotFollowing as exc:
            raise Refused("居民已取消关注服务号，无法回复") from exc
        # The resident has the reply now: record it even if this takes a retry.
        saved = await self._feedback.add_reply(number, FeedbackReply(text, actor, self._clock()))
        await self._audit.add(
            actor, "feedback.reply", f"feedback/{number}", {"text": text}, self._clock()
        )
        log.info("%s replied to feedback %s", actor, number)
        return saved
