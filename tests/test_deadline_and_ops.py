"""The 5-second deadline, late replies through the API, health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.conversation.context import Context
from bot.conversation.router import Router, Text
from bot.services import Services
from bot.simulator import reply_text
from bot.wechat.fake_api import FakeWeChatAPI
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers import build_router
from tests.conftest import FakeClock, Harness, make_config

SLOW_ANSWER = "查询结果：您本月共参加志愿活动3次。"


class SlowCounter:
    """A purpose-built slow handler: takes longer than the passive-reply deadline."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.runs = 0

    def router(self) -> Router[Services]:
        root: Router[Services] = Router("test")
        slow: Router[Services] = Router("slow")

        @slow.on(Text("慢查询"))
        async def slow_lookup(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
            self.runs += 1
            await asyncio.sleep(self.delay)
            return SLOW_ANSWER

        root.include(slow, build_router())
        return root


@pytest_asyncio.fixture
async def slow_app(
    tmp_path: Path, api_url: str, clock: FakeClock
) -> AsyncIterator[tuple[Harness, SlowCounter]]:
    # Longer than one 0.5 s deadline, shorter than two: a retry can still catch the reply.
    counter = SlowCounter(delay=0.8)
    config = make_config(tmp_path / "data", api_url, aes=True, reply_deadline=0.5)
    harness = Harness(config, clock, counter.router())
    await harness.start()
    yield harness, counter
    await harness.close()


async def _wait_for_sends(api: FakeWeChatAPI, count: int, timeout: float = 5.0) -> list[str]:
    async with asyncio.timeout(timeout):
        while len(api.sent_texts()) < count:
            await asyncio.sleep(0.02)
    return api.sent_texts()


async def test_a_slow_handler_answers_success_then_sends_by_customer_service(
    slow_app: tuple[Harness, SlowCounter], fake_api: FakeWeChatAPI
) -> None:
    harness, counter = slow_app
    resident = harness.resident("o_slow_resident")
    status, body = await resident.post(resident.xml("text", {"Content": "慢查询"}))
    assert (status, body) == (200, "success")
    sent = await _wait_for_sends(fake_api, 1)
    assert sent == [SLOW_ANSWER]
    custom = fake_api.calls_to("custom_send")
    assert custom[0].body["touser"] == "o_slow_resident"
    assert counter.runs == 1


async def test_a_retry_while_the_slow_handler_runs_gets_the_reply_once(
    slow_app: tuple[Harness, SlowCounter], fake_api: FakeWeChatAPI
) -> None:
    harness, counter = slow_app
    resident = harness.resident("o_slow_resident")
    xml = resident.xml("text", {"Content": "慢查询"})
    first = await resident.post(xml)  # gives up at 0.5 s
    second = await resident.post(xml)  # WeChat's retry: waits, and the handler ends meanwhile
    assert first == (200, "success")
    assert reply_text(second) == SLOW_ANSWER
    await asyncio.sleep(0.3)
    # Answered passively to the retry, so no customer-service copy went out.
    assert fake_api.sent_texts() == []
    assert counter.runs == 1


async def test_metrics_count_outcomes_retries_fallbacks_and_api_codes(
    slow_app: tuple[Harness, SlowCounter], fake_api: FakeWeChatAPI
) -> None:
    harness, _ = slow_app
    resident = harness.resident("o_metrics")
    xml = resident.xml("text", {"Content": "菜单"})
    await resident.post(xml)
    await resident.post(xml)
    await resident.post(resident.xml("text", {"Content": "慢查询"}))
    await _wait_for_sends(fake_api, 1)
    await harness.post_raw(b"junk", harness.signed_query())
    status, text = await harness.get("/metrics")
    assert status == 200
    assert 'gongzhi_webhook_requests_total{outcome="reply"} 1.0' in text
    assert 'gongzhi_webhook_requests_total{outcome="retry"} 1.0' in text
    assert 'gongzhi_webhook_requests_total{outcome="deadline"} 1.0' in text
    assert 'gongzhi_webhook_requests_total{outcome="bad_request"} 1.0' in text
    assert "gongzhi_retry_dedup_hits_total 1.0" in text
    assert "gongzhi_deadline_fallbacks_total 1.0" in text
    assert 'gongzhi_wechat_api_calls_total{api="custom_send",errcode="0"} 1.0' in text
    assert "gongzhi_handler_seconds_count" in text


async def test_a_late_reply_that_wechat_refuses_is_logged_not_lost_silently(
    slow_app: tuple[Harness, SlowCounter],
    fake_api: FakeWeChatAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness, _ = slow_app
    fake_api.fail_next("custom_send", 45015)
    resident = harness.resident("o_window_closed")
    assert await resident.post(resident.xml("text", {"Content": "慢查询"})) == (200, "success")
    async with asyncio.timeout(5):
        while not fake_api.calls_to("custom_send"):
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    _, text = await harness.get("/metrics")
    assert 'gongzhi_wechat_api_calls_total{api="custom_send",errcode="45015"} 1.0' in text
    assert any("could not send the late reply" in r.getMessage() for r in caplog.records)


async def test_healthz_reports_the_store(plain: Harness) -> None:
    status, body = await plain.get("/healthz")
    assert status == 200 and '"store": "tinydb"' in body
