"""The staff pages in a real browser: keyboard, labels, 200 % zoom, Chinese throughout."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import browser_log_in, screenshot

MAIN_PAGES = (
    "/admin/",
    "/admin/schedules",
    "/admin/schedules/assembly-call",
    "/admin/activities",
    "/admin/reports",
    "/admin/assemblies",
    "/admin/points",
    "/admin/points/catalogue",
    "/admin/audit",
    "/admin/users",
)

# Form controls a person fills in that no <label> (or aria-label) names.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden' && el.type !== 'submit')
  .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML.slice(0, 120))"""

WIDER_THAN_WINDOW = "() => document.documentElement.scrollWidth - window.innerWidth"


async def test_every_main_page_has_labelled_fields_a_heading_and_a_chinese_title(
    page: Any,
) -> None:
    await browser_log_in(page)
    for path in MAIN_PAGES:
        response = await page.goto(path)
        assert response.status == 200, path
        assert await page.evaluate(UNLABELLED) == [], path
        assert await page.locator("h1").count() == 1, path
        assert await page.evaluate("document.documentElement.lang") == "zh-CN"
        title = await page.title()
        assert title.endswith("· 共治") and any("\u4e00" <= ch <= "\u9fff" for ch in title), path


async def test_the_keyboard_reaches_the_menu_and_skips_to_the_content(page: Any) -> None:
    await browser_log_in(page)
    await page.goto("/admin/schedules")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "跳到正文"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await page.goto("/admin/schedules")
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent") == "报事":
            break
    else:
        raise AssertionError("the 报事 menu link cannot be reached with Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/admin/reports")


async def test_at_200_percent_zoom_no_page_scrolls_sideways(browser: Any, site: Any) -> None:
    # 200 % zoom on a 1280-pixel screen leaves 640 CSS pixels: what a zoomed page lays out in.
    context = await browser.new_context(
        base_url=site.url("/"),
        locale="zh-CN",
        viewport={"width": 640, "height": 800},
        device_scale_factor=2,
    )
    try:
        zoomed = await context.new_page()
        await browser_log_in(zoomed)
        for path in MAIN_PAGES:
            await zoomed.goto(path)
            assert await zoomed.evaluate(WIDER_THAN_WINDOW) <= 0, path
        await zoomed.goto("/admin/schedules/assembly-call")
        await screenshot(zoomed, "zoom-200-schedule")
    finally:
        await context.close()
