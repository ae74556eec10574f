"""Staff run volunteer activities from the pages: create, edit, cancel, rosters, the QR sheet.

Residents sign up through the chat, as they do; staff act through the forms, and what
each side sees of the other is what these tests check.
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import keys
from bot.domain.volunteers import VolunteerDesk
from bot.redact import mask
from bot.wechat.fake_api import FakeWeChatAPI
from tests.conftest import Harness
from tests.web.conftest import ADMIN_NAME, Staff, browser_log_in, screenshot

TZ = ZoneInfo("Asia/Shanghai")  # the harness's [scheduler] timezone
HOUR = 3600.0
ME = f"web:{ADMIN_NAME}"


def _local(site: Harness, hours_from_now: float) -> str:
    """A time as <input type="datetime-local"> sends it: local, no offset, to the minute."""
    at = datetime.fromtimestamp(site.clock.now + hours_from_now * HOUR, TZ)
    return at.strftime("%Y-%m-%dT%H:%M")


def _shown(at: float) -> str:
    """An activity's time as its edit form shows it."""
    return datetime.fromtimestamp(at, TZ).strftime("%Y-%m-%dT%H:%M")


def desk(site: Harness) -> VolunteerDesk:
    return site.app[keys.SERVICES].volunteers


def _form(site: Harness, **fields: str) -> dict[str, str]:
    values = {
        "title": "夜跑巡逻",
        "place": "社区东门",
        "description": "请穿运动鞋",
        "starts_at": _local(site, 48),
        "ends_at": _local(site, 50),
        "capacity": "2",
        "points": "10",
        "remind_before_hours": "24",
    }
    values.update(fields)
    return values


async def _create(admin: Staff, site: Harness, **fields: str) -> int:
    await admin.get("/admin/activities/new")
    status, where = await admin.post("/admin/activities", _form(site, **fields))
    assert status == 303, where[:500]
    return int(where.rsplit("/", 1)[1])


async def _sign_up(site: Harness, openid: str) -> str:
    """The resident signs up for the first activity listed, in the chat."""
    resident = site.resident(openid)
    assert "近期志愿活动" in (await resident.say("报名") or "")
    await resident.say("1")
    return await resident.say("1") or ""


async def _bind(site: Harness, openid: str, address: str, name: str) -> None:
    resident = site.resident(openid)
    await resident.say("绑定")
    await resident.say(address)
    await resident.say(name)
    assert (await resident.say("1") or "").startswith("绑定成功")


def _counts(listing: str, number: int) -> list[str]:
    """The list's number cells for one activity: places, signed up, waitlist, checked in."""
    row = listing.split(f'href="/admin/activities/{number}"', 1)[1].split("</tr>", 1)[0]
    return re.findall(r'<td class="num">(\d+)</td>', row)


async def _audit(site: Harness) -> list[tuple[str, str, str]]:
    entries = await site.app[keys.AUDIT].page(after=None, limit=100)
    return [(e.actor, e.action, e.target) for e in entries if e.action.startswith("activity.")]


async def test_an_activity_created_through_the_form_is_listed_with_its_check_in_code(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    number = await _create(admin, site, remind_before_hours="1.5")
    page = await admin.follow(f"/admin/activities/{number}")
    assert "已创建活动《夜跑巡逻》" in page
    created = await desk(site).get(number)
    assert (created.capacity, created.points, created.remind_before) == (2, 10, 1.5 * HOUR)
    assert (
        created.starts_at == datetime.fromisoformat(_local(site, 48)).replace(tzinfo=TZ).timestamp()
    )
    assert created.created_by == ME and created.description == "请穿运动鞋"
    assert created.qr is not None
    assert fake_api.qrcode_scene(created.qr.ticket) == f"act:{number}"

    listing = await admin.follow("/admin/activities")
    assert "夜跑巡逻" in listing and "社区东门" in listing and "报名中" in listing
    assert f'href="/admin/activities/{number}"' in listing
    assert await _audit(site) == [(ME, "activity.create", f"activity/{number}")]
    # Residents see it in the chat at once.
    assert "夜跑巡逻" in (await site.resident("o_li").say("报名") or "")


async def test_a_form_the_desk_refuses_shows_its_message_and_creates_nothing(
    admin: Staff, site: Harness
) -> None:
    cases = [
        ({"ends_at": _local(site, 47)}, "结束时间必须晚于开始时间"),
        ({"starts_at": _local(site, -3), "ends_at": _local(site, -1)}, "开始时间必须在将来"),
        ({"capacity": "0"}, "名额（capacity）必须在 1 到 2000 之间"),
        ({"capacity": "十个"}, "“名额”必须填写整数"),
        ({"remind_before_hours": "一天"}, "“提前提醒”必须填写小时数"),
    ]
    for change, message in cases:
        await admin.get("/admin/activities/new")
        status, where = await admin.post("/admin/activities", _form(site, **change))
        assert status == 303, where[:300]
        assert message in await admin.follow(where), change
    assert await desk(site).all() == []
    assert "近期没有活动" in await admin.follow("/admin/activities")
    assert await _audit(site) == []


async def test_residents_who_signed_up_in_the_chat_show_in_order_with_the_waitlist(
    admin: Staff, site: Harness
) -> None:
    number = await _create(admin, site, capacity="2")
    await _bind(site, "o_wang_ayi_0001", "3栋2单元501", "王阿姨")
    for openid in ("o_wang_ayi_0001", "o_li_shushu_002"):
        assert (await _sign_up(site, openid)).startswith("报名成功")
    assert "排第1位" in await _sign_up(site, "o_zhao_waiting1")
    assert "排第2位" in await _sign_up(site, "o_qian_waiting2")

    page = await admin.follow(f"/admin/activities/{number}")
    signed, _, waiting = page.partition("候补名单（2）")
    assert "已报名（2/2）" in signed
    first, second = mask("o_wang_ayi_0001"), mask("o_li_shushu_002")
    assert first in signed and second in signed and signed.index(first) < signed.index(second)
    assert "王阿姨" in signed and "3栋2单元501" in signed  # the bound household names her
    assert "未绑定" in signed
    third, fourth = mask("o_zhao_waiting1"), mask("o_qian_waiting2")
    assert third not in signed
    assert waiting.index(third) < waiting.index(fourth)
    assert 'href="/admin/points/o_wang_ayi_0001"' in signed

    listing = await admin.follow("/admin/activities")
    assert "已报满" in listing
    assert _counts(listing, number) == ["2", "2", "2", "0"]


async def test_a_check_in_by_qr_scan_shows_on_the_roster_and_in_the_list(
    admin: Staff, site: Harness
) -> None:
    number = await _create(admin, site, starts_at=_local(site, 0.5), ends_at=_local(site, 2))
    await _sign_up(site, "o_member_0001")
    await _sign_up(site, "o_member_0002")
    reply = await site.resident("o_member_0001").event("SCAN", EventKey=f"act:{number}", Ticket="t")
    assert reply is not None
    page = await admin.follow(f"/admin/activities/{number}")
    assert "<dt>已签到</dt><dd>1 人</dd>" in page
    rows = page.split("已报名（2/2）", 1)[1].split("</table>", 1)[0].split("<tr>")
    checked = [r for r in rows if mask("o_member_0001") in r]
    assert len(checked) == 1 and "已签到" in checked[0]
    assert "未签到" in next(r for r in rows if mask("o_member_0002") in r)
    # Places, signed up, waitlist, checked in.
    assert _counts(await admin.follow("/admin/activities"), number) == ["2", "2", "0", "1"]


async def test_an_edit_is_saved_and_one_the_desk_refuses_shows_its_message_and_changes_nothing(
    admin: Staff, site: Harness
) -> None:
    number = await _create(admin, site, capacity="3")
    for openid in ("o_a_resident_1", "o_b_resident_2"):
        await _sign_up(site, openid)
    status, form_page = await admin.get(f"/admin/activities/{number}/edit")
    assert status == 200 and 'value="夜跑巡逻"' in form_page
    assert f'value="{_local(site, 48)}"' in form_page  # the time in the community's zone

    fields = _form(site, capacity="3", place="社区西门")
    assert (await admin.post(f"/admin/activities/{number}", fields))[0] == 303
    assert "已保存《夜跑巡逻》的修改" in await admin.follow(f"/admin/activities/{number}")
    assert (await desk(site).get(number)).place == "社区西门"
    entries = await site.app[keys.AUDIT].page(after=None, limit=100)
    (edit,) = [e for e in entries if e.action == "activity.edit"]
    assert (edit.actor, edit.detail) == (ME, {"place": "社区西门"})  # only what was changed

    await admin.get(f"/admin/activities/{number}/edit")
    status, where = await admin.post(
        f"/admin/activities/{number}", _form(site, capacity="1", place="社区西门")
    )
    assert status == 303
    assert "已有2人报名，名额不能少于2" in await admin.follow(where)
    assert (await desk(site).get(number)).capacity == 3

    soon = await _create(admin, site, starts_at=_local(site, 0.5), ends_at=_local(site, 2))
    site.clock.advance(0.6 * HOUR)  # it has started
    started = await desk(site).get(soon)
    await admin.get(f"/admin/activities/{soon}/edit")
    status, where = await admin.post(
        f"/admin/activities/{soon}",
        _form(
            site, title="改名", starts_at=_shown(started.starts_at), ends_at=_shown(started.ends_at)
        ),
    )
    assert "活动已经开始，不能修改" in await admin.follow(where)
    assert (await desk(site).get(soon)).title == "夜跑巡逻"
    assert [a for _, a, _ in await _audit(site)] == [
        "activity.create",
        "activity.edit",
        "activity.create",
    ]


async def test_cancelling_asks_a_reason_tells_residents_and_the_list_says_cancelled(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    number = await _create(admin, site, capacity="1")
    await _sign_up(site, "o_member_0001")
    await _sign_up(site, "o_waiting_002")
    page = await admin.follow(f"/admin/activities/{number}")
    assert 'class="danger">取消这个活动</button>' in page

    status, where = await admin.post(f"/admin/activities/{number}/cancel", {"reason": ""})
    assert "请填写取消原因" in await admin.follow(where)
    assert not (await desk(site).get(number)).cancelled

    status, where = await admin.post(f"/admin/activities/{number}/cancel", {"reason": "暴雨预警"})
    assert (status, where) == (303, f"/admin/activities/{number}")
    page = await admin.follow(where)
    assert "已取消活动《夜跑巡逻》" in page and "原因：暴雨预警" in page
    assert "取消这个活动" not in page and "修改活动" not in page
    await site.app[keys.TASKS].wait_idle(10, besides=("scheduler-lease",))
    for openid in ("o_member_0001", "o_waiting_002"):
        (notice,) = [t for t in fake_api.sent_texts(openid) if "已取消" in t]
        assert "《夜跑巡逻》" in notice and "原因：暴雨预警" in notice

    listing = await admin.follow("/admin/activities")
    assert '<span class="badge bad">已取消</span>' in listing and "暴雨预警" in listing
    assert (ME, "activity.cancel", f"activity/{number}") in await _audit(site)
    # Residents can no longer sign up.
    assert "近期志愿活动" not in (await site.resident("o_late").say("报名") or "")


async def test_the_check_in_sheet_shows_the_wechat_code_large_with_an_instruction(
    admin: Staff, site: Harness
) -> None:
    number = await _create(admin, site)
    qr = (await desk(site).get(number)).qr
    assert qr is not None
    status, page = await admin.get(f"/admin/activities/{number}/qr")
    assert status == 200
    assert f'class="qr-code" src="{html.escape(qr.url)}"' in page
    assert "微信扫码签到" in page and "夜跑巡逻" in page and "社区东门" in page
    assert '<script src="/admin/static/print.js" defer></script>' in page
    assert "<script>" not in page and "onclick" not in page
    async with admin.session.get(site.url("/admin/static/print.js")) as resp:
        assert resp.status == 200 and "window.print()" in await resp.text()


async def test_the_attendance_sheet_downloads_with_the_staff_session(
    admin: Staff, anonymous: Staff, site: Harness
) -> None:
    number = await _create(admin, site, capacity="1")
    await _sign_up(site, "o_member_0001")
    await _sign_up(site, "o_waiting_002")
    async with admin.session.get(site.url(f"/admin/activities/{number}/attendance.csv")) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert "filename*=UTF-8''" in resp.headers["Content-Disposition"]
        body = (await resp.read()).decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body[1:])))
    assert rows[0] == ["openid", "状态", "已签到", "签到时间", "积分"]
    assert [r[:3] for r in rows[1:]] == [
        ["o_member_0001", "confirmed", "否"],
        ["o_waiting_002", "waitlisted #1", "否"],
    ]
    status, where = await anonymous.get(f"/admin/activities/{number}/attendance.csv")
    assert status == 303 and where.startswith("/admin/login")


async def test_grid_workers_and_strangers_cannot_use_the_activity_pages(
    grid_worker: Staff, anonymous: Staff, site: Harness
) -> None:
    await desk(site).create(
        {
            "title": "夜跑巡逻",
            "place": "社区东门",
            "starts_at": _local(site, 48),
            "ends_at": _local(site, 50),
            "capacity": 2,
        },
        actor="test",
    )
    for path in ("/admin/activities", "/admin/activities/1", "/admin/activities/1/qr"):
        assert (await grid_worker.get(path))[0] == 403, path
    status, page = await grid_worker.post("/admin/activities/1/cancel", {"reason": "试试"})
    assert status == 403 and "没有权限" in page
    status, _ = await anonymous.post("/admin/activities/1/cancel", {"reason": "试试"})
    assert status == 401
    assert not (await desk(site).get(1)).cancelled
    assert (await grid_worker.get("/admin/activities/99"))[0] == 403


async def test_an_unknown_activity_is_a_plain_not_found_page(admin: Staff) -> None:
    status, page = await admin.get("/admin/activities/99")
    assert status == 404 and "没有编号为 99 的活动" in page


async def test_staff_create_an_activity_and_print_its_code_in_a_browser(
    page: Any, site: Harness
) -> None:
    await browser_log_in(page)
    await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="志愿活动").click()
    await page.get_by_role("link", name="新建活动").click()
    await page.get_by_label("活动名称").fill("楼道清扫")
    await page.get_by_label("地点").fill("3栋楼下")
    await page.get_by_label("活动说明").fill("自带手套，社区提供扫帚")
    await page.get_by_label("开始时间").fill(_local(site, 72))
    await page.get_by_label("结束时间").fill(_local(site, 74))
    await page.get_by_label("名额").fill("8")
    await page.get_by_label("签到可得积分").fill("5")
    await page.get_by_role("button", name="创建活动").click()
    await page.get_by_text("已创建活动《楼道清扫》").wait_for()
    await page.get_by_role("heading", name="已报名（0/8）").wait_for()
    await _sign_up(site, "o_browser_resident")
    await page.reload()
    await page.get_by_role("heading", name="已报名（1/8）").wait_for()
    await screenshot(page, "activity-detail")

    await page.get_by_role("link", name="返回活动列表").click()
    await page.get_by_role("link", name="楼道清扫").wait_for()
    assert await page.get_by_role("cell", name="3栋楼下").count() == 1
    await screenshot(page, "activities-list")

    await page.get_by_role("link", name="楼道清扫").click()
    await page.get_by_role("link", name="打印签到二维码").click()
    await page.get_by_text("微信扫码签到").wait_for()
    qr = (await desk(site).get(1)).qr
    assert qr is not None
    image = page.get_by_role("img", name="《楼道清扫》签到二维码")
    assert await image.get_attribute("src") == qr.url
    printing = page.get_by_role("button", name="打印")
    await printing.wait_for()  # shown by print.js: the CSP let our own script run
    await screenshot(page, "activity-qr")
    await page.emulate_media(media="print")
    assert not await page.get_by_role("navigation", name="主菜单").is_visible()
    assert not await printing.is_visible()
    assert await page.get_by_text("微信扫码签到").is_visible()


async def test_the_activity_pages_fit_the_window_at_200_percent_zoom(
    browser: Any, admin: Staff, site: Harness
) -> None:
    number = await _create(admin, site, capacity="1", description="请穿运动鞋，" * 40)
    await _bind(site, "o_wang_ayi_0001", "3栋2单元501", "王阿姨")
    await _sign_up(site, "o_wang_ayi_0001")
    await _sign_up(site, "o_waiting_002")
    # 200 % zoom on a 1280-pixel screen leaves 640 CSS pixels.
    context = await browser.new_context(
        base_url=site.url("/"), locale="zh-CN", viewport={"width": 640, "height": 800}
    )
    try:
        zoomed = await context.new_page()
        await browser_log_in(zoomed)
        for path in ("", f"/{number}", f"/{number}/edit", f"/{number}/qr", "/new"):
            await zoomed.goto(f"/admin/activities{path}")
            wider = await zoomed.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert wider <= 0, path
    finally:
        await context.close()
