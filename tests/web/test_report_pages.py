"""The reports (报事) pages: board, filters, map, detail, photos and acting on a report.

Residents file through the real chat; staff use the pages as admins or as a grid worker
who may only see and act on their own grid's reports, whatever URL they type.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bot import keys
from bot.domain.reports import STATE_NAMES, Draft
from bot.web import reports as pages
from bot.wechat.fake_api import FakeWeChatAPI
from storage.reports import Report, ReportRepo
from tests.conftest import Harness
from tests.test_admin_reports import COURTYARD, NORTH, TZ
from tests.test_reports import ADMIN as CHAT_ADMIN
from tests.test_reports import (
    EAST,
    IN_EAST,
    IN_WEST,
    WEST,
    report,
    settled,
    with_grids,
)
from tests.web.conftest import (
    GRID_OPENID,
    OTHER_GRID_OPENID,
    Staff,
    browser_log_in,
    screenshot,
)

DAY = 24 * 3600.0
RESIDENT = "o_res_zhang"


async def grids(site: Harness) -> None:
    """Two grids: 一网格 is the grid worker's (李军), 二网格 someone else's."""
    directory = site.app[keys.SERVICES].reports.grids
    await directory.put(
        "west",
        {
            "name": "一网格",
            "area": {"type": "Polygon", "coordinates": [WEST]},
            "workers": [GRID_OPENID],
        },
        actor="test",
    )
    await directory.put(
        "east",
        {
            "name": "二网格",
            "area": {"type": "Polygon", "coordinates": [EAST]},
            "workers": [OTHER_GRID_OPENID],
        },
        actor="test",
    )


async def three_reports(site: Harness) -> None:
    """1: 排水 in 一网格; 2: 环境卫生 in 二网格, accepted; both two days ago;
    3: 车辆停放, a typed address (the default queue), just now."""
    await grids(site)
    # Filed in the past, so that staff who logged in just now stay logged in.
    site.clock.advance(-2 * DAY)
    await report(site.resident("o_res_a"))
    await report(site.resident("o_res_b"), category="1", point=IN_EAST)
    assert (await site.resident(OTHER_GRID_OPENID).say("接单 2") or "").startswith("已接单")
    site.clock.advance(2 * DAY)
    await report(site.resident("o_res_c"), category="3", point=None, address="清源路12号3栋")
    await settled(site)


def column(page: str, state: str) -> list[int]:
    """The report numbers on the board's column for ``state``."""
    found = re.search(rf'id="col-{state}">(.*?)</section>', page, re.S)
    assert found is not None, state
    return [int(n) for n in re.findall(r"<strong>编号 (\d+)</strong>", found.group(1))]


def board(page: str) -> dict[str, list[int]]:
    return {s: column(page, s) for s in STATE_NAMES if f'id="col-{s}"' in page}


async def stored(site: Harness, number: int) -> Report:
    return await site.app[keys.SERVICES].reports.get(number)


async def audit(site: Harness) -> list[tuple[str, str, str]]:
    entries = await site.app[keys.AUDIT].page(after=None, limit=100)
    return [(e.actor, e.action, e.target) for e in entries if e.target.startswith("report/")]


# --- the board ----------------------------------------------------------------------


async def test_the_board_shows_every_report_in_its_states_column(
    admin: Staff, site: Harness
) -> None:
    await three_reports(site)
    status, page = await admin.get("/admin/reports")
    assert status == 200
    assert board(page) == {"reported": [1, 3], "accepted": [2], "resolved": [], "rejected": []}
    assert [STATE_NAMES[s] for s in ("reported", "accepted")] == ["待受理", "处理中"]
    assert '<h2 id="col-reported">待受理 <span class="badge bad">2 件</span></h2>' in page
    card = page[page.index('href="/admin/reports/1"') : page.index('href="/admin/reports/3"')]
    assert "排水" in card and "3栋门口下水道堵了" in card and "一网格" in card
    assert "2 天前" in card
    assert "社区默认队列" in page  # report 3 is in nobody's grid


async def test_the_filters_narrow_the_board(admin: Staff, site: Harness) -> None:
    await three_reports(site)
    today = f"{datetime.fromtimestamp(site.clock.now, TZ):%Y-%m-%d}"
    cases: list[tuple[dict[str, str], dict[str, list[int]]]] = [
        ({"state": "accepted"}, {"accepted": [2]}),
        ({"grid": "west"}, {"reported": [1], "accepted": [], "resolved": [], "rejected": []}),
        ({"grid": "@default"}, {"reported": [3], "accepted": [], "resolved": [], "rejected": []}),
        (
            {"category": "环境卫生"},
            {"reported": [], "accepted": [2], "resolved": [], "rejected": []},
        ),
        ({"since": today}, {"reported": [3], "accepted": [], "resolved": [], "rejected": []}),
        ({"until": today, "state": "reported"}, {"reported": [1, 3]}),
    ]
    for query, expected in cases:
        status, page = await admin.get("/admin/reports", **query)
        assert status == 200, query
        assert board(page) == expected, query
    # The chosen filter shows again in the form, and carries over to the map.
    _, page = await admin.get("/admin/reports", grid="west", category="排水")
    assert '<option value="west" selected>一网格</option>' in page
    assert 'href="/admin/reports/map?grid=west&amp;category=%E6%8E%92%E6%B0%B4"' in page
    # A reversed window is explained, and the board shows everything instead.
    status, page = await admin.get("/admin/reports", since="2030-01-02", until="2030-01-01")
    assert status == 200
    assert "筛选条件有误，已显示全部报事：since 不能晚于 until" in page
    assert board(page)["reported"] == [1, 3]


async def test_closed_reports_show_only_the_newest_with_a_note(admin: Staff, site: Harness) -> None:
    desk = site.app[keys.SERVICES].reports
    count = pages.CLOSED_LIMIT + 2
    for i in range(count):
        filed = await desk.file(
            f"o_res_{i:03d}", Draft("设施损坏", f"路灯坏了 {i}", label="清源路")
        )
        site.clock.advance(60)
        await desk.resolve("staff", filed.number, "已修好", staff=True)
    _, page = await admin.get("/admin/reports")
    # Newest first, the two oldest left out.
    assert column(page, "resolved") == list(range(count, 2, -1))
    assert f"只显示最近的 {pages.CLOSED_LIMIT} 件，共 {count} 件" in page


# --- the map ------------------------------------------------------------------------


async def test_the_map_draws_the_grids_and_links_each_located_report(
    admin: Staff, site: Harness
) -> None:
    await three_reports(site)
    await site.app[keys.SERVICES].reports.grids.put(
        "north",
        {"name": "三网格", "area": {"type": "Polygon", "coordinates": [NORTH, COURTYARD]}},
        actor="test",
    )
    status, page = await admin.get("/admin/reports/map")
    assert status == 200
    svg = page[
        page.index('<svg class="map"') : page.index("</svg>", page.index('<svg class="map"'))
    ]
    assert 'role="img"' in svg
    assert 'aria-label="报事地图：3 个网格，2 件有位置的报事（待受理 1 件，处理中 1 件）"' in svg
    paths = re.findall(r'<path class="grid" d="([^"]+)"[^>]*><title>([^<]+)</title>', svg)
    assert [name for _, name in paths] == ["二网格", "三网格", "一网格"]  # in id order
    holed = dict((name, d) for d, name in paths)["三网格"]
    assert holed.count("M") == 2 and 'fill-rule="evenodd"' in svg  # the courtyard is cut out
    for name in ("一网格", "二网格", "三网格"):
        assert f'paint-order="stroke">{name}</text>' in svg
    assert re.search(
        r'<a href="/admin/reports/1" class="pt reported"><circle [^>]+/>'
        r"<title>编号 1 排水｜待受理｜一网格｜3栋门口下水道堵了</title></a>",
        svg,
    )
    assert '<a href="/admin/reports/2" class="pt accepted"><rect ' in svg
    assert "/admin/reports/3" not in svg
    assert "另有 1 件报事没有位置" in page
    # West of east: report 1 is drawn left of report 2, and both at the same height.
    first = re.search(r'reports/1" class="pt reported"><circle cx="([\d.]+)" cy="([\d.]+)"', svg)
    second = re.search(r'reports/2" class="pt accepted"><rect x="([\d.]+)" y="([\d.]+)"', svg)
    assert first is not None and second is not None
    x1, y1 = map(float, first.groups())
    x2, y2 = map(float, second.groups())
    assert x1 < x2 and abs(y1 - (y2 + 7 * 1.7 / 2)) < 0.2


async def test_a_map_with_nothing_to_draw_says_so(admin: Staff) -> None:
    status, page = await admin.get("/admin/reports/map")
    assert status == 200
    assert '<svg class="map"' not in page
    assert "还没有网格，也没有带位置的报事" in page


# --- one report, its photos ---------------------------------------------------------


async def test_a_report_shows_its_facts_history_and_our_copy_of_its_photo(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await grids(site)
    fake_api.add_media("photo-1", b"\xff\xd8jpeg-bytes")
    await report(site.resident(RESIDENT), photo="photo-1")
    # WeChat will not give this one's photo.
    await report(site.resident("o_res_b"), category="1", photo="photo-gone")
    await settled(site)
    assert (await site.resident(GRID_OPENID).say("接单 1") or "").startswith("已接单")

    status, page = await admin.get("/admin/reports/1")
    assert status == 200
    assert "<dt>网格</dt><dd>一网格</dd>" in page
    assert "<dt>地点</dt><dd>清源路12号（纬度 30.67200，经度 104.06200）</dd>" in page
    assert "<dt>处理人</dt><dd>李军（网格员）</dd>" in page
    history = re.findall(r"<tr>\s*<td>[^<]+</td>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>", page)
    assert history == [("提交报事", "报事人"), ("接单", "李军（网格员）")]
    assert '<img src="/admin/reports/1/photos/1" alt="报事 1 的第 1 张照片">' in page
    assert 'aria-label="报事 1 的位置：1 个网格，1 件有位置的报事（处理中 1 件）"' in page

    async with admin.session.get(site.url("/admin/reports/1/photos/1")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert await resp.read() == b"\xff\xd8jpeg-bytes"
    assert (await admin.get("/admin/reports/1/photos/2"))[0] == 404

    # Not kept (WeChat refused it): WeChat's own link, with its expiry said.
    _, page = await admin.get("/admin/reports/2")
    assert 'href="http://mmbiz.example/photo-gone"' in page
    assert "微信只保留照片 3 天" in page
    assert (await admin.get("/admin/reports/2/photos/1"))[0] == 404


async def test_a_photo_path_that_is_not_where_we_keep_photos_is_never_served(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI, tmp_path: Path
) -> None:
    await grids(site)
    fake_api.add_media("photo-1", b"\xff\xd8jpeg-bytes")
    await report(site.resident(RESIDENT), photo="photo-1")
    await settled(site)
    secret = tmp_path / "secret.txt"
    secret.write_text("not a photo")
    repo = ReportRepo(site.app[keys.STORE])
    await repo.change(1, lambda r: replace(r, photos=(replace(r.photos[0], path=str(secret)),)))
    assert (await admin.get("/admin/reports/1/photos/1"))[0] == 404
    _, page = await admin.get("/admin/reports/1")
    assert "/admin/reports/1/photos/1" not in page


async def test_an_unknown_report_is_a_404_page(admin: Staff) -> None:
    status, page = await admin.get("/admin/reports/99")
    assert status == 404 and "没有编号为 99 的报事" in page
    assert (await admin.get("/admin/reports/abc"))[0] == 404


# --- acting on a report -------------------------------------------------------------


async def test_an_admin_accepts_and_resolves_and_every_step_is_audited(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await grids(site)
    await report(site.resident(RESIDENT))
    await admin.get("/admin/reports/1")
    assert await admin.post("/admin/reports/1/accept") == (303, "/admin/reports/1")
    page = await admin.follow("/admin/reports/1")
    assert "已接单：报事 1，已通知居民。" in page
    assert '<span class="badge warn">处理中</span>' in page
    # A resolution needs a note: refused with the desk's words, nothing changes.
    status, where = await admin.post("/admin/reports/1/resolve", {"note": " "})
    assert status == 303
    assert "请写上办结说明" in await admin.follow(where)
    assert (await stored(site, 1)).state == "accepted"
    await admin.post("/admin/reports/1/resolve", {"note": "已疏通"})
    page = await admin.follow("/admin/reports/1")
    assert '<span class="badge ok">已办结</span>' in page
    assert "<dt>处理说明</dt><dd>已疏通</dd>" in page
    await settled(site)
    told = fake_api.sent_texts(RESIDENT)
    assert told[0] == "您的报事（编号 1）已有网格员接单处理。"
    assert told[1].startswith("您的报事（编号 1）已办结：已疏通")
    assert await audit(site) == [
        ("web:wangfang", "report.accepted", "report/1"),
        ("web:wangfang", "report.resolved", "report/1"),
    ]
    # Closed: an admin may reopen it, with a reason.
    await admin.post("/admin/reports/1/reopen", {"note": "居民说还在堵"})
    assert (await stored(site, 1)).state == "reported"
    assert (await audit(site))[-1] == ("web:wangfang", "report.reported", "report/1")


async def test_reassigning_moves_the_report_to_the_other_grid_and_alerts_it(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await grids(site)
    await report(site.resident(RESIDENT))
    await settled(site)
    _, page = await admin.get("/admin/reports/1")
    assert '<option value="east">二网格</option>' in page
    assert '<option value="west">' not in page  # not to the grid it is already in
    assert await admin.post("/admin/reports/1/transfer", {"grid": "east"}) == (
        303,
        "/admin/reports/1",
    )
    page = await admin.follow("/admin/reports/1")
    assert "报事 1 已转派到“二网格”，已通知该网格。" in page
    assert "<dt>网格</dt><dd>二网格</dd>" in page
    assert (await stored(site, 1)).grid == "east"
    await settled(site)
    assert any("【转派来的报事】编号 1" in t for t in fake_api.sent_texts(OTHER_GRID_OPENID))
    assert await audit(site) == [("web:wangfang", "report.transfer", "report/1")]
    _, board_page = await admin.get("/admin/reports", grid="east")
    assert column(board_page, "reported") == [1]


async def test_a_post_without_the_forms_token_is_refused(admin: Staff, site: Harness) -> None:
    await grids(site)
    await report(site.resident(RESIDENT))
    await admin.get("/admin/reports/1")
    for path, data in [
        ("/admin/reports/1/accept", {}),
        ("/admin/reports/1/resolve", {"note": "已疏通"}),
        ("/admin/reports/1/transfer", {"grid": "east"}),
    ]:
        status, page = await admin.post(path, data, csrf=False)
        assert status == 403 and "表单已过期" in page, path
        status, _ = await admin.post(path, {**data, "csrf_token": "forged"}, csrf=False)
        assert status == 403, path
    saved = await stored(site, 1)
    assert (saved.state, saved.grid) == ("reported", "west")


async def test_an_anonymous_visitor_is_sent_to_log_in(anonymous: Staff, site: Harness) -> None:
    await grids(site)
    await report(site.resident(RESIDENT))
    for path in ("/admin/reports", "/admin/reports/map", "/admin/reports/1"):
        status, where = await anonymous.get(path)
        assert (status, where) == (303, f"/admin/login?next={path}")
    status, _ = await anonymous.post("/admin/reports/1/accept", csrf=False)
    assert status == 401
    assert (await stored(site, 1)).state == "reported"


# --- a grid worker ------------------------------------------------------------------


async def test_a_grid_worker_sees_and_acts_on_their_own_grids_reports(
    grid_worker: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await three_reports(site)
    status, page = await grid_worker.get("/admin/reports")
    assert status == 200
    assert board(page) == {"reported": [1], "accepted": [], "resolved": [], "rejected": []}
    assert "这里只显示您负责的网格（一网格）的报事" in page
    assert '<option value="east"' not in page and "@default" not in page
    # Asking for another grid in the URL shows nothing of it.
    _, page = await grid_worker.get("/admin/reports", grid="east")
    assert board(page)["accepted"] == []
    _, page = await grid_worker.get("/admin/reports/map")
    assert 'aria-label="报事地图：1 个网格，1 件有位置的报事（待受理 1 件）"' in page
    assert "/admin/reports/2" not in page and "二网格</text>" not in page

    await grid_worker.get("/admin/reports/1")
    assert await grid_worker.post("/admin/reports/1/accept") == (303, "/admin/reports/1")
    await grid_worker.post("/admin/reports/1/resolve", {"note": "已疏通下水道"})
    saved = await stored(site, 1)
    # The same as accepting in the chat: the worker's openid is on the report.
    assert (saved.state, saved.assignee) == ("resolved", GRID_OPENID)
    assert [t.by for t in saved.history[1:]] == [GRID_OPENID, GRID_OPENID]
    page = await grid_worker.follow("/admin/reports/1")
    assert "报事 1 已办结，已通知居民。" in page
    assert "这件报事已经已办结，不能再处理" in page
    assert "/reopen" not in page
    assert await audit(site) == [
        ("web:lijun", "report.accepted", "report/1"),
        ("web:lijun", "report.resolved", "report/1"),
    ]
    await settled(site)
    assert fake_api.sent_texts("o_res_a")[-1].startswith("您的报事（编号 1）已办结：已疏通下水道")


async def test_a_grid_worker_gets_404_for_other_grids_and_the_default_queue(
    grid_worker: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await grids(site)
    fake_api.add_media("photo-e", b"\xff\xd8east")
    await report(site.resident("o_res_a"))  # 1: 一网格, theirs
    await report(site.resident("o_res_b"), point=IN_EAST, photo="photo-e")  # 2: 二网格
    await report(site.resident("o_res_c"), point=None, address="清源路12号")  # 3: default
    await settled(site)
    await grid_worker.get("/admin/reports/1")  # a fresh form token
    for number in (2, 3, 99):
        for path in (f"/admin/reports/{number}", f"/admin/reports/{number}/photos/1"):
            status, page = await grid_worker.get(path)
            assert status == 404, path
            assert f"没有编号为 {number} 的报事" in page, path
        for action, data in [
            ("accept", {}),
            ("resolve", {"note": "已处理"}),
            ("reject", {"reason": "不归我们"}),
            ("transfer", {"grid": "west"}),
        ]:
            status, page = await grid_worker.post(f"/admin/reports/{number}/{action}", data)
            assert status == 404, (number, action)
            assert f"没有编号为 {number} 的报事" in page
    # Reopening is for admins only, on any report.
    assert (await grid_worker.post("/admin/reports/1/reopen", {"note": "x"}))[0] == 403
    for number, grid in ((2, "east"), (3, "")):
        saved = await stored(site, number)
        assert (saved.state, saved.grid, len(saved.history)) == ("reported", grid, 1)
    assert await audit(site) == []


async def test_a_grid_worker_who_hands_a_report_on_no_longer_sees_it(
    grid_worker: Staff, site: Harness
) -> None:
    await grids(site)
    await report(site.resident(RESIDENT), point=IN_WEST)
    await grid_worker.get("/admin/reports/1")
    assert await grid_worker.post("/admin/reports/1/transfer", {"grid": "east"}) == (
        303,
        "/admin/reports",
    )
    assert "报事 1 已转派到“二网格”" in await grid_worker.follow("/admin/reports")
    assert (await stored(site, 1)).grid == "east"
    assert (await grid_worker.get("/admin/reports/1"))[0] == 404
    assert await audit(site) == [("web:lijun", "report.transfer", "report/1")]


async def test_a_grid_worker_rejects_a_duplicate_into_another_report(
    grid_worker: Staff, site: Harness
) -> None:
    await grids(site)
    await report(site.resident("o_res_a"))
    await report(site.resident("o_res_b"), category="1")
    await grid_worker.get("/admin/reports/2")
    await grid_worker.post("/admin/reports/2/reject", {"reason": "重复 1"})
    assert "报事 2 已退回，已合并到报事 1" in await grid_worker.follow("/admin/reports/2")
    assert (await stored(site, 2)).duplicate_of == 1


# --- in a real browser --------------------------------------------------------------


async def test_an_admin_takes_a_residents_report_from_board_to_resolved_in_a_browser(
    page: Any, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await grids(site)
    done = await report(site.resident(RESIDENT), point=IN_WEST)
    assert done.startswith("报事已提交，编号 1。已转给“一网格”网格员")
    await settled(site)

    await browser_log_in(page)
    await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="报事").click()
    await page.get_by_role("heading", name="报事看板").wait_for()
    waiting = page.get_by_role("region", name=re.compile("^待受理"))
    card = waiting.get_by_role("link", name=re.compile("编号 1"))
    await card.wait_for()
    await screenshot(page, "reports-board")

    await page.get_by_role("link", name="地图").click()
    await page.get_by_role(
        "img", name=re.compile("报事地图：2 个网格，1 件有位置的报事")
    ).wait_for()
    await screenshot(page, "reports-map")
    await page.get_by_role("link", name="看板").click()

    await (
        page.get_by_role("region", name=re.compile("^待受理"))
        .get_by_role("link", name=re.compile("编号 1"))
        .click()
    )
    await page.get_by_role("heading", name=re.compile("报事 1")).wait_for()
    await page.get_by_role("button", name="接单", exact=True).click()
    await page.get_by_role("status").filter(has_text="已接单").wait_for()
    assert "处理中" in await page.get_by_role("heading", level=1).inner_text()

    await page.get_by_label("办结说明").fill("已疏通下水道，恢复正常")
    await page.get_by_role("button", name="办结", exact=True).click()
    await page.get_by_role("status").filter(has_text="已办结").wait_for()
    assert "已办结" in await page.get_by_role("heading", level=1).inner_text()
    rows = page.get_by_role("table").get_by_role("row")
    assert await rows.count() == 4  # the header, filed, accepted, resolved
    assert "已疏通下水道，恢复正常" in await rows.nth(3).inner_text()
    assert "王芳（网页）" in await rows.nth(2).inner_text()
    await screenshot(page, "report-detail")

    await settled(site)
    told = fake_api.sent_texts(RESIDENT)
    assert "您的报事（编号 1）已有网格员接单处理。" in told
    assert any(t.startswith("您的报事（编号 1）已办结：已疏通下水道，恢复正常") for t in told)

    await page.get_by_role("link", name="← 返回报事看板").click()
    resolved = page.get_by_role("region", name=re.compile("^已办结"))
    await resolved.get_by_role("link", name=re.compile("编号 1")).wait_for()


# --- the desk's rule, as the pages use it ---------------------------------------------


async def test_the_desk_audits_a_transition_only_under_the_name_it_is_given(
    site: Harness,
) -> None:
    await with_grids(site)  # 一网格 (west) and 二网格 (east), and a community admin's openid
    desk = site.app[keys.SERVICES].reports
    assert await desk.scope("o_worker_w1") == frozenset({"west"})
    assert await desk.scope("o_leader_e") == frozenset({"east"})
    assert await desk.scope("o_res_nobody") == frozenset()
    assert await desk.scope(CHAT_ADMIN) is None  # every report, the default queue included
    await report(site.resident(RESIDENT))
    # In the chat a worker's transition is in the report's history, not the audit log.
    assert (await site.resident("o_worker_w1").say("接单 1") or "").startswith("已接单")
    assert await audit(site) == []
    await desk.resolve("o_worker_w1", 1, "已疏通", audit_as="web:lijun")
    await desk.resolve("o_worker_w1", 1, "已疏通", audit_as="web:lijun")  # a retry
    assert await audit(site) == [("web:lijun", "report.resolved", "report/1")]
    assert (await stored(site, 1)).history[-1].by == "o_worker_w1"
