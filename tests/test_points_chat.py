"""积分, 积分明细 and 兑换 in the chat, on every backend."""

from __future__ import annotations

from bot import keys
from bot.domain.points import PointsDesk
from handlers.points import NO_POINTS, NOT_NOW
from tests.conftest import Harness


def points(harness: Harness) -> PointsDesk:
    return harness.app[keys.SERVICES].points


async def award(harness: Harness, openid: str, *amounts: int) -> None:
    for n, amount in enumerate(amounts, 1):
        await points(harness).adjust(openid, amount, f"第{n}次活动", actor="王主任")


async def test_a_resident_without_points_is_told_how_to_earn_them(harness: Harness) -> None:
    assert await harness.resident().say("积分") == NO_POINTS


async def test_balance_rank_and_the_last_five_entries(harness: Harness) -> None:
    await award(harness, "o_top", 100)
    await award(harness, "o_li", 10, 20, 5, -3, 8, 1)
    await award(harness, "o_low", 2)
    reply = await harness.resident("o_li").say("积分")
    assert reply is not None
    lines = reply.splitlines()
    assert lines[0] == "您的志愿积分：41分"
    assert lines[1] == "社区排名：第2名（共3人有积分）"
    assert lines[2] == "最近记录："
    # Newest first, five of the six, with their reasons; a correction shows its minus.
    assert [line.split(" ", 1)[1] for line in lines[3:8]] == [
        "+1 第6次活动",
        "+8 第5次活动",
        "-3 第4次活动",
        "+5 第3次活动",
        "+20 第2次活动",
    ]
    assert "积分明细" in lines[8]


async def test_the_history_pages_through_every_entry(harness: Harness) -> None:
    await award(harness, "o_li", *range(1, 24))  # 23 entries
    resident = harness.resident("o_li")
    first = await resident.say("积分明细")
    assert first is not None and first.startswith("积分明细（第1/3页，共23条）：")
    assert "+23 第23次活动" in first and "+14 第14次活动" in first
    assert "+13 第13次活动" not in first
    second = await resident.say("下一页")
    assert second is not None and second.startswith("积分明细（第2/3页，共23条）：")
    third = await resident.say("1")
    assert third is not None and third.startswith("积分明细（第3/3页，共23条）：")
    assert "+1 第1次活动" in third and third.endswith("以上是全部记录。")
    # The flow is over: a "1" now picks from the main menu.
    after = await resident.say("1")
    assert after is not None and "积分明细" not in after


async def test_redeeming_gives_a_voucher_and_takes_points_and_stock(harness: Harness) -> None:
    desk = points(harness)
    await desk.add_item("环保袋", 30, 2, actor="王主任")
    await desk.add_item("雨伞", 80, 1, actor="王主任")
    await award(harness, "o_li", 50)
    resident = harness.resident("o_li")
    listing = await resident.say("兑换")
    assert listing is not None
    assert "可兑换物品（您有50积分，回复序号兑换）：" in listing
    assert "1. 环保袋｜30积分｜剩余2件" in listing and "2. 雨伞｜80积分｜剩余1件" in listing
    short = await resident.say("2")
    assert short is not None and short.startswith(
        "积分不足：兑换“雨伞”需要80积分，您现在有50积分。"
    )
    ask = await resident.say("1")
    assert ask == "兑换“环保袋”需要30积分，兑换后您还剩20积分。\n1. 确认兑换\n2. 不兑换"
    done = await resident.say("确认")
    assert done is not None and done.startswith("兑换成功！\n兑换码：")
    code = done.split("兑换码：", 1)[1].split("\n", 1)[0]
    assert len(code) == 8
    assert await desk.balance("o_li") == 20
    again = await resident.say("兑换")
    assert again is not None and f"· {code}（环保袋）" in again and "剩余1件" in again
    used = await desk.confirm(code.lower(), actor="王主任")
    assert used.state == "used"


async def test_declining_or_cancelling_a_redemption_takes_nothing(harness: Harness) -> None:
    desk = points(harness)
    await desk.add_item("环保袋", 30, 2, actor="王主任")
    await award(harness, "o_li", 50)
    resident = harness.resident("o_li")
    await resident.say("兑换")
    await resident.say("1")
    assert await resident.say("2") == NOT_NOW
    await resident.say("兑换")
    await resident.say("1")
    left = await resident.say("取消")
    assert left is not None and left.startswith("已退出当前操作。")
    assert await desk.balance("o_li") == 50
    [stocked] = await desk.catalogue(active_only=True)
    assert stocked.stock == 2


async def test_the_last_item_taken_meanwhile_is_refused_without_taking_points(
    harness: Harness,
) -> None:
    desk = points(harness)
    await desk.add_item("雨伞", 20, 1, actor="王主任")
    await award(harness, "o_li", 50)
    await award(harness, "o_wang", 50)
    li, wang = harness.resident("o_li"), harness.resident("o_wang")
    for r in (li, wang):
        await r.say("兑换")
        await r.say("1")
    assert (await li.say("1") or "").startswith("兑换成功")
    assert await wang.say("1") == "兑换没有成功：“雨伞”已经兑完了，请选择其他物品。"
    assert await desk.balance("o_wang") == 50
    empty = await wang.say("兑换")
    assert empty == "目前没有可以兑换的物品，请留意社区通知。"


async def test_a_number_out_of_range_in_the_catalogue_is_explained(harness: Harness) -> None:
    await points(harness).add_item("环保袋", 30, 2, actor="王主任")
    resident = harness.resident("o_li")
    await resident.say("兑换")
    assert await resident.say("5") == "没有第5项，请回复 1–1 之间的序号。"
