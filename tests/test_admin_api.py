"""Staff read residents' 留言 and answer them through /admin/api/, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest_asyncio

from bot.config import AdminConfig
from bot.domain.feedback import REPLY_TEMPLATE
from bot.wechat.fake_api import FakeWeChatAPI
from tests.conftest import FakeClock, Harness, make_config


async def _leave_message(harness: Harness, openid: str, text: str) -> None:
    resident = harness.resident(openid)
    await resident.say("留言")
    await resident.say(text)
    assert (await resident.say("1") or "").startswith("留言已提交")


async def test_staff_read_residents_messages_in_order(harness: Harness) -> None:
    await _leave_message(harness, "o_res_a", "三单元门禁坏了")
    await _leave_message(harness, "o_res_b", "希望周末多组织活动")
    status, page = await harness.admin("GET", "/feedback")
    assert status == 200
    assert [(i["number"], i["openid"], i["text"]) for i in page["items"]] == [
        (1, "o_res_a", "三单元门禁坏了"),
        (2, "o_res_b", "希望周末多组织活动"),
    ]
    assert page["next"] is None
    status, first = await harness.admin("GET", "/feedback", limit="1")
    assert status == 200 and len(first["items"]) == 1 and first["next"] == 1
    status, rest = await harness.admin("GET", "/feedback", after="1")
    assert [i["number"] for i in rest["items"]] == [2]


async def test_a_reply_reaches_the_resident_and_is_recorded_and_audited(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await _leave_message(harness, "o_res_a", "三单元门禁坏了")
    status, item = await harness.admin(
        "POST", "/feedback/1/replies", body={"text": "已报物业，明天修好"}, operator="王网格员"
    )
    assert status == 201
    assert fake_api.sent_texts("o_res_a") == [
        REPLY_TEMPLATE.format(number=1, text="已报物业，明天修好")
    ]
    assert [(r["text"], r["by"]) for r in item["replies"]] == [("已报物业，明天修好", "王网格员")]
    status, again = await harness.admin("GET", "/feedback/1")
    assert status == 200 and again["replies"] == item["replies"]
    status, audit = await harness.admin("GET", "/audit")
    assert status == 200
    assert [(e["actor"], e["action"], e["target"]) for e in audit["items"]] == [
        ("王网格员", "feedback.reply", "feedback/1")
    ]


async def test_a_reply_outside_wechats_48_hour_window_is_refused_and_not_recorded(
    harness: Harness, fake_api: FakeWeChatAPI
) -> None:
    await _leave_message(harness, "o_res_a", "路灯坏了")
    fake_api.fail_next("custom_send", 45015)
    status, body = await harness.admin("POST", "/feedback/1/replies", body={"text": "收到"})
    assert status == 409 and "48小时" in body["error"]
    _, item = await harness.admin("GET", "/feedback/1")
    assert item["replies"] == []
    _, audit = await harness.admin("GET", "/audit")
    assert audit["items"] == []


async def test_bad_requests_get_clear_json_errors(harness: Harness) -> None:
    await _leave_message(harness, "o_res_a", "路灯坏了")
    assert (await harness.admin("GET", "/feedback/99"))[0] == 404
    assert (await harness.admin("GET", "/feedback/abc"))[0] == 404
    assert (await harness.admin("POST", "/feedback/99/replies", body={"text": "x"}))[0] == 404
    status, body = await harness.admin("POST", "/feedback/1/replies", body={"text": "  "})
    assert (status, body["error"]) == (400, "回复内容不能为空")
    status, body = await harness.admin("POST", "/feedback/1/replies", body=b"{not json")
    assert (status, body["error"]) == (400, "请求体必须是 JSON")
    assert (await harness.admin("POST", "/feedback/1/replies", body={"txt": "x"}))[0] == 400
    assert (await harness.admin("GET", "/feedback", limit="ten"))[0] == 400


async def test_the_admin_api_needs_the_bearer_token(harness: Harness) -> None:
    status, body = await harness.admin("GET", "/feedback", token=None)
    assert status == 401 and body["error"] == "missing or wrong bearer token"
    assert (await harness.admin("GET", "/audit", token="wrong"))[0] == 401
    assert (await harness.admin("POST", "/feedback/1/replies", body={"text": "x"}, token="wrong"))[
        0
    ] == 401


async def test_the_openapi_document_describes_every_admin_route(harness: Harness) -> None:
    status, doc = await harness.admin("GET", "/openapi.json", token=None)
    assert status == 200 and doc["openapi"].startswith("3.")
    documented = {
        (method.upper(), f"/admin/api{path}")
        for path, ops in doc["paths"].items()
        for method in ops
    }
    served = {
        (route.method, route.resource.canonical)
        for route in harness.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/admin/api/")
        and route.method != "HEAD"
        and not route.resource.canonical.endswith("openapi.json")
    }
    assert served == documented


@pytest_asyncio.fixture
async def no_token(tmp_path: Path, api_url: str, clock: FakeClock) -> AsyncIterator[Harness]:
    config = replace(make_config(tmp_path / "data", api_url, aes=False), admin=AdminConfig())
    harness = Harness(config, clock)
    await harness.start()
    yield harness
    await harness.close()


async def test_without_a_configured_token_the_admin_api_is_off(no_token: Harness) -> None:
    status, body = await no_token.admin("GET", "/feedback")
    assert status == 503 and "[admin] api_token" in body["error"]
