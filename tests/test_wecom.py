"""The WeCom group-robot client against the fake, over real HTTP on loopback."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.errors import BotError, WeChatAPIError
from bot.wechat.api_errors import APITransportError
from bot.wechat.fake_api import FakeWeChatAPI
from bot.wechat.wecom import (
    CUT_MARKER,
    MARKDOWN_MAX_BYTES,
    TEXT_MAX_BYTES,
    InvalidRobot,
    RobotError,
    RobotRateLimited,
    RobotTransportError,
    WeComRobot,
    check_webhook_url,
    fit_bytes,
    mask_webhook_url,
    send_robot_message,
)
from tests.conftest import FakeClock

HITS = web.AppKey("hits", list[str])
KEY = "693a91f6-7d1c-4bc4-97a0-0ec2a1fa5aaa"
OTHER_KEY = "0b5c2e1d-3f4a-4c6b-8d9e-1a2b3c4d5e6f"


class Observed:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def __call__(self, api: str, errcode: int) -> None:
        self.events.append((api, errcode))


@pytest.fixture
def observed() -> Observed:
    return Observed()


def robot_url(fake: FakeWeChatAPI, key: str = KEY) -> str:
    assert fake.base_url is not None
    return f"{fake.base_url}/cgi-bin/webhook/send?key={key}"


RobotFactory = Callable[..., WeComRobot]


@pytest.fixture
def make_robot(
    http: aiohttp.ClientSession, fake: FakeWeChatAPI, observed: Observed
) -> RobotFactory:
    def make(key: str = KEY, *, url: str | None = None, timeout: float = 1.0) -> WeComRobot:
        return WeComRobot(http, url or robot_url(fake, key), timeout=timeout, observer=observed)

    return make


@pytest.fixture
def robot(make_robot: RobotFactory) -> WeComRobot:
    return make_robot()


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


# -- delivery -------------------------------------------------------------------------
async def test_text_reaches_the_fake_and_is_recorded(
    robot: WeComRobot, fake: FakeWeChatAPI, observed: Observed
) -> None:
    await robot.send_text("【报事 #17】环境卫生：垃圾桶满溢\n地点：幸福路 12 号")
    [message] = fake.robot_messages(KEY)
    assert (message.key, message.msgtype) == (KEY, "text")
    assert message.content == "【报事 #17】环境卫生：垃圾桶满溢\n地点：幸福路 12 号"
    assert fake.robot_messages(OTHER_KEY) == []
    assert observed.events == [("wecom_robot", 0)]
    [call] = fake.calls_to("wecom_robot")
    assert call.query == {"key": "***"}  # the fake keeps no copy of the key in its call log
    assert call.body == {"msgtype": "text", "text": {"content": message.content}}


async def test_markdown_reaches_the_fake(robot: WeComRobot, fake: FakeWeChatAPI) -> None:
    content = '**报事 #18** <font color="warning">待接单</font>\n> 排水：井盖缺失'
    await robot.send_markdown(content)
    [message] = fake.robot_messages()
    assert (message.key, message.msgtype, message.content) == (KEY, "markdown", content)


async def test_each_robot_gets_its_own_messages(
    make_robot: RobotFactory, fake: FakeWeChatAPI
) -> None:
    await make_robot(KEY).send_text("a")
    await make_robot(OTHER_KEY).send_text("b")
    await make_robot(KEY).send_markdown("c")
    assert [m.content for m in fake.robot_messages(KEY)] == ["a", "c"]
    assert [m.content for m in fake.robot_messages(OTHER_KEY)] == ["b"]
    assert [m.key for m in fake.robot_messages()] == [KEY, OTHER_KEY, KEY]


# -- rate limit and WeCom error codes ---------------------------------------------------
async def test_21st_message_in_a_minute_is_rate_limited(
    make_robot: RobotFactory, fake: FakeWeChatAPI, clock: FakeClock, observed: Observed
) -> None:
    robot = make_robot()
    for n in range(20):
        await robot.send_text(f"alert {n}")
        clock.advance(1.0)  # 20 messages spread over 20 s, all within one minute
    with pytest.raises(RobotRateLimited) as caught:
        await robot.send_text("alert 20")
    assert caught.value.errcode == 45009
    assert caught.value.retry_after == 60.0
    assert isinstance(caught.value, RobotError) and isinstance(caught.value, WeChatAPIError)
    assert observed.events[-1] == ("wecom_robot", 45009)
    assert len(fake.robot_messages(KEY)) == 20
    await make_robot(OTHER_KEY).send_text("another robot has its own budget")
    clock.advance(40.0)  # the first message is now 60 s old: one slot frees up
    await robot.send_text("alert 20, again")
    with pytest.raises(RobotRateLimited):
        await robot.send_text("alert 21")
    assert len(fake.robot_messages(KEY)) == 21


@pytest.mark.parametrize(
    ("errcode", "expected"),
    [
        (93000, InvalidRobot),
        (45009, RobotRateLimited),
        (-1, RobotError),
        (40008, RobotError),
    ],
)
async def test_injected_errcode_gives_the_typed_error(
    robot: WeComRobot,
    fake: FakeWeChatAPI,
    observed: Observed,
    errcode: int,
    expected: type[RobotError],
) -> None:
    fake.fail_next("wecom_robot", errcode, errmsg="scripted failure")
    with pytest.raises(expected) as caught:
        await robot.send_text("x")
    assert type(caught.value) is expected
    assert (caught.value.errcode, caught.value.errmsg) == (errcode, "scripted failure")
    assert caught.value.api == "wecom_robot"
    assert observed.events == [("wecom_robot", errcode)]
    assert fake.robot_messages() == []
    await robot.send_text("y")  # fail_next fails one call only
    assert [m.content for m in fake.robot_messages()] == ["y"]


async def test_unregistered_or_removed_key_is_an_invalid_robot(
    make_robot: RobotFactory, fake: FakeWeChatAPI
) -> None:
    await make_robot(OTHER_KEY).send_text("any key works until a robot is registered")
    fake.add_robot(KEY)
    await make_robot(KEY).send_text("registered")
    with pytest.raises(InvalidRobot) as caught:
        await make_robot(OTHER_KEY).send_text("not registered")
    assert caught.value.errcode == 93000
    fake.remove_robot(KEY)
    with pytest.raises(InvalidRobot):
        await make_robot(KEY).send_text("removed from the group")
    assert [m.content for m in fake.robot_messages()] == [
        "any key works until a robot is registered",
        "registered",
    ]


# -- transport ---------------------------------------------------------------------------
async def test_slow_robot_times_out_within_the_deadline(
    make_robot: RobotFactory, fake: FakeWeChatAPI, observed: Observed
) -> None:
    robot = make_robot(timeout=0.2)
    fake.set_delay("wecom_robot", 2.0)
    started = time.monotonic()
    with pytest.raises(RobotTransportError) as caught:
        await robot.send_text("x")
    assert time.monotonic() - started < 1.0
    assert caught.value.errcode == -2
    assert isinstance(caught.value, APITransportError) and isinstance(caught.value, RobotError)
    assert observed.events == [("wecom_robot", -2)]
    assert len(fake.calls_to("wecom_robot")) == 1  # no retry inside the client


async def test_http_error_status_is_a_transport_error(
    make_robot: RobotFactory, fake: FakeWeChatAPI, observed: Observed
) -> None:
    assert fake.base_url is not None
    robot = make_robot(url=f"{fake.base_url}/cgi-bin/webhook/nowhere?key={KEY}")
    with pytest.raises(RobotTransportError, match="HTTP 404"):
        await robot.send_text("x")
    assert observed.events == [("wecom_robot", -2)]


async def test_connection_refused_is_a_transport_error(
    http: aiohttp.ClientSession, observed: Observed
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    robot = WeComRobot(
        http, f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={KEY}", observer=observed
    )
    with pytest.raises(RobotTransportError):
        await robot.send_text("x")
    assert observed.events == [("wecom_robot", -2)]


@pytest_asyncio.fixture
async def odd_server() -> AsyncIterator[TestServer]:
    """A server that answers the robot path with something other than WeCom's JSON."""
    hits: list[str] = []

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>gateway error</html>", content_type="text/html")

    async def not_object(request: web.Request) -> web.Response:
        return web.json_response([0])

    async def no_errcode(request: web.Request) -> web.Response:
        return web.json_response({"errmsg": "ok"})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/target?{request.query_string}")

    async def target(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    app = web.Application()
    app.router.add_post("/not-json", not_json)
    app.router.add_post("/not-object", not_object)
    app.router.add_post("/no-errcode", no_errcode)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/target", target)
    app[HITS] = hits
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/not-json", "not JSON"),
        ("/not-object", "not a JSON object"),
        ("/no-errcode", "no integer errcode"),
        ("/redirect", "HTTP 302"),
    ],
)
async def test_unusable_answers_are_transport_errors(
    http: aiohttp.ClientSession,
    odd_server: TestServer,
    observed: Observed,
    path: str,
    detail: str,
) -> None:
    url = str(odd_server.make_url(path)) + f"?key={KEY}"
    robot = WeComRobot(http, url, observer=observed)
    with pytest.raises(RobotTransportError, match=detail):
        await robot.send_text("x")
    assert observed.events == [("wecom_robot", -2)]
    assert odd_server.app[HITS] == []  # a redirect is not followed with the body


# -- content size -------------------------------------------------------------------------
async def test_long_text_is_cut_at_2048_bytes(robot: WeComRobot, fake: FakeWeChatAPI) -> None:
    text = "a" + "报事内容" * 400  # 4801 bytes; 3-byte characters, cut lands inside one
    await robot.send_text(text)
    [message] = fake.robot_messages()
    sent = message.content
    assert utf8_len(sent) <= TEXT_MAX_BYTES
    assert utf8_len(sent) > TEXT_MAX_BYTES - utf8_len(CUT_MARKER) - 3
    assert sent.endswith(CUT_MARKER)
    assert text.startswith(sent.removesuffix(CUT_MARKER))


async def test_text_of_exactly_2048_bytes_is_kept_whole(
    robot: WeComRobot, fake: FakeWeChatAPI
) -> None:
    text = "ab" + "报" * 682  # 2 + 2046 bytes
    assert utf8_len(text) == TEXT_MAX_BYTES
    await robot.send_text(text)
    assert fake.robot_messages()[0].content == text


async def test_long_markdown_is_cut_at_4096_bytes(robot: WeComRobot, fake: FakeWeChatAPI) -> None:
    text = "# 待办\n" + "- 报事 #1 排水\n" * 400
    await robot.send_markdown(text)
    sent = fake.robot_messages()[0].content
    assert TEXT_MAX_BYTES < utf8_len(sent) <= MARKDOWN_MAX_BYTES
    assert sent.endswith(CUT_MARKER)


def test_fit_bytes_splits_no_emoji_sequence() -> None:
    text = "x" + "👍🏽" * 10  # each is two code points, 8 bytes
    # With the 3-byte marker there is room for 2.5 thumbs: the bare half is dropped too.
    fitted = fit_bytes(text, 1 + 8 * 2 + 4 + 3)
    assert fitted == "x" + "👍🏽" * 2 + CUT_MARKER
    assert fit_bytes("short", 5) == "short"
    assert fit_bytes("abcdef", 2) == "ab"  # no room for the marker: plain cut


async def test_fake_refuses_over_long_content_and_other_types(
    http: aiohttp.ClientSession, fake: FakeWeChatAPI
) -> None:
    async def post(body: Any, url: str = robot_url(fake)) -> int:
        async with http.post(url, data=json.dumps(body, ensure_ascii=False).encode()) as resp:
            answer: dict[str, Any] = json.loads(await resp.read())
            errcode: int = answer["errcode"]
            return errcode

    assert await post({"msgtype": "text", "text": {"content": "a" * 2049}}) == 40058
    assert await post({"msgtype": "markdown", "markdown": {"content": "a" * 4097}}) == 40058
    assert await post({"msgtype": "text", "text": {"content": ""}}) == 44004
    assert await post({"msgtype": "image", "image": {"base64": "", "md5": ""}}) == 40008
    assert await post({"msgtype": "text"}) == 47001
    no_key = robot_url(fake).split("?")[0]
    assert await post({"msgtype": "text", "text": {"content": "x"}}, no_key) == 93000
    assert await post({"msgtype": "text", "text": {"content": "a" * 2048}}) == 0
    assert fake.robot_messages() != []


# -- URLs and secrets ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        f"ftp://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
        f"file:///cgi-bin/webhook/send?key={KEY}",
        f"javascript:alert(1)//?key={KEY}",
        f"qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
        f"//qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
        f"https:///cgi-bin/webhook/send?key={KEY}",
        f"https://qyapi.weixin.qq.com:99999/cgi-bin/webhook/send?key={KEY}",
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=",
    ],
)
def test_url_that_is_not_a_http_robot_url_is_refused(http: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(ValueError) as caught:
        WeComRobot(http, url)
    assert KEY not in str(caught.value)
    with pytest.raises(ValueError):
        check_webhook_url(url)


def test_http_and_https_urls_are_accepted() -> None:
    for url in (
        f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
        f"HTTP://127.0.0.1:8080/cgi-bin/webhook/send?key={KEY}",
    ):
        assert check_webhook_url(url) == url


def test_masked_url_names_the_endpoint_not_the_key() -> None:
    url = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}&debug=1"
    assert mask_webhook_url(url) == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"


async def test_bad_arguments_are_refused(robot: WeComRobot, http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError):
        await robot.send_text("")
    with pytest.raises(ValueError):
        WeComRobot(http, f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}", timeout=0)


async def test_key_never_appears_in_logs_or_errors(
    make_robot: RobotFactory,
    fake: FakeWeChatAPI,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert fake.base_url is not None
    robot = make_robot(timeout=0.2)
    errors: list[BotError] = []
    await robot.send_text("报" * 1000)  # delivered, and cut (logged)
    for _ in range(19):
        await robot.send_markdown("ok")
    for scripted in (None, 93000):  # the 21st message, then a scripted refusal
        if scripted is not None:
            clock.advance(60.0)
            fake.fail_next("wecom_robot", scripted, errmsg=f"invalid webhook url key={KEY}")
        with pytest.raises(RobotError) as caught:
            await robot.send_text("x")
        errors.append(caught.value)
    fake.set_delay("wecom_robot", 1.0)
    with pytest.raises(RobotTransportError) as timed_out:
        await robot.send_text("x")
    errors.append(timed_out.value)
    fake.set_delay("wecom_robot", 0)
    with pytest.raises(RobotTransportError) as not_found:
        await make_robot(url=f"{fake.base_url}/cgi-bin/nowhere?key={KEY}").send_text("x")
    errors.append(not_found.value)
    assert [type(e) for e in errors] == [
        RobotRateLimited,
        InvalidRobot,
        RobotTransportError,
        RobotTransportError,
    ]
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)
    for error in errors:
        assert KEY not in str(error) and KEY not in repr(error)
    assert KEY not in repr(robot)
    assert "webhook/send?key=***" in caplog.text
    failures = [r for r in caplog.records if r.name == "bot.wechat.wecom" and r.levelno >= 30]
    assert [r.getMessage().split(" errmsg=")[0].split(": ")[1] for r in failures] == [
        "errcode=45009",
        "errcode=93000",
        "errcode=-2",
        "errcode=-2",
    ]


# -- the function form -------------------------------------------------------------------------
async def test_send_robot_message(
    http: aiohttp.ClientSession, fake: FakeWeChatAPI, observed: Observed
) -> None:
    await send_robot_message(http, robot_url(fake), "t", observer=observed)
    await send_robot_message(http, robot_url(fake), "**m**", msgtype="markdown", timeout=0.5)
    assert [(m.msgtype, m.content) for m in fake.robot_messages(KEY)] == [
        ("text", "t"),
        ("markdown", "**m**"),
    ]
    assert observed.events == [("wecom_robot", 0)]
    fake.fail_next("wecom_robot", 45009)
    with pytest.raises(RobotRateLimited):
        await send_robot_message(http, robot_url(fake), "x")


async def test_send_robot_message_turns_a_bad_url_into_invalid_robot(
    http: aiohttp.ClientSession, fake: FakeWeChatAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for url in (f"ftp://example.com/?key={KEY}", robot_url(fake).split("?")[0]):
        with pytest.raises(InvalidRobot) as caught:
            await send_robot_message(http, url, "x")
        assert caught.value.errcode == 93000 and KEY not in str(caught.value)
    assert fake.calls_to("wecom_robot") == []  # refused before any request
    assert KEY not in caplog.text
    with pytest.raises(ValueError):
        await send_robot_message(http, robot_url(fake), "x", timeout=0)
