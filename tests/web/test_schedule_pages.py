"""Staff pages for schedules: the list, editing with a preview, pause and resume, run now
after a confirmation, and each run's deliveries, through the real app and a browser.

Residents bind their households through the chat; the monthly assembly call goes to
their representatives; the fake WeChat API records what was sent.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import keys
from bot.domain.schedules import next_runs
from bot.web.schedules import moment
from bot.wechat.fake_api import FakeWeChatAPI
from tests.conftest import Harness
from tests.test_households import bind
from tests.web.conftest import ADMIN_NAME, Staff, browser_log_in, screenshot

TZ = ZoneInfo("Asia/Shanghai")
CALL = "/admin/schedules/assembly-call"
REPRESENTATIVES = {
    "o_rep_wang_101": "1栋1单元101",
    "o_rep_li_102": "1栋1单元102",
    "o_rep_zhao_201": "2栋1单元201",
}
PLACE = "清源社区院坝"


async def community(site: Harness, representatives: dict[str, str] = REPRESENTATIVES) -> None:
    """Households bound through the chat, the next assembly, and the call's template id."""
    for openid, address in representatives.items():
        await bind(site, openid, address)
    starts = datetime.fromtimestamp(site.clock.now + 5 * 24 * 3600, TZ).replace(hour=19, minute=0)
    status, meeting = await site.admin(
        "POST",
        "/meetings",
        body={
            "starts_at": starts.strftime("%Y-%m-%dT%H:%M"),
            "place": PLACE,
            "agenda": "楼道堆物清理",
        },
    )
    assert status == 201, meeting
    status, _ = await site.admin(
        "PATCH", "/schedules/assembly-call", body={"template_id": "TPL-CALL"}
    )
    assert status == 200


async def settled(site: Harness) -> None:
    assert await site.app[keys.TASKS].wait_idle(10, besides=("scheduler-lease",))


def sends_to_each(fake_api: FakeWeChatAPI) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in fake_api.calls_to("template_send"):
        counts[call.body["touser"]] = counts.get(call.body["touser"], 0) + 1
    return counts


def text_of(html: str) -> str:
    """The page's visible text, tags removed and spaces squeezed, to read as staff do."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def the_form(schedule_cron: str = "0 9 1 * *", **changes: str) -> dict[str, str]:
    fields = {
        "name": "户主坝坝会通知",
        "cron": schedule_cron,
        "template": "各位户代表：本月户主坝坝会定于{time}在{place}召开。",
        "audience": "all",
        "channel": "template",
        "template_id": "TPL-CALL",
        "action": "save",
    }
    return {**fields, **changes}


async def audit_of(site: Harness, target: str) -> list[tuple[str, str]]:
    entries = await site.app[keys.AUDIT].page(after=None, limit=200)
    return [(e.actor, e.action) for e in entries if e.target == target]


# --- the browser: the end-to-end test ---------------------------------------


async def test_staff_change_the_monthly_call_see_the_preview_save_and_send_it_now(
    page: Any, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    from playwright.async_api import expect

    await community(site)
    await browser_log_in(page)
    menu = page.get_by_role("navigation", name="主菜单")
    await menu.get_by_role("link", name="定时任务").click()
    await expect(page.get_by_role("heading", name="定时任务", level=1)).to_be_visible()
    row = page.get_by_role("row").filter(has_text="户主坝坝会通知")
    await expect(row).to_contain_text("每月1日 09:00")
    await screenshot(page, "schedules-list")

    await row.get_by_role("link", name="户主坝坝会通知").click()
    preview = page.locator("#cron-preview")
    await expect(preview).to_contain_text("每月1日 09:00")
    before = await preview.get_by_role("listitem").all_inner_texts()
    assert len(before) == 5 and all(re.search(r"-01 周. 09:00$", t) for t in before), before

    # The page's script refreshes the preview while staff type ...
    cron = page.get_by_label("运行时间（cron 表达式）")
    await cron.fill("30 8 15 * *")
    await expect(preview).to_contain_text("每月15日 08:30")
    # ... and the 预览 button shows the same without it, saving nothing.
    await page.get_by_role("button", name="预览").click()
    await expect(page.get_by_role("heading", name="运行时间预览（尚未保存）")).to_be_visible()
    await expect(preview).to_contain_text("每月15日 08:30")
    after = await preview.get_by_role("listitem").all_inner_texts()
    expected = [moment(t) for t in next_runs("30 8 15 * *", TZ, site.clock.now)]
    assert after == expected and after != before
    assert all(re.search(r"-15 周. 08:30$", t) for t in after), after
    assert (await site.app[keys.SCHEDULES].get("assembly-call")).cron == "0 9 1 * *"
    await expect(cron).to_have_value("30 8 15 * *")
    await screenshot(page, "schedule-edit")

    await page.get_by_role("button", name="保存").click()
    await expect(page.get_by_role("status")).to_contain_text("已保存：每月15日 08:30")
    assert (await site.app[keys.SCHEDULES].get("assembly-call")).cron == "30 8 15 * *"
    await menu.get_by_role("link", name="定时任务").click()
    row = page.get_by_role("row").filter(has_text="户主坝坝会通知")
    await expect(row).to_contain_text("每月15日 08:30")
    await expect(row).to_contain_text(expected[0])

    await row.get_by_role("link", name="户主坝坝会通知").click()
    await page.get_by_role("link", name="立即发送").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("立即发送：户主坝坝会通知")
    main = page.get_by_role("main")
    await expect(main).to_contain_text("全体户代表，目前共 3 位")
    await expect(main).to_contain_text(f"在{PLACE}召开")
    await settled(site)
    assert fake_api.calls_to("template_send") == []  # the confirmation page sends nothing

    await page.get_by_role("button", name="确认立即发送").click()
    await expect(page.get_by_role("status")).to_contain_text("已开始发送")
    await expect(page.get_by_role("heading", level=1)).to_have_text("运行记录：户主坝坝会通知")
    await settled(site)
    await page.reload()
    history = page.get_by_role("table")
    [cells] = [
        await r.get_by_role("cell").all_inner_texts()
        for r in await history.get_by_role("row").all()
        if await r.get_by_role("cell").count()
    ]
    assert cells[2:9] == ["立即发送", f"web:{ADMIN_NAME}", "3", "3", "0", "0", "0"], cells
    assert sends_to_each(fake_api) == dict.fromkeys(REPRESENTATIVES, 1)
    await screenshot(page, "schedule-history")


# --- editing --------------------------------------------------------------------------


async def test_the_list_shows_each_schedule_in_words_with_its_next_run(
    admin: Staff, site: Harness
) -> None:
    status, html = await admin.get("/admin/schedules")
    assert status == 200
    page = text_of(html)
    first = next_runs("0 9 1 * *", TZ, site.clock.now, 1)[0]
    assert (
        f"户主坝坝会通知 每月1日 09:00 0 9 1 * * 全体户代表 模板消息 运行中 {moment(first)}" in page
    )
    assert "坝坝会前一天提醒 每天 18:00 0 18 * * *" in page


async def test_a_preview_shows_the_words_and_next_runs_of_the_typed_cron_without_saving(
    admin: Staff, site: Harness
) -> None:
    await admin.get(CALL)
    status, html = await admin.post(CALL, the_form("0 9 * * 1-5", action="preview"))
    assert status == 200
    assert "每周一至周五 09:00" in html
    runs = re.findall(r"<li>(.*?)</li>", html.split('id="cron-preview"')[1])
    assert runs == [moment(t) for t in next_runs("0 9 * * 1-5", TZ, site.clock.now)]
    assert all(" 周六 " not in t and " 周日 " not in t for t in runs)
    assert 'value="0 9 * * 1-5"' in html  # the typed form is kept for 保存
    assert (await site.app[keys.SCHEDULES].get("assembly-call")).cron == "0 9 1 * *"
    assert await audit_of(site, "schedule/assembly-call") == []

    # The same preview by a link, and the fragment the page's script asks for.
    status, html = await admin.get(CALL, cron="*/30 * * * *")
    assert status == 200 and "每30分钟" in html
    status, fragment = await admin.get(f"{CALL}/preview", cron="0 9 1,15 * *")
    assert status == 200 and "每月1日、15日 09:00" in fragment and "<html" not in fragment


async def test_a_bad_cron_is_refused_in_chinese_and_nothing_is_saved(
    admin: Staff, site: Harness
) -> None:
    await admin.get(CALL)
    status, html = await admin.post(CALL, the_form("61 8 * * *", action="preview"))
    assert status == 200
    preview = html.split('id="cron-preview"')[1].split("</section>")[0]
    assert "cron 表达式无效：61 8 * * *（格式：分 时 日 月 周，如 0 9 1 * *）" in preview
    assert "<li>" not in preview

    status, where = await admin.post(CALL, the_form("61 8 * * *"))
    assert status == 303
    assert "cron 表达式无效" in await admin.follow(where)
    saved = await site.app[keys.SCHEDULES].get("assembly-call")
    assert (saved.cron, saved.template_id) == ("0 9 1 * *", "")
    assert await audit_of(site, "schedule/assembly-call") == []

    status, fragment = await admin.get(f"{CALL}/preview", cron="0 9 * * 8")
    assert status == 200 and "cron 表达式无效" in fragment


async def test_saving_takes_effect_at_once_and_the_audit_log_names_the_staff_member(
    admin: Staff, site: Harness
) -> None:
    await admin.get(CALL)
    assert await admin.post(CALL, the_form("0 9 * * 1")) == (303, CALL)
    page = text_of(await admin.follow(CALL))
    assert "已保存：每周一 09:00，立即生效" in page
    assert "运行时间 每周一 09:00 （ 0 9 * * 1 ）" in page
    assert (
        f"最近修改 {datetime.fromtimestamp(site.clock.now, TZ):%Y-%m-%d %H:%M}，web:{ADMIN_NAME}"
        in page
    )
    job = site.app[keys.CRON_JOBS].next_run("assembly-call")
    assert job is not None and datetime.fromtimestamp(job, TZ).weekday() == 0
    assert await audit_of(site, "schedule/assembly-call") == [
        (f"web:{ADMIN_NAME}", "schedule.edit")
    ]


async def test_pause_and_resume_show_in_the_list_and_the_audit_log(
    admin: Staff, site: Harness
) -> None:
    await admin.get(CALL)
    status, where = await admin.post(f"{CALL}/pause")
    assert (status, where) == (303, CALL)
    page = text_of(await admin.follow(where))
    assert "已暂停“户主坝坝会通知”，恢复前不会按时发送" in page
    assert "下次运行 已暂停，恢复后才会运行" in page
    assert site.app[keys.CRON_JOBS].next_run("assembly-call") is None
    listed = text_of((await admin.get("/admin/schedules"))[1])
    assert "户主坝坝会通知 每月1日 09:00 0 9 1 * * 全体户代表 模板消息 已暂停 —" in listed

    status, where = await admin.post(f"{CALL}/resume")
    first = moment(next_runs("0 9 1 * *", TZ, site.clock.now, 1)[0])
    assert f"已恢复“户主坝坝会通知”，下次运行：{first}" in text_of(await admin.follow(where))
    listed = text_of((await admin.get("/admin/schedules"))[1])
    assert f"模板消息 运行中 {first}" in listed
    assert await audit_of(site, "schedule/assembly-call") == [
        (f"web:{ADMIN_NAME}", "schedule.pause"),
        (f"web:{ADMIN_NAME}", "schedule.resume"),
    ]


async def test_staff_create_a_schedule_from_the_list(admin: Staff, site: Harness) -> None:
    await admin.get("/admin/schedules")
    fields = {
        "id": "sanitation-day",
        "name": "卫生日提醒",
        "cron": "0 8 * * 6",
        "template": "本周六是社区卫生日，8点开始。",
        "audience": "building:1",
        "channel": "custom",
        "template_id": "",
    }
    assert await admin.post("/admin/schedules", fields) == (303, "/admin/schedules/sanitation-day")
    page = text_of(await admin.follow("/admin/schedules/sanitation-day"))
    assert "已新建定时任务“卫生日提醒”" in page and "每周六 08:00" in page and "1栋的户代表" in page
    status, where = await admin.post("/admin/schedules", {**fields, "id": "卫生日"})
    assert status == 303 and "编号只能是小写字母" in await admin.follow(where)
    assert await audit_of(site, "schedule/sanitation-day") == [
        (f"web:{ADMIN_NAME}", "schedule.create")
    ]


# --- run now, history, deliveries -----------------------------------------------------


async def test_the_confirmation_page_says_what_goes_to_whom_and_sends_nothing_by_itself(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await community(site)
    status, html = await admin.get(f"{CALL}/run")
    assert status == 200
    page = text_of(html)
    assert "接收人 全体户代表，目前共 3 位" in page
    assert "各位户代表：本月户主坝坝会定于" in page and f"在{PLACE}召开" in page
    assert "议题：楼道堆物清理" in page
    assert "确认立即发送" in page and "已经发送过" not in page
    await settled(site)
    assert fake_api.calls_to("template_send") == []
    assert await site.app[keys.SCHEDULES].runs("assembly-call") == []


async def test_run_now_twice_in_one_period_sends_once_and_says_so(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await community(site)
    await admin.get(f"{CALL}/run")
    status, where = await admin.post(f"{CALL}/run")
    assert (status, where) == (303, f"{CALL}/runs")
    period = datetime.fromtimestamp(site.clock.now, TZ).strftime("%Y-%m")
    assert f"已开始发送（{period}），共 3 位接收人" in await admin.follow(where)
    await settled(site)

    status, html = await admin.get(f"{CALL}/run")
    assert f"本期（{period}）已经发送过" in html
    status, where = await admin.post(f"{CALL}/run")
    assert f"本期（{period}）已经发送过，这次没有重复发送" in await admin.follow(where)
    await settled(site)
    assert sends_to_each(fake_api) == dict.fromkeys(REPRESENTATIVES, 1)
    history = text_of((await admin.get(f"{CALL}/runs"))[1])
    assert "本期已经发送过，这次没有重复发送" in history
    assert f"{period} 立即发送 web:{ADMIN_NAME} 3 3 0 0 0 已完成" in history
    assert await audit_of(site, "schedule/assembly-call") == [
        ("api", "schedule.edit"),  # the template id, set up through the API
        (f"web:{ADMIN_NAME}", "schedule.run"),
        (f"web:{ADMIN_NAME}", "schedule.run"),
    ]


async def test_failed_recipients_are_listed_with_wechats_errcode_and_reason(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await community(site)
    fake_api.fail_next("template_send", 43004)  # the first recipient has unfollowed
    await admin.get(f"{CALL}/run")
    await admin.post(f"{CALL}/run")
    await settled(site)
    status, html = await admin.get(f"{CALL}/runs")
    assert status == 200
    page = text_of(html)
    assert f"立即发送 web:{ADMIN_NAME} 3 2 1（查看） 0 0 已完成" in page
    link = re.search(r'href="([^"]+\?state=failed)"', html)
    assert link is not None
    status, html = await admin.get(link.group(1).replace("&amp;", "&"))
    assert status == 200
    page = text_of(html)
    [failed] = [c.body["touser"] for c in fake_api.calls_to("template_send")][:1]
    assert f"{REPRESENTATIVES[failed]} {failed} 失败 43004 对方已取消关注公众号" in page
    assert "43004: " in page  # WeChat's own message, as it answered
    assert page.count(" 失败 43004 ") == 1
    assert "重发状态不明的消息" not in page


async def test_staff_send_again_the_messages_whose_answer_was_lost(
    admin: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    await community(site)
    fake_api.fail_next("template_send", -2)  # no usable answer: it may have arrived
    await admin.get(f"{CALL}/run")
    await admin.post(f"{CALL}/run")
    await settled(site)
    status, html = await admin.get(f"{CALL}/runs")
    assert f"web:{ADMIN_NAME} 3 2 0 1（查看） 0 已完成 重发状态不明的消息" in text_of(html)
    key = datetime.fromtimestamp(site.clock.now, TZ).strftime("assembly-call:%Y-%m")
    status, html = await admin.get(f"{CALL}/pushes/{key}", state="unknown")
    assert status == 200 and "没有收到微信的答复，消息可能已送达" in text_of(html)

    status, where = await admin.post(f"{CALL}/pushes/{key}/retry-unknown")
    assert (status, where) == (303, f"{CALL}/runs")
    assert "已重新发送 1 条状态不明的消息" in await admin.follow(where)
    await settled(site)
    history = text_of((await admin.get(f"{CALL}/runs"))[1])
    assert f"web:{ADMIN_NAME} 3 3 0 0 0 已完成" in history
    assert "重发状态不明的消息" not in history
    assert len(fake_api.calls_to("template_send")) == 4
    entries = await site.app[keys.AUDIT].page(after=None, limit=200)
    assert (f"web:{ADMIN_NAME}", "push.retry_unknown", f"push/{key}") in [
        (e.actor, e.action, e.target) for e in entries
    ]


async def test_a_push_of_another_schedule_is_not_found_under_this_one(admin: Staff) -> None:
    status, _ = await admin.get(f"{CALL}/pushes/assembly-reminder:2026-12-01")
    assert status == 404
    status, html = await admin.get("/admin/schedules/no-such-schedule")
    assert status == 404 and "没有编号为 no-such-schedule 的定时任务" in html


# --- who may use the pages ------------------------------------------------------------


async def test_only_admins_use_the_schedule_pages_and_every_form_needs_its_token(
    admin: Staff, grid_worker: Staff, anonymous: Staff, site: Harness, fake_api: FakeWeChatAPI
) -> None:
    pages = ["/admin/schedules", CALL, f"{CALL}/run", f"{CALL}/runs", f"{CALL}/preview"]
    for path in pages:
        assert (await grid_worker.get(path))[0] == 403, path
        status, where = await anonymous.get(path)
        assert status == 303 and where.startswith("/admin/login?next="), path
    forms = [CALL, f"{CALL}/pause", f"{CALL}/resume", f"{CALL}/run", "/admin/schedules"]
    for path in forms:
        assert (await grid_worker.post(path, the_form("0 9 * * *")))[0] == 403, path
        assert (await anonymous.post(path, the_form("0 9 * * *")))[0] == 401, path
    await admin.get(CALL)
    status, html = await admin.post(CALL, the_form("0 9 * * *"), csrf=False)
    assert status == 403 and "表单已过期" in html
    status, _ = await admin.post(f"{CALL}/run", csrf=False)
    assert status == 403
    await settled(site)
    assert (await site.app[keys.SCHEDULES].get("assembly-call")).cron == "0 9 1 * *"
    assert await site.app[keys.SCHEDULES].runs("assembly-call") == []
    assert fake_api.calls_to("template_send") == []
