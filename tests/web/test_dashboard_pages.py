"""The dashboard (``/admin/``): participation per month as charts and a table, and the
headline figures (open reports, the next assembly, the next scheduled push).

Participation comes from residents acting through the chat: signing up (报名), scanning
the check-in code, filing a report and answering the assembly (坝坝会).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import keys
from bot.domain import participation
from bot.domain.reports import Draft
from storage.activities import ActivityRepo
from storage.reports import ReportRepo
from tests.conftest import Harness
from tests.test_assembly import schedule
from tests.test_households import bind
from tests.web.conftest import Staff, browser_log_in, screenshot

TZ = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0
DAY = 24 * HOUR


def month_label(at: float) -> str:
    moment = datetime.fromtimestamp(at, TZ)
    return f"{moment.year}年{moment.month}月"


def table_row(html: str, label: str) -> list[int]:
    """The numbers in the data table's row for the month ``label``."""
    found = re.search(rf'<th scope="row">{label}</th>(.*?)</tr>', html, re.S)
    assert found, f"no row for {label}"
    return [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', found.group(1))]


async def activity_now(site: Harness, **fields: Any) -> int:
    """An activity starting within the hour, so its check-in is open at once."""

    def local(offset: float) -> str:
        return datetime.fromtimestamp(site.clock.now + offset, TZ).strftime("%Y-%m-%dT%H:%M")

    body = {
        "title": "夜跑巡逻队",
        "place": "清源社区南门",
        "starts_at": local(30 * 60),
        "ends_at": local(30 * 60 + 2 * HOUR),
        "capacity": 10,
        "points": 5,
    }
    body.update(fields)
    activity = await site.app[keys.SERVICES].volunteers.create(body, actor="王主任")
    return activity.number


async def sign_up(site: Harness, openid: str, pick: str = "1") -> None:
    resident = site.resident(openid)
    listing = await resident.say("报名")
    assert listing is not None and "近期志愿活动" in listing, listing
    await resident.say(pick)
    done = await resident.say("1")
    assert done is not None and "报名成功" in done, done


async def participate(site: Harness) -> dict[str, float]:
    """Two sign-ups, one check-in, one report and one assembly answer; when each happened."""
    number = await activity_now(site)
    await sign_up(site, "o_li")
    await sign_up(site, "o_wang")
    checked = await site.resident("o_li").event("SCAN", EventKey=f"act:{number}", Ticket="t")
    assert checked is not None and checked.startswith("签到成功"), checked
    await site.app[keys.SERVICES].reports.file(
        "o_zhao", Draft(category="排水", text="3栋门口下水道堵了", label="3栋2单元门口")
    )
    await bind(site, "o_wang", name="王阿姨")
    await schedule(site)
    resident = site.resident("o_wang")
    await resident.say("坝坝会")
    assert (await resident.say("1") or "").startswith("已为您家")
    activity = await site.app[keys.SERVICES].volunteers.get(number)
    return {"signups": activity.starts_at}


async def test_this_months_participation_shows_in_the_chart_and_the_table(
    admin: Staff, site: Harness
) -> None:
    status, before = await admin.get("/admin/")
    assert status == 200
    this_month = month_label(site.clock.now)
    assert table_row(before, this_month) == [0, 0, 0, 0]

    when = await participate(site)
    status, html = await admin.get("/admin/")
    assert status == 200
    # Columns: sign-ups, check-ins, reports, answers. A sign-up counts in its activity's
    # month (which is this one, unless the test runs in a month's last half hour).
    expected = {this_month: [0, 1, 1, 1]}
    expected.setdefault(month_label(when["signups"]), [0, 0, 0, 0])[0] += 2
    for label, numbers in expected.items():
        assert table_row(html, label) == numbers, label

    # Twelve months in the table and under each chart, one chart per series, drawn as
    # labelled images.
    assert len(re.findall(r'<th scope="row">\d{4}年\d{1,2}月</th>', html)) == 12
    charts = re.findall(r'<svg class="chart" role="img" aria-label="([^"]+)"', html)
    assert [c.split("（")[0] for c in charts] == ["志愿报名", "活动签到", "报事", "坝坝会答复"]
    assert charts[2].endswith("共 1")
    month = datetime.fromtimestamp(site.clock.now, TZ).month
    assert f">{month}月</text>" in html


async def test_the_headline_figures_follow_reports_the_assembly_and_the_schedules(
    admin: Staff, site: Harness
) -> None:
    await participate(site)
    status, html = await admin.get("/admin/")
    assert status == 200
    assert re.search(
        r'id="open-h">待处理的报事</h2>\s*<p class="figure"><strong>1</strong> 件', html
    )
    assert "参加 1 户 / 共 1 户，法定人数 1 户，已达到法定人数" in html
    schedules = site.app[keys.SCHEDULES]
    runs = [(schedules.next_runs(s, 1)[0], s.name) for s in await schedules.all() if s.enabled]
    at, name = min(runs)
    push = html[html.index('id="push-h"') :]
    assert name in push and at.strftime("%Y-%m-%d %H:%M") in push

    reports = site.app[keys.SERVICES].reports
    await reports.resolve("王主任", 1, "已疏通", staff=True)
    for each in await schedules.all():
        await schedules.set_enabled(each.id, False, actor="王主任")
    _, html = await admin.get("/admin/")
    assert re.search(r"<strong>0</strong> 件", html)
    assert "所有定时任务都已暂停" in html


async def test_counts_keep_to_the_last_twelve_months_and_leave_out_cancelled_activities(
    site: Harness,
) -> None:
    services = site.app[keys.SERVICES]
    store = site.app[keys.STORE]

    async def count() -> participation.Participation:
        return await participation.monthly(
            activities=ActivityRepo(store),
            reports=ReportRepo(store),
            assembly=services.assembly,
            now=site.clock.now,
            tz=TZ,
        )

    await participate(site)
    cancelled = await activity_now(site, title="植树")
    await sign_up(site, "o_chen", pick="2")
    await services.volunteers.cancel(cancelled, "下雨", actor="王主任")
    counted = await count()
    assert [m.month.label for m in counted.months][-1] == month_label(site.clock.now)
    assert len(counted.months) == 12
    totals = {key: sum(counted.series(key)) for key, _ in participation.SERIES}
    assert totals == {"signups": 2, "checkins": 1, "reports": 1, "rsvps": 1}
    assert counted.open_reports == 1

    site.clock.advance(366 * DAY)
    later = await count()
    assert {key: sum(later.series(key)) for key, _ in participation.SERIES} == dict.fromkeys(
        totals, 0
    )
    assert later.open_reports == 1  # still open, a year on: the headline is not monthly


async def test_a_grid_worker_is_sent_to_the_reports_and_a_visitor_to_the_login(
    grid_worker: Staff, anonymous: Staff
) -> None:
    assert await grid_worker.get("/admin/") == (303, "/admin/reports")
    status, where = await anonymous.get("/admin/")
    assert status == 303 and where.startswith("/admin/login")


async def test_the_dashboard_in_a_browser(site: Harness, page: Any) -> None:
    await participate(site)
    await browser_log_in(page)
    await page.get_by_role("heading", name="概览", level=1).wait_for()
    assert await page.get_by_role("img", name=re.compile("^报事（件）")).count() == 1
    table = page.get_by_role("table", name="每月数据")
    this_month = month_label(site.clock.now)
    row = table.get_by_role("row", name=re.compile(f"^{this_month} "))
    assert (await row.get_by_role("cell").all_inner_texts())[2:] == ["1", "1"]
    await screenshot(page, "dashboard")
