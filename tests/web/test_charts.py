"""The pieces under the dashboard, assembly and audit pages: SVG charts, month windows,
the quorum's shortfall and the audit log's filter rules."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.assembly import RsvpCounts
from bot.domain.audit_log import AuditFilter
from bot.domain.participation import Month, last_months
from bot.web.assemblies import quorum_text
from bot.web.charts import Bar, Marker, bar_chart, column_chart, nice_scale
from storage.repos import AuditEntry

TZ = ZoneInfo("Asia/Shanghai")


def test_axes_end_on_round_whole_numbers() -> None:
    assert nice_scale(0) == (4, 1)
    assert nice_scale(1) == (1, 1)
    assert nice_scale(3) == (3, 1)
    assert nice_scale(37) == (40, 10)
    assert nice_scale(120) == (150, 50)
    assert nice_scale(999) == (1000, 500)


def test_a_chart_is_a_labelled_image_whose_text_is_escaped() -> None:
    svg = str(column_chart([Bar("1月", 3), Bar("<b>2月</b>", 0)], label="报事 & 签到", unit="件"))
    assert svg.startswith('<svg class="chart" role="img" aria-label="报事 &amp; 签到"')
    assert "<title>报事 &amp; 签到</title>" in svg
    assert "&lt;b&gt;2月&lt;/b&gt;" in svg and "<b>" not in svg
    assert ">3</text>" in svg and ">0</text>" in svg  # every bar says its number
    assert "<script" not in svg


def test_the_quorum_line_sits_at_its_share_of_all_households() -> None:
    svg = str(
        bar_chart(
            [Bar("参加", 30, "ok"), Bar("未答复", 90, "muted")],
            label="答复",
            unit="户",
            total=120,
            marker=Marker(60, "法定人数 60 户"),
        )
    )
    line = re.search(r'<line x1="([\d.]+)"[^>]*stroke-dasharray', svg)
    bars = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert line and bars
    left, plot = 76.0, 640 - 76 - 80
    assert float(line.group(1)) == left + plot / 2
    assert bars == [plot / 4, plot * 3 / 4]
    assert "法定人数 60 户" in svg


def test_the_quorum_in_words() -> None:
    short = RsvpCounts(households=120, attend=37, absent=10, maybe=5, quorum=61)
    assert short.shortfall == 24 and short.unanswered == 68
    assert quorum_text(short) == "参加 37 户 / 共 120 户，法定人数 61 户，尚差 24 户"
    reached = RsvpCounts(households=120, attend=70, absent=0, maybe=0, quorum=61)
    assert reached.shortfall == 0
    assert quorum_text(reached).endswith("法定人数 61 户，已达到法定人数")
    empty = RsvpCounts(households=0, attend=0, absent=0, maybe=0, quorum=0)
    assert "无法计算法定人数" in quorum_text(empty)


def test_the_window_is_twelve_calendar_months_ending_with_this_one() -> None:
    now = datetime(2026, 3, 1, 0, 30, tzinfo=TZ).timestamp()  # still February in UTC
    months = last_months(now, TZ)
    assert months[0] == Month(2025, 4) and months[-1] == Month(2026, 3)
    assert len(months) == len(set(months)) == 12
    assert Month(2026, 1).previous() == Month(2025, 12)
    assert Month(2026, 3).start(TZ) == datetime(2026, 3, 1, tzinfo=TZ).timestamp()


def test_the_audit_filter_rules() -> None:
    entry = AuditEntry("1", "web:wangfang", "meeting.edit", "meeting/3", {}, 100.0)
    assert AuditFilter(actor="WANGFANG").matches(entry)
    assert not AuditFilter(actor="lijun").matches(entry)
    assert AuditFilter(action="meeting.").matches(entry)
    assert not AuditFilter(action="edit").matches(entry)  # a prefix, not a part
    assert AuditFilter(target="meeting/3").matches(entry)
    assert not AuditFilter(target="meeting/").matches(
        AuditEntry("2", "x", "vote.create", "vote/3", {}, 1.0)
    )
    assert AuditFilter(target="meeting/").matches(entry)
    assert not AuditFilter(target="meeting/30").matches(entry)
    assert AuditFilter(since=100.0, until=100.0).matches(entry)
    assert not AuditFilter(since=100.5).matches(entry)
