"""The webhook's protocol edges: verification, every payload type, and hostile input."""

from __future__ import annotations

import asyncio
import json
import time
import xml.etree.ElementTree as ET

import pytest

from bot import keys
from bot.simulator import reply_text
from bot.wechat.crypto import MessageCrypto
from bot.wechat.signature import msg_signature, url_signature
from handlers.basics import BAD_QR, WELCOME
from handlers.fallback import NOT_HEARD, RECEIVED
from tests.conftest import AES_KEY, APP_ID, SAMPLES, TOKEN, Harness

# What a resident reads back for each sample WeChat payload (None: answered with `success`).
EXPECTED: dict[str, str | None] = {
    "text.xml": "抱歉，没看懂“this is a test”。",
    "text_from_article.xml": "抱歉，没看懂",
    "image.xml": RECEIVED,
    "voice.xml": NOT_HEARD,
    "voice_recognition.xml": "抱歉，没看懂“Meow~”。",
    "video.xml": RECEIVED,
    "shortvideo.xml": RECEIVED,
    "location.xml": RECEIVED,
    "link.xml": RECEIVED,
    "unknown_msgtype.xml": None,
    "event_subscribe.xml": WELCOME,
    "event_subscribe_qrscene.xml": WELCOME,
    "event_unsubscribe.xml": None,
    "event_scan.xml": BAD_QR,
    "event_location.xml": None,
    "event_click.xml": "请回复数字选择：",
    "event_view.xml": None,
    "event_templatesendjobfinish.xml": None,
    "event_templatesendjobfinish_alt1.xml": None,
    "event_templatesendjobfinish_alt2.xml": None,
    "event_masssendjobfinish.xml": None,
    "event_scancode_push.xml": None,
    "event_scancode_waitmsg.xml": None,
    "event_pic_sysphoto.xml": None,
    "event_pic_photo_or_album.xml": None,
    "event_pic_weixin.xml": None,
    "event_location_select.xml": None,
    "event_subscribe_msg_popup.xml": None,
    "event_subscribe_msg_change.xml": None,
    "event_subscribe_msg_sent.xml": None,
    "event_kf_create_session.xml": None,
    "event_unknown.xml": None,
}


def test_every_sample_payload_has_an_expectation() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.xml")) == sorted(EXPECTED)


async def _post_sample(harness: Harness, name: str) -> tuple[int, str]:
    body = (SAMPLES / name).read_bytes()
    if not harness.aes:
        return await harness.post_raw(body, harness.signed_query())
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    encrypted = crypto.encrypt_payload(body)
    query = harness.signed_query(encrypt_type="aes")
    query["msg_signature"] = msg_signature(TOKEN, query["timestamp"], query["nonce"], encrypted)
    envelope = f"<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    status, text = await harness.post_raw(envelope.encode(), query)
    if status == 200 and text.startswith("<xml>"):
        text = crypto.decrypt_payload(ET.fromstring(text).findtext("Encrypt") or "").decode()
    return status, text


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_every_message_and_event_type_is_answered(harness: Harness, name: str) -> None:
    status, body = await _post_sample(harness, name)
    assert status == 200
    expected = EXPECTED[name]
    if expected is None:
        assert body == "success"
    else:
        text = reply_text((status, body))
        assert text is not None and text.startswith(expected)


async def test_get_verification_echoes_echostr(plain: Harness) -> None:
    status, body = await plain.get("/wechat", **plain.signed_query(echostr="4375120948345356249"))
    assert (status, body) == (200, "4375120948345356249")


async def test_get_verification_with_a_bad_signature_is_refused(plain: Harness) -> None:
    query = plain.signed_query(echostr="123")
    query["signature"] = "0" * 40
    status, body = await plain.get("/wechat", **query)
    assert status == 403 and "123" not in body


TEXT = (SAMPLES / "text.xml").read_bytes()


async def test_a_body_over_64_kib_is_refused_with_413(plain: Harness) -> None:
    status, _ = await plain.post_raw(
        b"<xml>" + b"a" * (64 * 1024) + b"</xml>", plain.signed_query()
    )
    assert status == 413


async def test_a_bad_signature_is_refused_with_403(plain: Harness) -> None:
    query = plain.signed_query()
    query["signature"] = url_signature("wrongToken", query["timestamp"], query["nonce"])
    assert (await plain.post_raw(TEXT, query))[0] == 403


async def test_a_missing_signature_is_refused_with_403(plain: Harness) -> None:
    assert (await plain.post_raw(TEXT, {}))[0] == 403


@pytest.mark.parametrize("offset", [-301, 301, 86400])
async def test_a_timestamp_more_than_5_minutes_off_is_refused(plain: Harness, offset: int) -> None:
    timestamp, nonce = str(int(time.time()) + offset), "1"
    query = {
        "signature": url_signature(TOKEN, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    assert (await plain.post_raw(TEXT, query))[0] == 403


HOSTILE = {
    "not_xml": b"hello",
    "truncated": b"<xml><ToUserName><![CDATA[a]]></ToUserName>",
    "json": json.dumps({"ToUserName": "a"}).encode(),
    "xxe": (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>text</MsgType><Content>&x;</Content><MsgId>1</MsgId></xml>"
    ),
    "billion_laughs": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"
    ),
    "duplicate_field": (
        b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>text</MsgType><MsgType>image</MsgType><Content>x</Content><MsgId>1</MsgId></xml>"
    ),
    "duplicate_sender": (
        b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><FromUserName>c</FromUserName>"
        b"<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>"
    ),
    "non_numeric_time": (
        b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>soon</CreateTime>"
        b"<MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>"
    ),
    "non_numeric_msgid": (
        b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>text</MsgType><Content>x</Content><MsgId>12a</MsgId></xml>"
    ),
    "missing_sender": (
        b"<xml><ToUserName>a</ToUserName><CreateTime>1</CreateTime>"
        b"<MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>"
    ),
    "wrong_root": b"<html><body>hi</body></html>",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_malformed_bodies_get_400_and_leave_nothing_behind(
    plain: Harness, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = await plain.post_raw(HOSTILE[name], plain.signed_query())
    assert status == 400
    assert "Traceback" not in body
    assert any(r.name == "bot.webhook" and "refused" in r.getMessage() for r in caplog.records)
    # No record was half-made for the would-be sender, and the server still serves.
    status, health = await plain.get("/healthz")
    assert status == 200 and json.loads(health)["status"] == "ok"
    store = plain.app[keys.STORE]
    for collection in ("conversations", "residents"):
        assert await store.collection(collection).size() == 0


async def test_safe_mode_with_a_bad_msg_signature_is_refused(safe: Harness) -> None:
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    encrypted = crypto.encrypt_payload(TEXT)
    query = safe.signed_query(encrypt_type="aes", msg_signature="f" * 40)
    body = f"<xml><ToUserName>a</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert (await safe.post_raw(body.encode(), query))[0] == 403


async def test_safe_mode_for_another_app_id_is_refused(safe: Harness) -> None:
    other = MessageCrypto(TOKEN, AES_KEY, "wxotherapp0000000")
    encrypted = other.encrypt_payload(TEXT)
    query = safe.signed_query(encrypt_type="aes")
    query["msg_signature"] = msg_signature(TOKEN, query["timestamp"], query["nonce"], encrypted)
    body = f"<xml><ToUserName>a</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert (await safe.post_raw(body.encode(), query))[0] == 403


async def test_safe_mode_garbage_ciphertext_is_a_400(safe: Harness) -> None:
    encrypted = "not-base64!!"
    query = safe.signed_query(encrypt_type="aes")
    query["msg_signature"] = msg_signature(TOKEN, query["timestamp"], query["nonce"], encrypted)
    body = f"<xml><ToUserName>a</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert (await safe.post_raw(body.encode(), query))[0] == 400


async def test_compatible_mode_is_decided_by_encrypt_type(safe: Harness) -> None:
    # Compatible mode sends the plaintext fields AND Encrypt; only the encrypted copy counts.
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    real = (
        "<xml><ToUserName>gh_x</ToUserName><FromUserName>o_compat</FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType>text</MsgType><Content>菜单</Content>"
        "<MsgId>77</MsgId></xml>"
    )
    encrypted = crypto.encrypt_payload(real.encode())
    query = safe.signed_query(encrypt_type="aes")
    query["msg_signature"] = msg_signature(TOKEN, query["timestamp"], query["nonce"], encrypted)
    body = real.replace("菜单", "取消").replace(
        "</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )
    status, text = await safe.post_raw(body.encode(), query)
    assert status == 200
    inner = crypto.decrypt_payload(ET.fromstring(text).findtext("Encrypt") or "")
    assert "请回复数字选择" in inner.decode()


async def test_plaintext_post_to_an_aes_server_still_works(safe: Harness) -> None:
    # An admin may switch the console back to plaintext mode; signatures still hold.
    assert (await safe.post_raw(TEXT, safe.signed_query()))[0] == 200


async def test_aes_post_to_a_plaintext_server_is_refused_clearly(plain: Harness) -> None:
    status, body = await plain.post_raw(b"<xml/>", plain.signed_query(encrypt_type="aes"))
    assert status == 400 and body == "aes_not_configured"


async def test_hostile_input_in_bulk_does_not_take_the_server_down(plain: Harness) -> None:
    bodies = list(HOSTILE.values()) * 5
    results = await asyncio.gather(*(plain.post_raw(b, plain.signed_query()) for b in bodies))
    assert {status for status, _ in results} == {400}
    assert await plain.resident().say("菜单") is not None
