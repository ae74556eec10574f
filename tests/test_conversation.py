"""Conversations with the real app over HTTP, in plaintext and safe (AES) mode."""

from __future__ import annotations

import asyncio
import re

from bot.simulator import reply_text
from bot.wechat.fake_api import FakeWeChatAPI
from handlers.basics import BAD_QR, GREETING, WELCOME
from handlers.fallback import NOT_HEARD
from handlers.feedback import ASK, ASK_CONFIRM, DROPPED
from tests.conftest import FakeClock, Harness


def menu_number(menu: str, label: str) -> str:
    """The number the menu shows before ``label`` (flows add entries; tests follow the menu)."""
    found = re.search(rf"^(\d+)\. {label}", menu, re.MULTILINE)
    assert found, menu
    return found.group(1)


async def test_a_new_follower_is_welcomed_with_the_numbered_menu(harness: Harness) -> None:
    resident = harness.resident()
    reply = await resident.event("subscribe", EventKey="")
    assert reply is not None
    assert reply.startswith(WELCOME)
    for label in ("志愿活动报名", "我的报名", "我的积分", "积分兑换", "给社区留言"):
        assert label in reply
    assert "回复“帮助”随时查看本菜单" in reply


async def test_help_and_menu_answer_at_any_time_even_inside_a_flow(harness: Harness) -> None:
    resident = harness.resident()
    assert await resident.say("留言") == ASK
    menu = await resident.say("帮助")
    assert menu is not None and "给社区留言（也可回复“留言”）" in menu
    assert await resident.say("菜单") == menu


async def test_a_resident_leaves_a_message_for_the_office_in_two_steps(harness: Harness) -> None:
    resident = harness.resident()
    welcome = await resident.event("subscribe", EventKey="")
    assert welcome is not None
    assert await resident.say(menu_number(welcome, "给社区留言")) == ASK
    confirm = await resident.say("巷子口的路灯坏了三天了")
    assert confirm is not None
    assert "“巷子口的路灯坏了三天了”" in confirm and "1. 确认提交" in confirm
    assert await resident.say("随便") == ASK_CONFIRM
    done = await resident.say("确认")
    assert done == "留言已提交，编号 1。社区工作人员会尽快查看。"
    again = harness.resident("o_resident_0002")
    await again.say("留言")
    await again.say("垃圾桶满了")
    assert await again.say("是") == "留言已提交，编号 2。社区工作人员会尽快查看。"


async def test_cancel_leaves_any_flow_and_nothing_is_saved(harness: Harness) -> None:
    resident = harness.resident()
    await resident.say("留言")
    await resident.say("不想说了")
    reply = await resident.say("取消")
    assert reply is not None and reply.startswith("已退出当前操作。")
    # The next number is a menu choice again, not a confirmation of the dropped message.
    menu = await resident.say("菜单")
    assert menu is not None
    assert await resident.say(menu_number(menu, "给社区留言")) == ASK
    assert await resident.say("取消") is not None
    nothing = await resident.say("取消")
    assert nothing is not None and nothing.startswith("当前没有进行中的操作。")


async def test_answering_no_drops_the_message(harness: Harness) -> None:
    resident = harness.resident()
    await resident.say("留言")
    await resident.say("测试")
    assert await resident.say("2") == DROPPED


async def test_an_unknown_text_gets_a_short_hint_and_the_menu(harness: Harness) -> None:
    reply = await harness.resident().say("今天天气怎么样")
    assert reply is not None
    assert reply.startswith("抱歉，没看懂“今天天气怎么样”。")
    assert "1. 志愿活动报名" in reply and "给社区留言" in reply


async def test_a_greeting_is_answered_with_a_greeting_and_the_menu(harness: Harness) -> None:
    reply = await harness.resident().send("voice", MediaId="v", Format="amr", Recognition="你好。")
    assert reply is not None and reply.startswith(GREETING) and "1. 志愿活动报名" in reply


async def test_a_number_outside_the_menu_is_explained(harness: Harness) -> None:
    resident = harness.resident()
    menu = await resident.say("菜单") or ""
    entries = len(re.findall(r"^\d+\. ", menu, re.MULTILINE))
    beyond = entries + 1
    reply = await resident.say(str(beyond))
    assert reply is not None and reply.startswith(
        f"没有第{beyond}项，请回复 1–{entries} 之间的数字。"
    )


async def test_voice_with_recognition_is_handled_as_the_recognised_text(harness: Harness) -> None:
    resident = harness.resident()
    # WeChat's recognition ends with a full stop; elderly residents say numbers as words.
    assert await resident.send("voice", MediaId="m1", Format="amr", Recognition="留言。") == ASK
    confirm = await resident.send("voice", MediaId="m2", Format="amr", Recognition="楼道灯不亮。")
    assert confirm is not None and "“楼道灯不亮”" in confirm
    done = await resident.send("voice", MediaId="m3", Format="amr", Recognition="一。")
    assert done is not None and done.startswith("留言已提交")


async def test_voice_without_recognition_asks_to_repeat(harness: Harness) -> None:
    assert await harness.resident().send("voice", MediaId="m", Format="amr") == NOT_HEARD


async def test_full_width_digits_choose_from_the_menu(harness: Harness) -> None:
    resident = harness.resident()
    menu = await resident.say("菜单") or ""
    full_width = chr(ord("０") + int(menu_number(menu, "给社区留言")))
    assert await resident.say(full_width) == ASK


async def test_scanning_an_unknown_code_is_explained(harness: Harness) -> None:
    assert await harness.resident().event("SCAN", EventKey="nothing", Ticket="t") == BAD_QR


async def test_a_menu_button_is_a_keyword(harness: Harness) -> None:
    assert await harness.resident().event("CLICK", EventKey="留言") == ASK


async def test_a_flow_survives_a_server_restart(harness: Harness) -> None:
    resident = harness.resident()
    await resident.say("留言")
    await resident.say("希望多组织夜跑巡逻")
    await harness.restart()
    resident = harness.resident()
    done = await resident.say("确认")
    assert done == "留言已提交，编号 1。社区工作人员会尽快查看。"


async def test_a_stale_flow_expires_with_a_message(harness: Harness, clock: FakeClock) -> None:
    resident = harness.resident()
    number = menu_number(await resident.say("菜单") or "", "给社区留言")
    await resident.say("留言")
    await resident.say("路面有坑")
    clock.advance(11 * 60)
    reply = await resident.say(number)
    assert reply is not None
    assert reply.startswith("您上次的操作超过10分钟没有完成，已自动结束。")
    # The number did not confirm the stale message: it picked that menu item afresh.
    assert reply.endswith(ASK)


async def test_a_flow_within_the_idle_time_continues(harness: Harness, clock: FakeClock) -> None:
    resident = harness.resident()
    await resident.say("留言")
    await resident.say("路面有坑")
    clock.advance(9 * 60)
    reply = await resident.say("1")
    assert reply is not None and reply.startswith("留言已提交")


async def test_user_text_cannot_break_the_reply_xml(harness: Harness) -> None:
    resident = harness.resident()
    hostile = "]]></Content><MsgType>image</MsgType>"
    # The resident's own words come back inside the confirmation; they must come back intact.
    await resident.say("留言")
    reply = await resident.say(hostile)
    assert reply is not None and hostile in reply


async def test_a_long_reply_is_cut_under_2048_bytes_with_a_hint(harness: Harness) -> None:
    resident = harness.resident()
    await resident.say("留言")
    reply = await resident.say("😀" * 500)  # 2,000 bytes of text inside a longer confirmation
    assert reply is not None
    assert len(reply.encode("utf-8")) <= 2048
    assert "内容过长" in reply


async def test_the_same_msgid_sent_three_times_at_once_runs_the_handler_once(
    harness: Harness,
) -> None:
    resident = harness.resident()
    await resident.say("留言")
    await resident.say("请修一下单元门")
    confirm = resident.xml("text", {"Content": "1"})
    replies = await asyncio.gather(*(resident.post(confirm) for _ in range(3)))
    assert [status for status, _ in replies] == [200, 200, 200]
    # Each delivery gets the same answer (WeChat reads only the one it still waits on)...
    answers = {reply_text(r) for r in replies}
    assert answers == {"留言已提交，编号 1。社区工作人员会尽快查看。"}
    # ...and the message was filed once: the next one gets number 2, not 4.
    other = harness.resident("o_resident_0002")
    await other.say("留言")
    await other.say("另一条")
    assert await other.say("1") == "留言已提交，编号 2。社区工作人员会尽快查看。"


async def test_a_retry_after_the_answer_gets_the_same_answer(harness: Harness) -> None:
    resident = harness.resident()
    await resident.say("留言")
    first_xml = resident.xml("text", {"Content": "灯坏了"})
    first = reply_text(await resident.post(first_xml))
    again = reply_text(await resident.post(first_xml))
    assert first is not None and "“灯坏了”" in first
    assert again == first
    # The retry did not run the step twice: the flow is still waiting for a confirmation.
    assert await resident.say("好") == "留言已提交，编号 1。社区工作人员会尽快查看。"


async def test_unsubscribe_is_recorded_and_answered_with_success(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    resident = harness.resident()
    assert await resident.event("unsubscribe", EventKey="") is None
    assert fake_api.calls_to("custom_send") == []
