"""Times as residents read them, and as staff type them, in the community's timezone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.errors import Invalid

WEEKDAYS = "一二三四五六日"


def local(at: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at, tz)


def when(at: float, tz: ZoneInfo) -> str:
    """``11月28日（周六）19:00``."""
    t = local(at, tz)
    return f"{t.month}月{t.day}日（周{WEEKDAYS[t.weekday()]}）{t:%H:%M}"


def span(starts: float, ends: float, tz: ZoneInfo) -> str:
    """``11月28日（周六）19:00–21:00``; the end's date is named only if it differs."""
    a, b = local(starts, tz), local(ends, tz)
    end = f"{b:%H:%M}" if a.date() == b.date() else when(ends, tz)
    return f"{when(starts, tz)}–{end}"


def parse(value: object, tz: ZoneInfo, field: str) -> float:
    """An ISO 8601 time (local to ``tz`` when it has no offset) or epoch seconds."""
    if isinstance(value, bool):
        raise Invalid(f"{field} 必须是时间（如 2026-12-05T19:00）")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise Invalid(f"{field} 必须是时间（如 2026-12-05T19:00）")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise Invalid(f"{field} 不是有效的时间：{value[:40]}（格式如 2026-12-05T19:00）") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.timestamp()


def iso(at: float, tz: ZoneInfo) -> str:
    return local(at, tz).isoformat(timespec="minutes")
