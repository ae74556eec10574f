"""Telling a resident something outside a reply: promotion, cancellation, reminders.

A customer-service message reaches a resident only within 48 hours of their last
message; a template message (when the account has one configured) reaches them
any time. A notice that cannot be delivered is logged with WeChat's error code,
never silently dropped, and never fails the change that caused it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.errors import BotError
from bot.redact import mask
from bot.wechat.api_errors import OutOfReplyWindow, ReplyCountExceeded
from bot.wechat.client import WeChatClient

log = logging.getLogger("bot.domain.notify")


class Notifier:
    def __init__(self, wechat: WeChatClient, *, template_id: str = "") -> None:
        self._wechat = wechat
        self._template_id = template_id

    async def tell(
        self, openid: str, text: str, *, fields: Mapping[str, str] | None = None
    ) -> bool:
        """Send ``text``; returns whether WeChat accepted it."""
        try:
            await self._wechat.send_text(openid, text)
            return True
        except (OutOfReplyWindow, ReplyCountExceeded) as exc:
            if not self._template_id:
                log.warning(
                    "notice to %s not delivered (outside the 48 h window, no template): %s",
                    mask(openid),
                    exc,
                )
                return False
        except BotError as exc:
            log.warning("notice to %s not delivered: %s", mask(openid), exc)
            return False
        data = {"first": text.split("\n", 1)[0], **(fields or {}), "remark": text}
        try:
            await self._wechat.send_template(openid, self._template_id, data)
            return True
        except BotError as exc:
            log.warning("template notice to %s not delivered: %s", mask(openid), exc)
            return False
