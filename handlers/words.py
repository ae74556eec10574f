"""Answers every confirmation step accepts (PRODUCT: 确认/是/1 and 取消/否/2)."""

from __future__ import annotations

YES = ("确认", "是", "1", "确定", "好", "对")
# 取消 itself is caught first by the global 取消, which leaves the flow: the same effect.
NO = ("否", "2", "不", "不要", "不用了")
