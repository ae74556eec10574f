"""What residents answer: confirmation words (PRODUCT: 确认/是/1 and 取消/否/2), list numbers."""

from __future__ import annotations

from bot.conversation.text import as_number
from bot.wechat.messages import Message

YES = ("确认", "是", "1", "确定", "好", "对")
# 取消 itself is caught first by the global 取消, which leaves the flow: the same effect.
NO = ("否", "2", "不", "不要", "不用了")

OUT_OF_RANGE = "没有第{n}项，请回复 1–{k} 之间的序号。"


def list_choice(msg: Message, count: int) -> int | str:
    """The number (1-based) the resident chose from a list of ``count``, or the hint to send."""
    n = as_number(msg.text) or 0
    return n if 1 <= n <= count else OUT_OF_RANGE.format(n=n, k=count)
