"""Staff keep the points from the pages: a resident's ledger, awards and corrections,
the leaderboard, the catalogue's stock and the vouchers residents hand in.

Residents earn and redeem through the chat and the points desk, as they do; what staff
post through the forms is what residents then see in 积分.
"""

from __future__ import annotations

import re
from typing import Any

from bot import keys
from bot.domain.points import PointsDesk, ranked
from bot.redact import mask
from storage.activities import ISSUED, USED
from tests.conftest import Harness
from tests.web.conftest import ADMIN_NAME, Staff, browser_log_in, screenshot

ME = f"web:{ADMIN_NAME}"
_KEY = re.compile(r'name="key" value="([^"]+)"')


def desk(site: Harness) -> PointsDesk:
    return site.app[keys.SERVICES].points


async def _form_key(admin: Staff, path: str) -> str:
    """Open the page as staff do; the form's idempotency key made for this showing."""
    status, page = await admin.get(path)
    assert status == 200, page[:300]
    found = _KEY.search(page)
    assert found is not None
    return found.group(1)


async def _audit(site: Harness, prefix: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    entries = await site.app[keys.AUDIT].page(after=None, limit=100)
    return [
        (e.actor, e.action, e.target, dict(e.detail))
        for e in entries
        if e.action.startswith(prefix)
    ]


async def _award(admin: Staff, openid: str, amount: int, reason: str) -> str:
    key = await _form_key(admin, f"/admin/points/{openid}")
    status, where = await admin.post(
        f"/admin/points/{openid}", {"amount": str(amount), "reason": reason, "key": key}
    )
    assert status == 303, where[:300]
    return await admin.follow(where)


async def test_an_award_and_a_correction_change_the_balance_and_show_in_the_ledger(
    admin: Staff, site: Harness
) -> None:
    page = await _award(admin, "o_li_resident", 30, "清扫楼道")
    assert "已奖励+30积分，现有30积分" in page
    page = await _award(admin, "o_li_resident", -5, "重复登记")
    assert "已更正-5积分，现有25积分" in page
    assert "<strong>25</strong>" in page
    ledger = page.split("<h2>积分明细</h2>", 1)[1]
    # Newest first, with reason, kind and who posted it.
    assert ledger.index("重复登记") < ledger.index("清扫楼道")
    for text in ("-5", "+30", "更正", "奖励", ME):
        assert text in ledger, text
    assert await desk(site).balance("o_li_resident") == 25
    reply = await site.resident("o_li_resident").say("积分")
    assert reply is not None and reply.startswith("您的志愿积分：25分")
    assert "-5 重复登记" in reply
    assert await _audit(site, "points.") == [
        (
            ME,
            "points.award",
            "points/o_li_resident",
            {"amount": 30, "reason": "清扫楼道", "seq": 1},
        ),
        (
            ME,
            "points.correct",
            "points/o_li_resident",
            {"amount": -5, "reason": "重复登记", "seq": 2},
        ),
    ]


async def test_a_double_submitted_award_posts_once(admin: Staff, site: Harness) -> None:
    key = await _form_key(admin, "/admin/points/o_li_resident")
    form = {"amount": "20", "reason": "组织坝坝会", "key": key}
    first = await admin.post("/admin/points/o_li_resident", form)
    second = await admin.post("/admin/points/o_li_resident", form)  # the same form again
    assert first[0] == second[0] == 303
    page = await admin.follow(second[1])
    assert "这笔调整已经记过了，没有重复记账" in page
    assert await desk(site).balance("o_li_resident") == 20
    total, _ = await desk(site).history("o_li_resident", skip=0, limit=10)
    assert total == 1
    assert len(await _audit(site, "points.")) == 1
    # The next showing of the form has a new key: a second award is a new posting.
    assert "现有40积分" in await _award(admin, "o_li_resident", 20, "组织坝坝会")


async def test_a_correction_below_zero_is_refused_with_the_desks_message(
    admin: Staff, site: Harness
) -> None:
    await desk(site).adjust("o_li_resident", 10, "第1次活动", actor="王主任")
    page = await _award(admin, "o_li_resident", -20, "扣错了")
    assert "该居民现有10积分，更正-20后会变成负数" in page
    assert await desk(site).balance("o_li_resident") == 10
    assert await _audit(site, "points.correct") == []


async def test_an_award_without_a_reason_or_the_forms_key_posts_nothing(
    admin: Staff, site: Harness
) -> None:
    key = await _form_key(admin, "/admin/points/o_li_resident")
    cases = [
        ({"amount": "5", "reason": "", "key": key}, "需要填写原因"),
        ({"amount": "5", "reason": "帮忙", "key": ""}, "表单已过期"),
        ({"amount": "五", "reason": "帮忙", "key": key}, "“积分数”必须填写整数"),
        ({"amount": "0", "reason": "帮忙", "key": key}, "非零整数"),
    ]
    for fields, message in cases:
        status, where = await admin.post("/admin/points/o_li_resident", fields)
        assert status == 303
        assert message in await admin.follow(where), fields
    assert await desk(site).balance("o_li_resident") == 0


async def test_the_ledger_pages_through_every_entry(admin: Staff, site: Harness) -> None:
    for n in range(1, 24):
        await desk(site).adjust("o_li_resident", n, f"第{n}次活动", actor="王主任")
    page = await admin.follow("/admin/points/o_li_resident")
    assert "第 1/2 页，共 23 条" in page and "第23次活动" in page and "第3次活动" not in page
    assert 'href="/admin/points/o_li_resident?page=2">下一页' in page
    second = await admin.follow("/admin/points/o_li_resident?page=2")
    assert "第3次活动" in second and "第1次活动" in second and "第23次活动" not in second
    assert "上一页" in second and "下一页" not in second


async def test_the_leaderboard_ranks_ties_alike_and_names_the_household(
    admin: Staff, site: Harness
) -> None:
    resident = site.resident("o_wang_ayi_0001")
    await resident.say("绑定")
    await resident.say("3栋2单元501")
    await resident.say("王阿姨")
    assert (await resident.say("1") or "").startswith("绑定成功")
    for openid, amount in (("o_top_resident", 90), ("o_wang_ayi_0001", 40), ("o_li_resident", 40)):
        await desk(site).adjust(openid, amount, "活动", actor="王主任")
    await desk(site).adjust("o_gone_resident", 5, "活动", actor="王主任")
    await desk(site).adjust("o_gone_resident", -5, "更正", actor="王主任")  # 0: not ranked

    page = await admin.follow("/admin/points")
    board = page.split("积分排行", 1)[1]
    rows = re.findall(r'<td class="num">(\d+)</td>\s*<td><a href="[^"]+">([^<]+)</a>', board)
    assert rows == [
        ("1", mask("o_top_resident")),
        ("2", mask("o_li_resident")),
        ("2", mask("o_wang_ayi_0001")),
    ]
    assert "王阿姨" in board and "3栋2单元501" in board

    assert await admin.get("/admin/points", openid="o_li_resident") == (
        303,
        "/admin/points/o_li_resident",
    )
    found = await admin.follow("/admin/points?address=3-2-501")
    assert 'href="/admin/points/o_wang_ayi_0001"' in found and "户代表" in found
    assert "没看懂这个地址" in (await admin.get("/admin/points", address="菜市场后面"))[1]


def test_equal_balances_share_a_rank() -> None:
    top = [("a", 90), ("b", 40), ("c", 40), ("d", 7), ("e", 7), ("f", 1)]
    assert [rank for rank, _, _ in ranked(top)] == [1, 2, 2, 4, 4, 6]
    assert ranked([]) == []


async def test_restocking_adding_and_changing_items_show_in_the_catalogue(
    admin: Staff, site: Harness
) -> None:
    await admin.get("/admin/points/catalogue")
    status, where = await admin.post(
        "/admin/points/catalogue", {"name": "环保袋", "cost": "30", "stock": "2"}
    )
    assert status == 303
    assert "已添加“环保袋”（30积分，库存2）" in await admin.follow(where)

    key = await _form_key(admin, "/admin/points/catalogue")
    restock = {"amount": "5", "reason": "街道送来一箱", "key": key}
    assert (await admin.post("/admin/points/catalogue/1/stock", restock))[0] == 303
    assert (await admin.post("/admin/points/catalogue/1/stock", restock))[0] == 303  # resent
    page = await admin.follow("/admin/points/catalogue")
    assert "“环保袋”现有库存7件" in page
    (stocked,) = await desk(site).catalogue(active_only=False)
    assert stocked.stock == 7

    key = await _form_key(admin, "/admin/points/catalogue")
    status, where = await admin.post(
        "/admin/points/catalogue/1/stock", {"amount": "-9", "reason": "盘点", "key": key}
    )
    assert "库存只有7件，不能减少9件" in await admin.follow(where)

    status, where = await admin.post(
        "/admin/points/catalogue/1", {"name": "环保袋", "cost": "25", "active": "0"}
    )
    assert "已保存“环保袋”：25积分，已下架" in await admin.follow(where)
    (changed,) = await desk(site).catalogue(active_only=False)
    assert (changed.item.cost, changed.item.active) == (25, False)
    # Taken off the shelf: residents no longer see it.
    assert "环保袋" not in (await site.resident("o_li").say("兑换") or "")

    assert await _audit(site, "catalogue.") == [
        (ME, "catalogue.add", "catalogue/1", {"name": "环保袋", "cost": 30, "stock": 2}),
        (ME, "catalogue.stock", "catalogue/1", {"amount": 5, "reason": "街道送来一箱"}),
        (ME, "catalogue.edit", "catalogue/1", {"cost": 25, "active": False}),
    ]


async def test_confirming_a_voucher_marks_it_used_once(admin: Staff, site: Harness) -> None:
    points = desk(site)
    await points.add_item("雨伞", 30, 3, actor="王主任")
    await points.adjust("o_li_resident", 50, "活动", actor="王主任")
    voucher = await points.redeem("o_li_resident", 1)
    page = await admin.follow("/admin/points/catalogue")
    issued = page.split("<h2>兑换码</h2>", 1)[1]
    assert voucher.code in issued and mask("o_li_resident") in issued
    assert f"确认领取 {voucher.code}" in issued

    status, where = await admin.post(
        "/admin/points/vouchers/confirm", {"code": voucher.code.lower()}
    )
    assert "已确认领取：雨伞" in await admin.follow(where)
    assert (await points.redemptions(USED))[0].confirmed_by == ME
    assert await points.redemptions(ISSUED) == []
    used = await admin.follow(f"/admin/points/catalogue?state={USED}")
    assert voucher.code in used.split("<h2>兑换码</h2>", 1)[1]

    status, where = await admin.post("/admin/points/vouchers/confirm", {"code": voucher.code})
    assert "已经使用过，不能重复兑换" in await admin.follow(where)
    status, page = await admin.post("/admin/points/vouchers/confirm", {"code": "NOSUCH22"})
    assert status == 404 and "没有兑换码 NOSUCH22" in page
    assert await _audit(site, "redemption.") == [
        (ME, "redemption.confirm", f"redemption/{voucher.code}", {"item": 1})
    ]
    # The resident's page lists the voucher as handed over.
    mine = await admin.follow("/admin/points/o_li_resident")
    assert voucher.code in mine and "已领取" in mine


async def test_grid_workers_cannot_use_the_points_pages(grid_worker: Staff, site: Harness) -> None:
    for path in ("/admin/points", "/admin/points/o_li", "/admin/points/catalogue"):
        assert (await grid_worker.get(path))[0] == 403, path
    status, _ = await grid_worker.post(
        "/admin/points/o_li", {"amount": "100", "reason": "给自己", "key": "k-1"}
    )
    assert status == 403
    assert await desk(site).balance("o_li") == 0


async def test_staff_award_points_and_stock_the_catalogue_in_a_browser(
    page: Any, site: Harness
) -> None:
    await desk(site).adjust("o_browser_resident", 12, "志愿活动签到：夜跑巡逻", actor="system")
    await browser_log_in(page)
    await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="积分").click()
    await page.get_by_label("居民的微信 openid").fill("o_browser_resident")
    await page.get_by_role("button", name="查看积分").click()
    await page.get_by_label("积分数").fill("8")
    await page.get_by_label("原因").fill("帮助邻居搬家")
    await page.get_by_role("button", name="记入积分").click()
    await page.get_by_text("已奖励+8积分，现有20积分").wait_for()
    assert await page.get_by_role("cell", name="帮助邻居搬家").count() == 1
    await screenshot(page, "points-resident")

    await page.get_by_role("link", name="返回积分").click()
    await page.get_by_role("link", name="兑换物品和兑换码").click()
    await page.get_by_label("名称（最多30个字）").fill("环保袋")
    await page.get_by_label("所需积分").last.fill("15")
    await page.get_by_label("初始库存（件）").fill("10")
    await page.get_by_role("button", name="添加物品").click()
    await page.get_by_text("已添加“环保袋”").wait_for()
    await page.get_by_label("数量").fill("5")
    await page.get_by_label("原因").fill("补货")
    await page.get_by_role("button", name="调整“环保袋”库存").click()
    await page.get_by_text("“环保袋”现有库存15件").wait_for()
    await screenshot(page, "points-catalogue")


async def test_the_points_pages_fit_the_window_at_200_percent_zoom(
    browser: Any, site: Harness
) -> None:
    points = desk(site)
    await points.add_item("社区定制环保购物袋", 30, 3, actor="王主任")
    await points.adjust("o_li_resident", 50, "长期参加夜跑巡逻队" * 5, actor="王主任")
    await points.redeem("o_li_resident", 1)
    # 200 % zoom on a 1280-pixel screen leaves 640 CSS pixels.
    context = await browser.new_context(
        base_url=site.url("/"), locale="zh-CN", viewport={"width": 640, "height": 800}
    )
    try:
        zoomed = await context.new_page()
        await browser_log_in(zoomed)
        for path in ("", "/o_li_resident", "/catalogue"):
            await zoomed.goto(f"/admin/points{path}")
            wider = await zoomed.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert wider <= 0, path
    finally:
        await context.close()
