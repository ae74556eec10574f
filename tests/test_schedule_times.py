"""When schedules fire, in the community's timezone (pure time arithmetic, no server)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.domain.errors import Invalid
from bot.domain.schedules import ASSEMBLY_CALL, latest_fire, next_runs

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


def test_the_monthly_call_fires_on_the_first_at_nine_shanghai_time() -> None:
    runs = next_runs(ASSEMBLY_CALL.cron, SHANGHAI, at("2026-11-21T12:00"), 5)
    assert [r.isoformat() for r in runs] == [
        "2026-12-01T09:00:00+08:00",
        "2027-01-01T09:00:00+08:00",
        "2027-02-01T09:00:00+08:00",
        "2027-03-01T09:00:00+08:00",
        "2027-04-01T09:00:00+08:00",
    ]
    # 09:00 in Shanghai is 01:00 UTC: a server on UTC must not send at 09:00 UTC.
    assert runs[0].timestamp() == datetime.fromisoformat("2026-12-01T01:00:00+00:00").timestamp()


def test_the_latest_fire_is_found_within_the_window_only() -> None:
    cron = ASSEMBLY_CALL.cron
    assert latest_fire(cron, SHANGHAI, at("2026-12-01T08:59"), since=at("2026-11-25T00:00")) is None
    fired = latest_fire(cron, SHANGHAI, at("2026-12-01T09:00"), since=at("2026-11-25T00:00"))
    assert fired is not None and fired.isoformat() == "2026-12-01T09:00:00+08:00"
    # Already run at that time: nothing newer is due.
    assert latest_fire(cron, SHANGHAI, at("2026-12-01T15:00"), since=at("2026-12-01T09:00")) is None


def test_an_every_minute_cron_finds_the_last_minute() -> None:
    fired = latest_fire(
        "* * * * *", SHANGHAI, at("2026-12-01T10:05") + 30, since=at("2026-12-01T04:05")
    )
    assert fired is not None and fired.isoformat() == "2026-12-01T10:05:00+08:00"


@pytest.mark.parametrize("cron", ["", "0 9 1 *", "61 9 1 * *", "0 25 * * *", "every day"])
def test_a_bad_cron_is_refused_in_chinese(cron: str) -> None:
    with pytest.raises(Invalid, match="cron 表达式无效"):
        next_runs(cron, SHANGHAI, at("2026-11-21T12:00"))


@pytest.mark.parametrize(
    ("weekdays", "expected"),
    [
        ("1", {"Mon"}),
        ("0", {"Sun"}),
        ("7", {"Sun"}),
        ("1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0-6", {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}),
        ("6,0", {"Sat", "Sun"}),
        ("5-7", {"Fri", "Sat", "Sun"}),
        ("1-5/2", {"Mon", "Wed", "Fri"}),
        ("sat", {"Sat"}),
    ],
)
def test_weekdays_count_as_in_standard_cron_not_as_apscheduler_does(
    weekdays: str, expected: set[str]
) -> None:
    """Regression: APScheduler's from_crontab counts weekday 0 as Monday, so "1" (Monday
    to anyone who knows cron) ran on Tuesdays."""
    runs = next_runs(f"30 8 * * {weekdays}", SHANGHAI, at("2026-11-21T12:00"), 21)
    assert {r.strftime("%a") for r in runs} == expected


def test_a_weekday_step_counts_from_sunday_as_in_standard_cron() -> None:
    """Regression: ``*/2`` went to APScheduler unchanged, which counts from Monday, so
    "every other day of the week" ran Sun/Mon/Wed/Fri instead of Sun/Tue/Thu/Sat."""
    runs = next_runs("0 9 * * */2", SHANGHAI, at("2026-11-21T12:00"), 12)
    assert {r.strftime("%a") for r in runs} == {"Sun", "Tue", "Thu", "Sat"}
