"""Cron expressions in the words staff read on the schedule pages."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from bot.domain.cron_words import describe
from bot.domain.errors import Invalid
from bot.domain.schedules import next_runs


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 9 1 * *", "每月1日 09:00"),
        ("30 8 15 * *", "每月15日 08:30"),
        ("0 9 * * *", "每天 09:00"),
        ("0 18 * * *", "每天 18:00"),
        ("0 9 * * 1", "每周一 09:00"),
        ("0 9 * * 1-5", "每周一至周五 09:00"),
        ("0 9 * * mon-fri", "每周一至周五 09:00"),
        ("0 8 * * 6,0", "每周六、周日 08:00"),
        ("0 8 * * 6,7", "每周六、周日 08:00"),
        ("0 8 * * 0", "每周日 08:00"),
        ("0 8 * * 1,3,5", "每周一、周三、周五 08:00"),
        ("0 8 * * 0-6", "每天 08:00"),
        ("0 9 1,15 * *", "每月1日、15日 09:00"),
        ("0 9 1-7 * *", "每月1日至7日 09:00"),
        ("0 9 1 1 *", "每年1月1日 09:00"),
        ("0 9 1 1,7 *", "每年1月、7月的1日 09:00"),
        ("0 9 * 12 *", "每年12月的每天 09:00"),
        ("0 9 * 12 1", "每年12月的每周一 09:00"),
        ("0 9,18 * * *", "每天 09:00、18:00"),
        ("0 9-17 * * 1-5", "每周一至周五 09:00至17:00每小时一次"),
        ("*/30 * * * *", "每30分钟"),
        ("* * * * *", "每分钟"),
        ("0 * * * *", "每小时整点"),
        ("15 */2 * * *", "每2小时第15分"),
        ("*/15 * * * 1", "每周一 每15分钟"),
        ("  0  9  1  *  * ", "每月1日 09:00"),
    ],
)
def test_common_expressions_read_as_staff_say_them(cron: str, words: str) -> None:
    assert describe(cron) == words


@pytest.mark.parametrize(
    "cron",
    [
        "0 9 1 * 1",  # a day of the month and a weekday: cron and the scheduler disagree
        "*/7 * * * *",  # the last gap of the hour is shorter
        "*/15 9-17 * * *",
        "0 9 * * */2",  # the scheduler counts weekday steps from Monday
        "0 0-23/2 * * *",
        "@monthly",
        "0 9 1 *",
        "",
    ],
)
def test_what_cannot_be_said_simply_shows_the_expression(cron: str) -> None:
    assert describe(cron) == f"按 cron 表达式“{' '.join(cron.split())}”运行"


@pytest.mark.parametrize(
    "cron",
    [
        "61 8 * * *",
        "0 25 * * *",
        "0 9 0 * *",
        "0 9 1 13 *",
        "a b c d e",
        "0 9 * * 8",
        "0 9 5-1 * *",
        "0 9 */0 * *",
    ],
)
def test_an_invalid_expression_does_not_crash_and_the_domain_reports_it(cron: str) -> None:
    assert describe(cron).startswith("按 cron 表达式")
    with pytest.raises(Invalid, match="cron 表达式无效"):
        next_runs(cron, ZoneInfo("Asia/Shanghai"), 0.0)


def test_the_words_agree_with_when_the_scheduler_runs() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    after = 1_800_000_000.0
    weekdays = {t.weekday() for t in next_runs("0 9 * * 1-5", tz, after, 10)}
    assert weekdays == {0, 1, 2, 3, 4}  # 周一至周五
    weekend = {t.weekday() for t in next_runs("0 8 * * 6,0", tz, after, 6)}
    assert weekend == {5, 6}  # 周六、周日
    assert {(t.day, t.hour, t.minute) for t in next_runs("30 8 15 * *", tz, after)} == {(15, 8, 30)}
