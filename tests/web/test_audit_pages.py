"""The audit log page: every change with who and when, newest first, filtered and paged."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import keys
from tests.conftest import Harness
from tests.test_assembly import evening, open_vote
from tests.web.conftest import ADMIN_NAME, ADMIN_PASSWORD, Staff, browser_log_in, screenshot

TZ = ZoneInfo("Asia/Shanghai")
DAY = 86400.0


def rows(html: str) -> list[tuple[str, str, str]]:
    """(actor, action, target) of each entry shown, top to bottom."""
    found = re.findall(
        r"<tr>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>\s*<td>[^<]*<br><code class=\"muted\">([^<]*)"
        r"</code></td>\s*<td><a [^>]*>([^<]*)</a></td>",
        html,
    )
    return [(a, b, c) for a, b, c in found]


def older_link(html: str) -> str | None:
    found = re.search(r'<a href="([^"]+)">更早的记录</a>', html)
    return found.group(1).replace("&amp;", "&") if found else None


def day(at: float) -> str:
    return datetime.fromtimestamp(at, TZ).strftime("%Y-%m-%d")


async def changes(site: Harness, admin: Staff) -> dict[str, float]:
    """Changes by three people on three days; returns when each day's changes were made."""
    when = {"first": site.clock.now}
    await admin.get("/admin/assemblies")
    status, _ = await admin.post(
        "/admin/assemblies",
        {"starts_at": evening(site.clock, 5).strftime("%Y-%m-%dT%H:%M"), "place": "清源社区院坝"},
    )
    assert status == 303
    site.clock.advance(2 * DAY)
    when["second"] = site.clock.now
    await open_vote(site)  # by 李社工, through the desk
    status, _ = await site.admin(
        "PATCH", "/meetings/1", body={"place": "社区活动室"}, operator="张书记"
    )
    assert status == 200
    site.clock.advance(2 * DAY)
    when["third"] = site.clock.now
    await admin.log_in(ADMIN_NAME, ADMIN_PASSWORD)  # two idle days ended the session
    await admin.get("/admin/assemblies/1")
    status, _ = await admin.post("/admin/assemblies/1/cancel", {"reason": "场地维修"})
    assert status == 303
    return when


async def test_every_change_shows_who_what_and_when_newest_first(
    admin: Staff, site: Harness
) -> None:
    when = await changes(site, admin)
    status, html = await admin.get("/admin/audit")
    assert status == 200
    assert rows(html) == [
        ("web:wangfang", "meeting.cancel", "meeting/1"),
        ("张书记", "meeting.edit", "meeting/1"),
        ("李社工", "vote.create", "vote/1"),
        ("web:wangfang", "meeting.create", "meeting/1"),
        ("test", "user.create", "user/lijun"),
        ("test", "user.create", "user/wangfang"),
    ]
    assert "坝坝会 · 取消" in html and "投票 · 新建" in html
    assert "场地维修" in html  # what changed
    shown = datetime.fromtimestamp(when["third"], TZ).strftime("%Y-%m-%d %H:%M:%S")
    assert f"<td>{shown}</td>" in html
    assert older_link(html) is None


async def test_the_log_filters_by_actor_action_target_and_dates(
    admin: Staff, site: Harness
) -> None:
    when = await changes(site, admin)

    async def shown(**query: str) -> list[tuple[str, str, str]]:
        status, html = await admin.get("/admin/audit", **query)
        assert status == 200, html[:500]
        return rows(html)

    assert [r[1] for r in await shown(actor="wangfang")] == ["meeting.cancel", "meeting.create"]
    assert [r[0] for r in await shown(actor="李社")] == ["李社工"]
    assert [r[1] for r in await shown(action="meeting.")] == [
        "meeting.cancel",
        "meeting.edit",
        "meeting.create",
    ]
    assert [r[2] for r in await shown(action="user.")] == ["user/lijun", "user/wangfang"]
    assert [r[1] for r in await shown(target="vote/1")] == ["vote.create"]
    assert len(await shown(target="meeting/")) == 3
    assert await shown(target="meeting/11") == []
    # Dates are inclusive, whole local days.
    second = day(when["second"])
    assert [r[1] for r in await shown(since=second, until=second)] == [
        "meeting.edit",
        "vote.create",
    ]
    assert len(await shown(until=day(when["first"]))) == 3
    assert [r[1] for r in await shown(since=day(when["third"]))] == ["meeting.cancel"]
    assert await shown(actor="张书记", action="vote.") == []

    status, html = await admin.get("/admin/audit", action="nothing.")
    assert "没有符合条件的记录" in html and 'href="/admin/audit">清除筛选' in html
    status, html = await admin.get("/admin/audit", since="2026-05-02", until="2026-05-01")
    assert status == 400 and "起始日期不能晚于截止日期" in html
    # The filters stay filled in for the next search.
    status, html = await admin.get("/admin/audit", actor="李社工", action="vote.")
    assert 'name="actor" value="李社工"' in html and 'name="action" value="vote."' in html


async def test_older_entries_are_a_page_away_and_the_filter_goes_along(
    admin: Staff, site: Harness
) -> None:
    log = site.app[keys.AUDIT]
    for i in range(1, 61):
        await log.add(
            "李社工", "points.award", f"resident/o_{i:02d}", {"points": i}, site.clock.now
        )
    await log.add("李社工", "catalogue.add", "catalogue/1", {}, site.clock.now)

    status, html = await admin.get("/admin/audit", action="points.")
    first = rows(html)
    assert len(first) == 50
    assert first[0][2] == "resident/o_60" and first[-1][2] == "resident/o_11"
    older = older_link(html)
    assert older is not None and "action=points." in older
    status, html = await admin.get(older)
    second = rows(html)
    assert [r[2] for r in second] == [f"resident/o_{i:02d}" for i in range(10, 0, -1)]
    assert older_link(html) is None
    assert '<a href="/admin/audit?action=points.">回到最新的记录</a>' in html

    status, html = await admin.get("/admin/audit")
    assert status == 200
    assert rows(html)[0] == ("李社工", "catalogue.add", "catalogue/1")
    older = older_link(html)
    assert older is not None
    _, html = await admin.get(older)
    assert [r[2] for r in rows(html)] == [
        *(f"resident/o_{i:02d}" for i in range(11, 0, -1)),
        "user/lijun",
        "user/wangfang",
    ]


async def test_the_audit_log_is_for_admins_only(grid_worker: Staff, anonymous: Staff) -> None:
    assert (await grid_worker.get("/admin/audit"))[0] == 403
    status, where = await anonymous.get("/admin/audit")
    assert status == 303 and where == "/admin/login?next=/admin/audit"


async def test_filtering_the_log_in_a_browser(admin: Staff, site: Harness, page: Any) -> None:
    await changes(site, admin)
    await browser_log_in(page)
    await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="操作记录").click()
    await page.get_by_role("heading", name="操作记录").wait_for()
    await page.get_by_label("操作类型").fill("meeting.")
    await page.get_by_label("操作人").fill("wangfang")
    await page.get_by_role("button", name="筛选").click()
    await page.wait_for_load_state()
    assert "actor=wangfang" in page.url and "action=meeting." in page.url
    body = page.locator("table.data tbody")
    assert await body.get_by_role("row").count() == 2
    assert await body.get_by_text("坝坝会 · 取消").count() == 1
    await page.get_by_role("link", name="清除筛选").click()
    await page.wait_for_load_state()
    assert await page.locator("table.data tbody").get_by_role("row").count() == 6
    await screenshot(page, "audit-log")
