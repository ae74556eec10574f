"""Normalising what residents type or say, so keywords and numbers match."""

from __future__ import annotations

# Speech recognition writes small numbers as characters; elderly residents often answer by voice.
_CN_DIGITS = {
    "零": "0",
    "一": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
    "十": "10",
}
_FULL_WIDTH = str.maketrans("０１２３４５６７８９　", "0123456789 ")


def normalize(text: str) -> str:
    """Trim, fold full-width digits and spaces, and read a lone Chinese numeral as a digit."""
    folded = text.translate(_FULL_WIDTH).strip()
    return _CN_DIGITS.get(folded, folded)


def as_number(text: str | None) -> int | None:
    """The option number a resident replied with, or ``None``."""
    if text is None:
        return None
    value = normalize(text)
    if value.isascii() and value.isdigit() and len(value) <= 6:
        return int(value)
    return None
