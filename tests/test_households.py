"""Binding a household (户), its representative (户代表), handover and leaving, as residents do it.

Every test runs on each backend (TinyDB, PostgreSQL, PostgreSQL + Redis) through the
real webhook with signed XML.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest_asyncio

from bot import keys
from bot.config import AssemblyConfig
from bot.domain.households import Address, HouseholdDesk, Outcome
from bot.wechat.fake_api import FakeWeChatAPI
from handlers.household import ASK_NAME, HANDOVER_HINT, NO_OTHER
from tests.conftest import FakeClock, Harness, make_config


def households(harness: Harness) -> HouseholdDesk:
    return harness.app[keys.SERVICES].households


async def bind(harness: Harness, openid: str, address: str = "3栋2单元501", name: str = "") -> str:
    """The whole binding flow; returns the bot's last answer."""
    resident = harness.resident(openid)
    ask = await resident.say("绑定")
    assert ask is not None and "请发送您家的地址（楼栋、单元、房号）" in ask, ask
    step = await resident.say(address)
    assert step is not None and step.startswith("地址：") and ASK_NAME in step, step
    confirm = await resident.say(name or "跳过")
    assert confirm is not None and "1. 确认绑定" in confirm, confirm
    return await resident.say("1") or ""


async def test_the_first_to_bind_represents_the_household_and_family_join_as_members(
    harness: Harness,
) -> None:
    first = harness.resident("o_wang")
    assert await first.say("绑定") == (
        "请发送您家的地址（楼栋、单元、房号），例如“3栋2单元501”。\n回复“取消”退出。"
    )
    assert await first.say("3栋2单元501室") == f"地址：3栋2单元501\n{ASK_NAME}"
    confirm = await first.say("王阿姨")
    assert confirm == (
        "请确认：\n地址：3栋2单元501\n称呼：王阿姨\n您是这一户第一个绑定的，将成为户代表。"
        "\n1. 确认绑定\n2. 重新填写"
    )
    done = await first.say("确认")
    assert done is not None and done.startswith("绑定成功！您是3栋2单元501的户代表")

    second = harness.resident("o_xiaowang")
    await second.say("绑定")
    await second.say("3-2-501")
    confirm = await second.say("小王")
    assert confirm is not None and "户代表是“王阿姨”；您将作为家庭成员加入" in confirm
    joined = await second.say("1")
    assert joined is not None and joined.startswith(
        "绑定成功！您已加入3栋2单元501，户代表是“王阿姨”"
    )

    mine = await first.say("我的家庭")
    assert mine is not None
    assert "您家：3栋2单元501" in mine and "户代表：您" in mine
    assert "已绑定的家人（2人）：王阿姨（您）、小王" in mine
    assert "回复“移交户代表”" in mine
    theirs = await second.say("我家")
    assert theirs is not None and "户代表：“王阿姨”" in theirs and "移交户代表" not in theirs

    household = await households(harness).get("3-2-501")
    assert household.representative == "o_wang"
    assert [m.openid for m in household.members] == ["o_wang", "o_xiaowang"]
    assert await bind(harness, "o_wang", "3 2 501") == "您已经绑定了3栋2单元501，不用重复绑定。"


async def test_bad_addresses_are_explained_and_the_flow_waits_for_a_good_one(
    harness: Harness,
) -> None:
    resident = harness.resident("o_li")
    await resident.say("绑定")
    hint = "没看懂这个地址。请按“楼栋+单元+房号”发送，例如“3栋2单元501”。\n回复“取消”退出。"
    for bad in ("就在菜市场后面", "3栋", "501", "3栋2单元", "A栋-2单元-1234567"):
        assert await resident.say(bad) == hint, bad
    # A picture is not an address either; the question is asked again.
    again = await resident.send("image", PicUrl="http://x/p.jpg", MediaId="m1")
    assert again is not None and again.startswith("请发送您家的地址")
    # Speech recognition and full-width input: 三栋二单元五零一, ３－２－５０１.
    assert (await resident.say("三栋二单元五零一") or "").startswith("地址：3栋2单元501")
    await resident.say("取消")
    await resident.say("绑定")
    assert (await resident.say("清源社区十二栋1单元0802") or "").startswith("地址：12栋1单元802")
    await resident.say("取消")
    await resident.say("绑定")
    assert (await resident.say("３－２－５０１") or "").startswith("地址：3栋2单元501")


async def test_two_answering_no_go_back_and_cancel_binds_nothing(harness: Harness) -> None:
    resident = harness.resident("o_li")
    await resident.say("绑定")
    await resident.say("3栋2单元501")
    await resident.say("跳过")
    back = await resident.say("2")
    assert back is not None and back.startswith("请发送您家的地址")
    await resident.say("4栋1单元101")
    await resident.say("李先生")
    left = await resident.say("取消")
    assert left is not None and left.startswith("已退出当前操作。")
    assert await households(harness).of("o_li") is None
    mine = await resident.say("我的家庭")
    assert mine is not None and mine.startswith("您还没有绑定房屋。\n请发送您家的地址")


async def test_the_representative_hands_over_in_chat_and_the_new_one_is_told(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await bind(harness, "o_wang", name="王阿姨")
    rep = harness.resident("o_wang")
    assert await rep.say("移交户代表") == NO_OTHER
    await bind(harness, "o_xiaowang", name="小王")
    await bind(harness, "o_lao", name="")

    member = harness.resident("o_xiaowang")
    assert await member.say("移交户代表") == "只有户代表可以移交户代表。您家的户代表是“王阿姨”。"

    listing = await rep.say("移交户代表")
    assert listing is not None and listing.startswith("要把户代表交给哪位家人？\n1. 小王（")
    assert "2. 未留称呼的家人（" in listing
    assert await rep.say("5") == "没有第5项，请回复 1–2 之间的序号。"
    assert await rep.say("随便") == HANDOVER_HINT
    ask = await rep.say("1")
    assert ask is not None and ask.startswith("确定把户代表交给“小王”吗？")
    assert await rep.say("1") == "已把户代表交给“小王”，并通知了TA。"
    told = fake_api.sent_texts("o_xiaowang")
    assert told == [
        "您现在是3栋2单元501的户代表：坝坝会的参会答复和投票由您代表全家。回复“我的家庭”查看。"
    ]
    mine = await member.say("我的家庭")
    assert mine is not None and "户代表：您" in mine
    assert (await households(harness).get("3-2-501")).representative == "o_xiaowang"
    assert await rep.say("移交户代表") == "只有户代表可以移交户代表。您家的户代表是“小王”。"


async def test_leaving_hands_the_household_to_the_earliest_member(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await bind(harness, "o_wang", name="王阿姨")
    await bind(harness, "o_xiaowang", name="小王")
    rep = harness.resident("o_wang")
    ask = await rep.say("解除绑定")
    assert ask == (
        "确定解除与3栋2单元501的绑定吗？\n解绑后，户代表会交给最早绑定的家人。\n1. 确认解绑\n2. 不解绑"
    )
    assert await rep.say("2") == "好的，保持不变。回复“菜单”查看其他服务。"
    await rep.say("解绑")
    assert await rep.say("1") == "已解除与3栋2单元501的绑定。需要时回复“绑定”重新绑定。"
    assert fake_api.sent_texts("o_xiaowang")[-1].startswith("您现在是3栋2单元501的户代表")
    household = await households(harness).get("3-2-501")
    assert household.representative == "o_xiaowang"
    assert [m.openid for m in household.members] == ["o_xiaowang"]
    assert await households(harness).of("o_wang") is None
    assert await rep.say("解绑") == "您还没有绑定房屋。"


async def test_rebinding_elsewhere_leaves_the_old_household(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await bind(harness, "o_wang", name="王阿姨")
    await bind(harness, "o_xiaowang", name="小王")
    rep = harness.resident("o_wang")
    intro = await rep.say("绑定")
    assert intro is not None and intro.startswith("您已绑定3栋2单元501（户代表）。如需改绑")
    await rep.say("4栋1单元101")
    await rep.say("王阿姨")
    done = await rep.say("1")
    assert done is not None
    assert done.startswith("已解除与3栋2单元501的绑定。\n绑定成功！您是4栋1单元101的户代表")
    assert (await households(harness).get("3-2-501")).representative == "o_xiaowang"
    assert (await households(harness).get("4-1-101")).representative == "o_wang"
    assert fake_api.sent_texts("o_xiaowang")[-1].startswith("您现在是3栋2单元501的户代表")


async def test_residents_binding_at_once_make_exactly_one_representative(harness: Harness) -> None:
    desk = households(harness)
    address = desk.parse("7栋1单元1201")
    results = await asyncio.gather(
        *(desk.bind(f"o_family_{i}", address, f"家人{i}") for i in range(8))
    )
    representatives = [r for r in results if r.outcome is Outcome.REPRESENTATIVE]
    assert len(representatives) == 1
    household = await desk.get("7-1-1201")
    assert household.representative == representatives[0].household.representative
    assert sorted(m.openid for m in household.members) == [f"o_family_{i}" for i in range(8)]
    for i in range(8):
        found = await desk.of(f"o_family_{i}")
        assert found is not None and found.id == "7-1-1201"


async def test_a_household_has_a_member_limit(harness: Harness) -> None:
    desk = households(harness)
    address = Address("9", "1", "101")
    for i in range(desk.config.max_members):
        await desk.bind(f"o_m{i}", address)
    answer = await bind_refused(harness, "o_late")
    assert answer == "9栋1单元101已绑定20人，不能再绑定了。\n回复“绑定”重新填写。"
    assert await desk.of("o_late") is None


async def bind_refused(harness: Harness, openid: str) -> str:
    resident = harness.resident(openid)
    await resident.say("绑定")
    await resident.say("9栋1单元101")
    await resident.say("跳过")
    return await resident.say("1") or ""


@pytest_asyncio.fixture
async def closed(tmp_path: Path, api_url: str, clock: FakeClock) -> AsyncIterator[Harness]:
    """Only households staff imported may be bound."""
    config = make_config(tmp_path / "data", api_url, aes=False)
    config = replace(config, assembly=AssemblyConfig(open_binding=False))
    harness = Harness(config, clock)
    await harness.start()
    yield harness
    await harness.close()


async def test_with_closed_binding_only_imported_households_can_be_bound(closed: Harness) -> None:
    status, report = await closed.admin(
        "POST", "/households/import", body={"csv": "3,2,501\n3,2,502\n"}
    )
    assert status == 200 and report["created"] == 2
    resident = closed.resident("o_li")
    await resident.say("绑定")
    assert await resident.say("3栋2单元503") == (
        "没有找到3栋2单元503。请核对地址后重新发送，或联系社区工作人员登记。\n回复“取消”退出。"
    )
    assert (await resident.say("3栋2单元502") or "").startswith("地址：3栋2单元502")
    await resident.say("跳过")
    done = await resident.say("1")
    assert done is not None and done.startswith("绑定成功！您是3栋2单元502的户代表")
