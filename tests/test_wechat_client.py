"""The WeChat client against the fake WeChat API, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import quote

import aiohttp
import pytest

from bot.errors import WeChatAPIError
from bot.wechat.api_errors import (
    AccessTokenInvalid,
    APITransportError,
    InvalidOpenID,
    MassAlreadySent,
    NotFollowing,
    OutOfReplyWindow,
    QuotaExceeded,
    ReplyCountExceeded,
    SystemBusy,
    raise_for,
)
from bot.wechat.client import SHOWQRCODE_URL, WeChatClient
from bot.wechat.fake_api import FakeWeChatAPI
from tests.conftest import APP_ID, FakeClock
from tests.conftest import APP_SECRET as SECRET


class Observed:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def __call__(self, api: str, errcode: int) -> None:
        self.events.append((api, errcode))


@pytest.fixture
def observed() -> Observed:
    return Observed()


ClientFactory = Callable[..., WeChatClient]


@pytest.fixture
def make_client(
    http: aiohttp.ClientSession, fake: FakeWeChatAPI, clock: FakeClock, observed: Observed
) -> ClientFactory:
    def make(**overrides: object) -> WeChatClient:
        assert fake.base_url is not None
        options: dict[str, object] = {
            "app_id": APP_ID,
            "app_secret": SECRET,
            "base_url": fake.base_url,
            "timeout": 1.0,
            "observer": observed,
            "clock": clock,
            **overrides,
        }
        return WeChatClient(http, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def client(make_client: ClientFactory) -> WeChatClient:
    return make_client()


def forced_refreshes(fake: FakeWeChatAPI) -> int:
    return sum(1 for call in fake.calls_to("stable_token") if call.body["force_refresh"] is True)


# -- access token --------------------------------------------------------------------
async def test_cold_concurrent_sends_share_one_token_fetch(
    client: WeChatClient, fake: FakeWeChatAPI
) -> None:
    await asyncio.gather(*(client.send_text(f"u{i}", f"msg {i}") for i in range(50)))
    assert fake.token_fetches == 1
    sends = fake.calls_to("custom_send")
    assert len(sends) == 50
    assert len({call.query["access_token"] for call in sends}) == 1
    assert sorted(fake.sent_texts()) == sorted(f"msg {i}" for i in range(50))


async def test_stable_token_request_shape(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    await client.access_token()
    (call,) = fake.calls_to("stable_token")
    assert call.body == {
        "grant_type": "client_credential",
        "appid": APP_ID,
        "secret": "***",  # the fake scrubs it; the client did send it (the fetch succeeded)
        "force_refresh": False,
    }


async def test_cached_token_is_reused_until_the_margin(
    client: WeChatClient, fake: FakeWeChatAPI, clock: FakeClock
) -> None:
    first = await client.access_token()
    await client.send_text("u1", "a")
    clock.advance(7200 - 300 - 1)
    await client.send_text("u1", "b")
    assert fake.token_fetches == 1
    clock.advance(2)  # now inside the last 300 s: refetch (WeChat renews it then)
    assert await client.access_token() != first
    assert fake.token_fetches == 2
    assert forced_refreshes(fake) == 0


async def test_short_lived_token_margin_is_half_its_life(
    http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    # stable_token's expires_in can be as low as 300 s: the margin must stay below it.
    async with FakeWeChatAPI(app_id=APP_ID, app_secret=SECRET, token_ttl=300, clock=clock) as api:
        assert api.base_url is not None
        client = WeChatClient(
            http, app_id=APP_ID, app_secret=SECRET, base_url=api.base_url, clock=clock
        )
        await client.access_token()
        clock.advance(149)
        await client.access_token()
        assert api.token_fetches == 1
        clock.advance(2)
        await client.access_token()
        assert api.token_fetches == 2


async def test_expired_token_is_refetched_and_the_call_retried_once(
    client: WeChatClient, fake: FakeWeChatAPI, observed: Observed
) -> None:
    await client.send_text("u1", "before")
    fake.expire_tokens()
    await client.send_text("u1", "after")
    assert fake.sent_texts() == ["before", "after"]
    assert len(fake.calls_to("custom_send")) == 3
    assert fake.token_fetches == 2
    # An expired token needs no forced refresh: normal mode hands out a new one.
    assert forced_refreshes(fake) == 0
    assert observed.events == [
        ("stable_token", 0),
        ("custom_send", 0),
        ("custom_send", 42001),
        ("stable_token", 0),
        ("custom_send", 0),
    ]


async def test_rejected_current_token_gets_one_forced_refresh(
    client: WeChatClient, fake: FakeWeChatAPI
) -> None:
    old = await client.access_token()
    fake.fail_next("custom_send", 40001)
    await client.send_text("u1", "hello")
    assert fake.sent_texts() == ["hello"]
    assert forced_refreshes(fake) == 1
    new = await client.access_token()
    assert new != old
    assert fake.calls_to("custom_send")[-1].query["access_token"] == new


async def test_persistent_40001_fails_after_exactly_one_retry(
    client: WeChatClient, fake: FakeWeChatAPI, clock: FakeClock
) -> None:
    fake.fail_next("custom_send", 40001, times=100)
    with pytest.raises(AccessTokenInvalid) as caught:
        await client.send_text("u1", "x")
    assert caught.value.errcode == 40001
    assert caught.value.api == "custom_send"
    assert len(fake.calls_to("custom_send")) == 2
    assert forced_refreshes(fake) == 1
    # Within 30 s of that forced refresh, no second one: reuse its token.
    clock.advance(10)
    with pytest.raises(AccessTokenInvalid):
        await client.send_text("u1", "y")
    assert len(fake.calls_to("custom_send")) == 4
    assert forced_refreshes(fake) == 1
    clock.advance(25)
    with pytest.raises(AccessTokenInvalid):
        await client.send_text("u1", "z")
    assert len(fake.calls_to("custom_send")) == 6
    assert forced_refreshes(fake) == 2
    assert fake.sent_texts() == []


async def test_concurrent_token_refusals_share_one_refresh(
    client: WeChatClient, fake: FakeWeChatAPI
) -> None:
    await client.access_token()
    fake.expire_tokens()
    await asyncio.gather(*(client.send_text(f"u{i}", "x") for i in range(20)))
    assert fake.token_fetches == 2
    assert len(fake.sent_texts()) == 20


async def test_token_fetch_failure_is_raised_without_retry(
    make_client: ClientFactory, fake: FakeWeChatAPI
) -> None:
    client = make_client(app_secret="wrong-secret")
    with pytest.raises(WeChatAPIError) as caught:
        await client.send_text("u1", "x")
    assert caught.value.errcode == 40125
    assert caught.value.api == "stable_token"
    assert fake.token_fetches == 1
    assert fake.calls_to("custom_send") == []


async def test_failed_early_refresh_keeps_the_still_valid_token(
    client: WeChatClient, fake: FakeWeChatAPI, clock: FakeClock
) -> None:
    token = await client.access_token()
    clock.advance(7200 - 100)  # inside the margin, not expired
    fake.fail_next("stable_token", -1)
    assert await client.access_token() == token
    clock.advance(200)  # now expired: a failing refresh is the caller's problem
    fake.fail_next("stable_token", -1)
    with pytest.raises(SystemBusy):
        await client.access_token()


async def test_cancelled_caller_does_not_cancel_the_shared_fetch(
    client: WeChatClient, fake: FakeWeChatAPI
) -> None:
    fake.set_delay("stable_token", 0.1)
    first = asyncio.create_task(client.access_token())
    second = asyncio.create_task(client.access_token())
    await asyncio.sleep(0.02)
    first.cancel()
    assert await second
    assert first.cancelled()
    assert fake.token_fetches == 1


# -- error mapping ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("errcode", "cls"),
    [
        (-1, SystemBusy),
        (40003, InvalidOpenID),
        (43004, NotFollowing),
        (45009, QuotaExceeded),
        (45015, OutOfReplyWindow),
        (45047, ReplyCountExceeded),
    ],
)
async def test_mapped_errors_raise_their_class(
    client: WeChatClient, fake: FakeWeChatAPI, errcode: int, cls: type[WeChatAPIError]
) -> None:
    fake.fail_next("custom_send", errcode)
    with pytest.raises(cls) as caught:
        await client.send_text("u1", "x")
    assert caught.value.errcode == errcode
    assert caught.value.api == "custom_send"
    assert len(fake.calls_to("custom_send")) == 1  # none of these is retried


async def test_unmapped_error_is_a_plain_wechat_api_error(
    client: WeChatClient, fake: FakeWeChatAPI
) -> None:
    with pytest.raises(WeChatAPIError) as caught:
        await client.send_template("u1", "", {"first": "x"})
    assert type(caught.value) is WeChatAPIError
    assert caught.value.errcode == 40037


def test_raise_for_maps_codes() -> None:
    for errcode in (40001, 40014, 42001):
        with pytest.raises(AccessTokenInvalid):
            raise_for(errcode, "m", "api")
    with pytest.raises(MassAlreadySent) as caught:
        raise_for(45065, "clientmsgid exist", "mass_send", response={"msg_id": 7})
    assert caught.value.msg_id == 7
    with pytest.raises(APITransportError):
        raise_for(-2, "timeout", "api")
    with pytest.raises(ValueError):
        raise_for(0, "ok", "api")


async def test_non_follower_raises_not_following(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    fake.add_follower("alice")
    with pytest.raises(NotFollowing):
        await client.send_text("bob", "x")


# -- transport ------------------------------------------------------------------------
async def test_slow_api_times_out_within_the_deadline(
    make_client: ClientFactory, fake: FakeWeChatAPI, observed: Observed
) -> None:
    client = make_client(timeout=0.2)
    await client.access_token()
    fake.set_delay("custom_send", 2.0)
    started = time.monotonic()
    with pytest.raises(APITransportError) as caught:
        await client.send_text("u1", "x")
    assert time.monotonic() - started < 1.0
    assert caught.value.errcode == -2
    assert observed.events[-1] == ("custom_send", -2)
    assert len(fake.calls_to("custom_send")) == 1  # no retry


async def test_slow_token_endpoint_times_out(
    make_client: ClientFactory, fake: FakeWeChatAPI
) -> None:
    client = make_client(timeout=0.2)
    fake.set_delay("stable_token", 2.0)
    started = time.monotonic()
    with pytest.raises(APITransportError):
        await client.send_text("u1", "x")
    assert time.monotonic() - started < 1.0


async def test_connection_refused_is_a_transport_error(
    http: aiohttp.ClientSession, observed: Observed
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = WeChatClient(
        http,
        app_id=APP_ID,
        app_secret=SECRET,
        base_url=f"http://127.0.0.1:{port}",
        observer=observed,
    )
    with pytest.raises(APITransportError):
        await client.send_text("u1", "x")
    assert observed.events == [("stable_token", -2)]


async def test_non_wechat_answer_is_a_transport_error(
    make_client: ClientFactory, fake: FakeWeChatAPI
) -> None:
    client = make_client(base_url=f"{fake.base_url}/not-wechat")  # the fake answers 404
    with pytest.raises(APITransportError, match="HTTP 404"):
        await client.access_token()


# -- payloads ----------------------------------------------------------------------------
async def test_chinese_content_arrives_unescaped(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    # The fake, like WeChat, shows \uXXXX escapes literally, so this fails if the
    # client sends ensure_ascii JSON.
    text = "周六上午九点，小区议事会 📢 «开放»"
    await client.send_text("u1", text)
    assert fake.sent_texts("u1") == [text]


async def test_send_template(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    msgid = await client.send_template(
        "u1", "tpl_1", {"first": "议事会通知", "remark": "欢迎"}, url="https://example.org/e/1"
    )
    assert isinstance(msgid, int)
    (call,) = fake.calls_to("template_send")
    assert call.body == {
        "touser": "u1",
        "template_id": "tpl_1",
        "data": {"first": {"value": "议事会通知"}, "remark": {"value": "欢迎"}},
        "url": "https://example.org/e/1",
    }


async def test_mass_send(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    msg_id = await client.mass_send_text(["a", "b", "c"], "月度通报", clientmsgid="2026-05")
    (call,) = fake.calls_to("mass_send")
    assert call.body["touser"] == ["a", "b", "c"]
    assert call.body["text"] == {"content": "月度通报"}
    with pytest.raises(MassAlreadySent) as caught:
        await client.mass_send_text(["a", "b"], "again", clientmsgid="2026-05")
    assert caught.value.msg_id == msg_id
    assert caught.value.errcode == 45065


@pytest.mark.parametrize("count", [0, 1, 10_001])
async def test_mass_send_size_is_checked_locally(
    client: WeChatClient, fake: FakeWeChatAPI, count: int
) -> None:
    with pytest.raises(ValueError):
        await client.mass_send_text([f"o{i}" for i in range(count)], "x", clientmsgid="c")
    assert fake.calls == []


async def test_mass_send_accepts_ten_thousand(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    await client.mass_send_text([f"o{i}" for i in range(10_000)], "x", clientmsgid="big")
    assert len(fake.calls_to("mass_send")[0].body["touser"]) == 10_000


async def test_create_temporary_qrcode(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    qr = await client.create_qrcode("rsvp:42", expire_seconds=3600)
    assert qr.expire_seconds == 3600
    assert qr.url.startswith("http://weixin.qq.com/q/")
    assert qr.image_url == SHOWQRCODE_URL + quote(qr.ticket, safe="")
    assert "/" not in qr.image_url.split("ticket=", 1)[1]
    assert fake.qrcode_scene(qr.ticket) == "rsvp:42"
    (call,) = fake.calls_to("qrcode_create")
    assert call.body == {
        "expire_seconds": 3600,
        "action_name": "QR_STR_SCENE",
        "action_info": {"scene": {"scene_str": "rsvp:42"}},
    }


async def test_create_permanent_qrcode(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    qr = await client.create_qrcode("signup", permanent=True)
    assert qr.expire_seconds is None
    assert fake.calls_to("qrcode_create")[0].body["action_name"] == "QR_LIMIT_STR_SCENE"


@pytest.mark.parametrize(
    ("scene", "expire"), [("", 60), ("x" * 65, 60), ("场" * 22, 60), ("ok", 0), ("ok", 2592001)]
)
async def test_qrcode_arguments_are_checked_locally(
    client: WeChatClient, fake: FakeWeChatAPI, scene: str, expire: int
) -> None:
    with pytest.raises(ValueError):
        await client.create_qrcode(scene, expire_seconds=expire)
    assert fake.calls == []


async def test_get_media(client: WeChatClient, fake: FakeWeChatAPI, observed: Observed) -> None:
    fake.add_media("img1", b"\xff\xd8\xff\xe0photo", "image/jpeg")
    assert await client.get_media("img1") == b"\xff\xd8\xff\xe0photo"
    with pytest.raises(WeChatAPIError) as caught:
        await client.get_media("nope")
    assert caught.value.errcode == 40007
    assert observed.events[-1] == ("media_get", 40007)


async def test_get_media_follows_a_video_url(
    client: WeChatClient, fake: FakeWeChatAPI, observed: Observed
) -> None:
    fake.add_media("vid1", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    assert await client.get_media("vid1") == b"\x00\x00\x00\x18ftypmp42"
    assert observed.events[-2:] == [("media_get", 0), ("media_video", 0)]
    assert "access_token" not in fake.calls_to("media_video")[0].query


async def test_get_media_with_expired_token_retries(
    client: WeChatClient, fake: FakeWeChatAPI
) -> None:
    fake.add_media("img1", b"photo", "image/png")
    await client.access_token()
    fake.expire_tokens()  # media/get answers its 42001 as text/plain
    assert await client.get_media("img1") == b"photo"


async def test_user_info(client: WeChatClient, fake: FakeWeChatAPI) -> None:
    fake.add_follower("alice", qr_scene_str="rsvp:1")
    info = await client.user_info("alice")
    assert info["subscribe"] == 1
    assert info["openid"] == "alice"
    assert info["qr_scene_str"] == "rsvp:1"
    assert "errcode" not in info
    assert fake.calls_to("user_info")[0].query["lang"] == "zh_CN"
    with pytest.raises(InvalidOpenID):
        await client.user_info("ghost")
    fake.remove_follower("alice")
    assert (await client.user_info("alice"))["subscribe"] == 0


# -- observability ------------------------------------------------------------------------
async def test_observer_sees_every_http_call(
    client: WeChatClient, fake: FakeWeChatAPI, observed: Observed
) -> None:
    await client.send_text("u1", "x")
    fake.fail_next("custom_send", 45015)
    with pytest.raises(OutOfReplyWindow):
        await client.send_text("u1", "y")
    await client.create_qrcode("s")
    assert observed.events == [
        ("stable_token", 0),
        ("custom_send", 0),
        ("custom_send", 45015),
        ("qrcode_create", 0),
    ]


async def test_secrets_never_logged_and_one_line_per_failure(
    make_client: ClientFactory, fake: FakeWeChatAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(timeout=0.2)
    first = await client.access_token()
    fake.expire_tokens()
    await client.send_text("u1", "x")  # one 42001 failure
    fake.set_delay("custom_send", 1.0)
    with pytest.raises(APITransportError) as caught:
        await client.send_text("u1", "y")  # one timeout
    second = await client.access_token()
    for secret in (SECRET, first, second):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
    assert SECRET not in repr(client)
    failures = [r for r in caplog.records if r.name == "bot.wechat.client"]
    assert [r.getMessage().split(" errmsg=")[0] for r in failures] == [
        "WeChat API custom_send failed: errcode=42001",
        "WeChat API custom_send failed: errcode=-2",
    ]
    assert all(r.levelno == logging.WARNING for r in failures)


async def test_invalid_timeout_is_refused(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError):
        WeChatClient(http, app_id="a", app_secret="b", timeout=0)
