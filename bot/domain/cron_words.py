"""A five-field cron expression in the words staff use: ``0 9 1 * *`` → ``每月1日 09:00``.

Only shapes that can be said plainly are put in words; anything else (both a
day of the month and a weekday, minute steps within some hours, a weekday step,
an invalid field) is shown as the expression itself, so the description never
claims something the scheduler would not do. Weekdays are standard cron's
(0 or 7 = Sunday, 1 = Monday), as :mod:`bot.domain.schedules` reads them.
Whether an expression is valid is for :func:`bot.domain.schedules.trigger` to say;
this module never raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

WEEKDAY_NAMES = "一二三四五六日"  # Monday first, as staff count a week
MAX_TIMES = 6  # more times of day than this read better as the expression

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAYS = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}


class _Unsaid(Exception):
    """The expression has a shape this module does not put in words."""


def fallback(cron: str) -> str:
    return f"按 cron 表达式“{' '.join(cron.split())}”运行"


def describe(cron: str) -> str:
    """The Chinese description of a standard five-field cron expression (never raises)."""
    fields = cron.split()
    if len(fields) != 5:
        return fallback(cron)
    try:
        return _describe(*fields)
    except _Unsaid:
        return fallback(cron)


def _describe(minute: str, hour: str, dom: str, month: str, dow: str) -> str:
    days = _days(dom, month, dow)
    if minute.startswith("*") and hour == "*":
        every = _step(minute, 60)
        if every is None:
            raise _Unsaid
        times = "每分钟" if every == 1 else f"每{every}分钟"
    else:
        times = _times(minute, hour)
    # "每天 每小时整点" says the day twice.
    return times if days == "每天" and times.startswith("每") else f"{days} {times}"


def _times(minute: str, hour: str) -> str:
    minutes = sorted(_values(minute, 0, 59, {}))
    if hour.startswith("*"):
        every = _step(hour, 24)
        if every is None or len(minutes) != 1:
            raise _Unsaid
        at = "整点" if minutes[0] == 0 else f"第{minutes[0]}分"
        return f"每小时{at}" if every == 1 else f"每{every}小时{at}"
    hours = sorted(_values(hour, 0, 23, {}))
    if len(minutes) * len(hours) <= MAX_TIMES:
        return "、".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes)
    runs = _runs(hours)
    if len(minutes) == 1 and len(runs) == 1:
        (first, last), m = runs[0], minutes[0]
        return f"{first:02d}:{m:02d}至{last:02d}:{m:02d}每小时一次"
    raise _Unsaid


def _step(field: str, span: int) -> int | None:
    """N for ``*`` or ``*/N`` when N divides ``span`` (so the gaps are all equal)."""
    if field == "*":
        return 1
    base, slash, step = field.partition("/")
    if base != "*" or not slash or not step.isdigit():
        return None
    every = int(step)
    return every if 0 < every < span and span % every == 0 else None


def _days(dom: str, month: str, dow: str) -> str:
    if dom != "*" and dow != "*":
        # Standard cron runs when either matches, the scheduler when both do: say neither.
        raise _Unsaid
    months = _values(month, 1, 12, _MONTHS)
    within = "" if len(months) == 12 else _listed(sorted(months), "月")
    if dow != "*":
        if "*/" in dow:
            raise _Unsaid  # a weekday step counts from a different first day in the scheduler
        weekdays = {(d - 1) % 7 for d in _values(dow, 0, 7, _DAYS)}  # Monday = 0
        week = "天" if len(weekdays) == 7 else _weekdays(weekdays)
        return f"每年{within}的每{week}" if within else f"每{week}"
    days = _values(dom, 1, 31, {})
    if len(days) == 31:
        return f"每年{within}的每天" if within else "每天"
    listed = _listed(sorted(days), "日")
    if not within:
        return f"每月{listed}"
    joiner = "" if len(months) == 1 and len(days) == 1 else "的"
    return f"每年{within}{joiner}{listed}"


def _weekdays(days: set[int]) -> str:
    parts = []
    for first, last in _runs(sorted(days)):
        if first == last:
            parts.append(f"周{WEEKDAY_NAMES[first]}")
        elif last == first + 1:
            parts.append(f"周{WEEKDAY_NAMES[first]}、周{WEEKDAY_NAMES[last]}")
        else:
            parts.append(f"周{WEEKDAY_NAMES[first]}至周{WEEKDAY_NAMES[last]}")
    return "、".join(parts)


def _listed(values: Sequence[int], unit: str) -> str:
    """``1日、15日``; three or more in a row as a range: ``1日至7日``."""
    parts = []
    for first, last in _runs(values):
        if first == last:
            parts.append(f"{first}{unit}")
        elif last == first + 1:
            parts.append(f"{first}{unit}、{last}{unit}")
        else:
            parts.append(f"{first}{unit}至{last}{unit}")
    return "、".join(parts)


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted values as runs of consecutive numbers: ``[1, 2, 3, 7]`` → ``[(1, 3), (7, 7)]``."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _values(field: str, low: int, high: int, names: Mapping[str, int]) -> set[int]:
    """The numbers a cron field lists (``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, commas)."""
    found: set[int] = set()
    for part in field.lower().split(","):
        base, slash, step = part.partition("/")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, names), _number(b, names)
        else:
            first = _number(base, names)
            last = high if slash else first
        every = 1
        if slash:
            if not step.isdigit() or int(step) == 0:
                raise _Unsaid
            every = int(step)
        if not low <= first <= last <= high:
            raise _Unsaid
        found.update(range(first, last + 1, every))
    if not found:
        raise _Unsaid
    return found


def _number(text: str, names: Mapping[str, int]) -> int:
    if text in names:
        return names[text]
    if not text.isascii() or not text.isdigit() or len(text) > 2:
        raise _Unsaid
    return int(text)
