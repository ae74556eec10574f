"""The fake WeChat API answers as WeChat's public documentation says.

These tests speak raw HTTP to the fake (no client), so they pin the wire
format the client is tested against.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from bot.wechat.fake_api import FakeWeChatAPI
from tests.conftest import APP_ID, FakeClock
from tests.conftest import APP_SECRET as SECRET


class Wire:
    """Small raw-HTTP helper bound to one fake."""

    def __init__(self, http: aiohttp.ClientSession, fake: FakeWeChatAPI) -> None:
        self.http = http
        self.fake = fake

    def url(self, path: str) -> str:
        assert self.fake.base_url is not None
        return self.fake.base_url + path

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        async with self.http.get(self.url(path), params=params) as resp:
            assert resp.status == 200
            result: dict[str, Any] = json.loads(await resp.read())
            return result

    async def post(self, path: str, body: Any, **params: str) -> dict[str, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        async with self.http.post(self.url(path), params=params, data=data) as resp:
            assert resp.status == 200
            result: dict[str, Any] = json.loads(await resp.read())
            return result

    async def stable_token(
        self, *, force: bool = False, override: dict[str, str] | None = None
    ) -> dict[str, Any]:
        body = {
            "grant_type": "client_credential",
            "appid": APP_ID,
            "secret": SECRET,
            "force_refresh": force,
            **(override or {}),
        }
        return await self.post("/cgi-bin/stable_token", body)

    async def token(self) -> str:
        answer = await self.stable_token()
        value: str = answer["access_token"]
        return value

    async def send_text(self, token: str, touser: str, content: str) -> dict[str, Any]:
        body = {"touser": touser, "msgtype": "text", "text": {"content": content}}
        return await self.post("/cgi-bin/message/custom/send", body, access_token=token)


@pytest.fixture
def wire(http: aiohttp.ClientSession, fake: FakeWeChatAPI) -> Wire:
    return Wire(http, fake)


# -- tokens -------------------------------------------------------------------------
async def test_token_endpoint_issues_and_rotates_with_grace(wire: Wire, clock: FakeClock) -> None:
    params = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}
    first = await wire.get("/cgi-bin/token", **params)
    assert first["expires_in"] == 7200
    assert len(first["access_token"]) > 100
    second = await wire.get("/cgi-bin/token", **params)
    assert second["access_token"] != first["access_token"]
    # The previous token keeps working 5 minutes, then is "not latest".
    assert (await wire.send_text(first["access_token"], "u1", "hi"))["errcode"] == 0
    clock.advance(301)
    assert (await wire.send_text(first["access_token"], "u1", "hi"))["errcode"] == 40001
    assert (await wire.send_text(second["access_token"], "u1", "hi"))["errcode"] == 0


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"grant_type": "client_credential", "appid": "wx_other", "secret": SECRET}, 40013),
        ({"grant_type": "client_credential", "appid": APP_ID, "secret": "wrong"}, 40125),
        ({"grant_type": "password", "appid": APP_ID, "secret": SECRET}, 40002),
        ({"grant_type": "client_credential", "secret": SECRET}, 41002),
    ],
)
async def test_token_endpoint_rejects_bad_credentials(
    wire: Wire, params: dict[str, str], errcode: int
) -> None:
    answer = await wire.get("/cgi-bin/token", **params)
    assert answer["errcode"] == errcode
    assert "rid:" in answer["errmsg"]


async def test_stable_token_is_stable_until_forced(wire: Wire, clock: FakeClock) -> None:
    first = await wire.stable_token()
    clock.advance(100)
    again = await wire.stable_token()
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 7100  # the remaining life, not 7200
    forced = await wire.stable_token(force=True)
    assert forced["access_token"] != first["access_token"]
    assert forced["expires_in"] == 7200
    # A forced refresh kills the previous token at once.
    assert (await wire.send_text(first["access_token"], "u1", "x"))["errcode"] == 40001
    assert (await wire.send_text(forced["access_token"], "u1", "x"))["errcode"] == 0


async def test_stable_token_renews_in_its_last_five_minutes(wire: Wire, clock: FakeClock) -> None:
    first = await wire.stable_token()
    clock.advance(7200 - 299)
    renewed = await wire.stable_token()
    assert renewed["access_token"] != first["access_token"]
    # The old one stays valid until its own expiry.
    assert (await wire.send_text(first["access_token"], "u1", "x"))["errcode"] == 0


async def test_forced_refresh_spacing_is_enforced(wire: Wire, clock: FakeClock) -> None:
    assert "access_token" in await wire.stable_token(force=True)
    clock.advance(29)
    assert (await wire.stable_token(force=True))["errcode"] == 45009
    clock.advance(2)
    assert "access_token" in await wire.stable_token(force=True)


@pytest.mark.parametrize(
    ("override", "errcode"),
    [({"appid": "wx_other"}, 40013), ({"secret": "wrong"}, 40125), ({"secret": ""}, 41004)],
)
async def test_stable_token_rejects_bad_credentials(
    wire: Wire, override: dict[str, str], errcode: int
) -> None:
    assert (await wire.stable_token(override=override))["errcode"] == errcode


async def test_stable_token_requires_post(wire: Wire) -> None:
    assert (await wire.get("/cgi-bin/stable_token"))["errcode"] == 43002


async def test_secret_is_never_recorded(wire: Wire, fake: FakeWeChatAPI) -> None:
    await wire.get("/cgi-bin/token", grant_type="client_credential", appid=APP_ID, secret=SECRET)
    await wire.stable_token()
    await wire.post("/cgi-bin/stable_token", f'{{"secret": "{SECRET}", '.encode())  # malformed
    assert fake.token_fetches == 3
    assert SECRET not in repr(fake.calls)
    assert fake.calls[0].query["secret"] == "***"
    assert fake.calls[1].body["secret"] == "***"


async def test_access_token_checks(wire: Wire, fake: FakeWeChatAPI) -> None:
    body = {"touser": "u1", "msgtype": "text", "text": {"content": "x"}}
    path = "/cgi-bin/message/custom/send"
    assert (await wire.post(path, body))["errcode"] == 41001
    assert (await wire.post(path, body, access_token="nope"))["errcode"] == 40001
    token = await wire.token()
    fake.expire_tokens()
    assert (await wire.post(path, body, access_token=token))["errcode"] == 42001
    fresh = await wire.token()
    assert fresh != token
    assert (await wire.post(path, body, access_token=fresh))["errcode"] == 0


# -- messages -------------------------------------------------------------------------
async def test_custom_text_is_delivered_unescaped(wire: Wire, fake: FakeWeChatAPI) -> None:
    token = await wire.token()
    answer = await wire.send_text(token, "u1", "你好，邻居 🏠")
    assert answer == {"errcode": 0, "errmsg": "ok"}
    assert fake.sent_texts() == ["你好，邻居 🏠"]
    assert fake.sent_texts("u2") == []
    call = fake.calls_to("custom_send")[0]
    assert call.body["text"]["content"] == "你好，邻居 🏠"
    assert call.query["access_token"] == token


async def test_ascii_escaped_json_shows_the_escapes(wire: Wire, fake: FakeWeChatAPI) -> None:
    # The classic pitfall: ensure_ascii JSON reaches users as "\u4f60\u597d".
    token = await wire.token()
    body = json.dumps({"touser": "u1", "msgtype": "text", "text": {"content": "你好"}})
    assert "\\u4f60" in body
    await wire.post("/cgi-bin/message/custom/send", body.encode(), access_token=token)
    assert fake.sent_texts() == ["\\u4f60\\u597d"]


@pytest.mark.parametrize(
    ("raw", "errcode"),
    [
        (b'{"touser": "u1", "msgtype": ', 47001),
        (b"", 44002),
        (b"\xff\xfe", 47001),
        (b'{"touser": "u1", "msgtype": "telegram"}', 40008),
        (b'{"touser": "u1", "msgtype": "text", "text": {"content": ""}}', 44004),
        (b'{"msgtype": "text", "text": {"content": "x"}}', 40003),
    ],
)
async def test_custom_send_rejects_bad_bodies(
    wire: Wire, fake: FakeWeChatAPI, raw: bytes, errcode: int
) -> None:
    token = await wire.token()
    answer = await wire.post("/cgi-bin/message/custom/send", raw, access_token=token)
    assert answer["errcode"] == errcode
    assert len(fake.calls_to("custom_send")) == 1  # failed calls are recorded too
    assert fake.sent_texts() == []


async def test_sends_to_non_followers_once_followers_are_known(
    wire: Wire, fake: FakeWeChatAPI
) -> None:
    token = await wire.token()
    assert (await wire.send_text(token, "stranger", "x"))["errcode"] == 0  # nobody registered
    fake.add_follower("alice")
    assert (await wire.send_text(token, "stranger", "x"))["errcode"] == 43004
    assert (await wire.send_text(token, "alice", "x"))["errcode"] == 0
    fake.remove_follower("alice")
    assert (await wire.send_text(token, "alice", "y"))["errcode"] == 43004
    assert fake.sent_texts() == ["x", "x"]


async def test_template_send(wire: Wire, fake: FakeWeChatAPI) -> None:
    token = await wire.token()
    path = "/cgi-bin/message/template/send"
    body = {"touser": "u1", "template_id": "tpl", "data": {"first": {"value": "通知"}}}
    answer = await wire.post(path, body, access_token=token)
    assert answer["errcode"] == 0
    assert isinstance(answer["msgid"], int)
    assert (await wire.post(path, {**body, "template_id": ""}, access_token=token))[
        "errcode"
    ] == 40037
    bad_data = {**body, "data": {"first": "not an object"}}
    assert (await wire.post(path, bad_data, access_token=token))["errcode"] == 47001
    fake.add_follower("someone_else")
    assert (await wire.post(path, body, access_token=token))["errcode"] == 43004


async def test_mass_send_sizes_and_clientmsgid_dedup(wire: Wire, clock: FakeClock) -> None:
    token = await wire.token()
    path = "/cgi-bin/message/mass/send"

    def body(touser: list[str], **extra: Any) -> dict[str, Any]:
        return {"touser": touser, "msgtype": "text", "text": {"content": "月报"}, **extra}

    assert (await wire.post(path, body(["a"]), access_token=token))["errcode"] == 40130
    too_many = [f"o{i}" for i in range(10_001)]
    assert (await wire.post(path, body(too_many), access_token=token))["errcode"] == 40130
    first = await wire.post(path, body(["a", "b"], clientmsgid="m1"), access_token=token)
    assert first["errcode"] == 0
    assert first["errmsg"] == "send job submission success"
    assert isinstance(first["msg_data_id"], int)
    again = await wire.post(path, body(["c", "d"], clientmsgid="m1"), access_token=token)
    assert again["errcode"] == 45065
    assert again["msg_id"] == first["msg_id"]
    # Without clientmsgid, WeChat de-dups on a digest of recipients and content.
    plain = await wire.post(path, body(["a", "b"]), access_token=token)
    assert plain["errcode"] == 0
    assert (await wire.post(path, body(["a", "b"]), access_token=token))["errcode"] == 45065
    clock.advance(86_401)
    token = await wire.token()  # the old one expired meanwhile
    assert (await wire.post(path, body(["a", "b"]), access_token=token))["errcode"] == 0
    long_id = body(["a", "b"], clientmsgid="x" * 65)
    assert (await wire.post(path, long_id, access_token=token))["errcode"] == 45067


# -- QR codes, media, users ------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "scene", "permanent"),
    [
        ("QR_SCENE", {"scene_id": 123}, False),
        ("QR_STR_SCENE", {"scene_str": "rsvp:42"}, False),
        ("QR_LIMIT_SCENE", {"scene_id": 100_000}, True),
        ("QR_LIMIT_STR_SCENE", {"scene_str": "x" * 64}, True),
    ],
)
async def test_qrcode_create(
    wire: Wire, fake: FakeWeChatAPI, action: str, scene: dict[str, Any], permanent: bool
) -> None:
    token = await wire.token()
    body = {"action_name": action, "action_info": {"scene": scene}}
    answer = await wire.post("/cgi-bin/qrcode/create", body, access_token=token)
    assert answer["url"].startswith("http://weixin.qq.com/q/")
    assert ("expire_seconds" in answer) is not permanent
    if not permanent:
        assert answer["expire_seconds"] == 30  # the documented default
    assert fake.qrcode_scene(answer["ticket"]) == next(iter(scene.values()))


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"action_name": "QR_FOREVER", "action_info": {"scene": {"scene_id": 1}}}, 40052),
        ({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100_001}}}, 40053),
        ({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 0}}}, 40053),
        ({"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "x" * 65}}}, 40053),
        ({"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_id": 5}}}, 40053),
        ({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene_str": "1"}}, 40053),
    ],
)
async def test_qrcode_create_validates(wire: Wire, body: dict[str, Any], errcode: int) -> None:
    token = await wire.token()
    answer = await wire.post("/cgi-bin/qrcode/create", body, access_token=token)
    assert answer["errcode"] == errcode


async def test_qrcode_expire_is_capped(wire: Wire) -> None:
    token = await wire.token()
    body = {
        "expire_seconds": 10**9,
        "action_name": "QR_STR_SCENE",
        "action_info": {"scene": {"scene_str": "a"}},
    }
    answer = await wire.post("/cgi-bin/qrcode/create", body, access_token=token)
    assert answer["expire_seconds"] == 2_592_000


async def test_media_get(wire: Wire, fake: FakeWeChatAPI, http: aiohttp.ClientSession) -> None:
    token = await wire.token()
    fake.add_media("m1", b"\xff\xd8jpegbytes", "image/jpeg")
    params = {"access_token": token, "media_id": "m1"}
    async with http.get(wire.url("/cgi-bin/media/get"), params=params) as resp:
        assert resp.content_type == "image/jpeg"
        assert resp.headers["Content-disposition"] == 'attachment; filename="m1.jpg"'
        assert await resp.read() == b"\xff\xd8jpegbytes"
    params["media_id"] = "missing"
    async with http.get(wire.url("/cgi-bin/media/get"), params=params) as resp:
        assert resp.content_type == "text/plain"
        assert json.loads(await resp.read())["errcode"] == 40007
    fake.add_media("v1", b"mp4bytes", "video/mp4")
    answer = await wire.get("/cgi-bin/media/get", access_token=token, media_id="v1")
    async with http.get(answer["video_url"]) as resp:
        assert await resp.read() == b"mp4bytes"


async def test_user_info(wire: Wire, fake: FakeWeChatAPI) -> None:
    token = await wire.token()
    anyone = await wire.get("/cgi-bin/user/info", access_token=token, openid="u9")
    assert anyone["subscribe"] == 1  # no followers registered: anyone follows
    fake.add_follower("alice", subscribe_scene="ADD_SCENE_QR_CODE", qr_scene_str="rsvp:1")
    alice = await wire.get("/cgi-bin/user/info", access_token=token, openid="alice", lang="zh_CN")
    assert alice["subscribe"] == 1
    assert alice["openid"] == "alice"
    assert alice["qr_scene_str"] == "rsvp:1"
    assert "nickname" not in alice  # no longer returned since 2021-12-27
    fake.remove_follower("alice")
    gone = await wire.get("/cgi-bin/user/info", access_token=token, openid="alice")
    assert gone == {"subscribe": 0, "openid": "alice"}
    unknown = await wire.get("/cgi-bin/user/info", access_token=token, openid="ghost")
    assert unknown["errcode"] == 40003


# -- scripting ------------------------------------------------------------------------
async def test_fail_next_queues_failures(wire: Wire, fake: FakeWeChatAPI) -> None:
    token = await wire.token()
    fake.fail_next("custom_send", 45015, times=2)
    fake.fail_next("custom_send", -1, errmsg="busy now")
    codes = [(await wire.send_text(token, "u1", "x"))["errcode"] for _ in range(4)]
    assert codes == [45015, 45015, -1, 0]
    assert fake.calls_to("custom_send")[2].api == "custom_send"
    with pytest.raises(ValueError, match="unknown api"):
        fake.fail_next("custom_snd", 1)


async def test_fail_next_custom_errmsg(wire: Wire, fake: FakeWeChatAPI) -> None:
    fake.fail_next("stable_token", -1, errmsg="system error")
    assert await wire.stable_token() == {"errcode": -1, "errmsg": "system error"}


async def test_set_delay(wire: Wire, fake: FakeWeChatAPI) -> None:
    fake.set_delay("stable_token", 0.15)
    started = time.monotonic()
    await wire.stable_token()
    assert time.monotonic() - started >= 0.15


async def test_rate_limit(wire: Wire, fake: FakeWeChatAPI, clock: FakeClock) -> None:
    token = await wire.token()
    fake.set_rate_limit("custom_send", 5)
    answers = [await wire.send_text(token, "u1", "x") for _ in range(7)]
    assert [a["errcode"] for a in answers] == [0] * 5 + [45009] * 2
    assert answers[-1]["errmsg"] == "api freq out of limit"
    clock.advance(0.2)  # one more call's worth
    assert (await wire.send_text(token, "u1", "x"))["errcode"] == 0
    assert (await wire.send_text(token, "u1", "x"))["errcode"] == 45009


async def test_lifecycle() -> None:
    fake = FakeWeChatAPI()
    url = await fake.start()
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(RuntimeError):
        await fake.start()
    await fake.stop()
    await fake.stop()  # idempotent


async def test_delayed_request_does_not_block_stop(http: aiohttp.ClientSession) -> None:
    fake = FakeWeChatAPI()
    await fake.start()
    fake.set_delay("stable_token", 30)
    assert fake.base_url is not None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await http.post(fake.base_url + "/cgi-bin/stable_token", data=b"{}")
    started = time.monotonic()
    await fake.stop()
    assert time.monotonic() - started < 2
