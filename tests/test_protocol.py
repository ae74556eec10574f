"""The inbound protocol layer: signatures, AES frames, XML parsing, reply rendering.

Checked against the official/public vectors in shared/wechat_samples and against
wechatpy (through tests/protocol_helpers.py) as an independent implementation.
"""

from __future__ import annotations

import contextlib
import json
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
import wechatpy
import xmltodict
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import ArticlesReply as WeArticlesReply
from wechatpy.replies import ImageReply as WeImageReply

from bot.errors import ConfigError, MalformedMessage, ProtocolError, SignatureError
from bot.wechat.crypto import MessageCrypto, validate_encoding_aes_key
from bot.wechat.messages import Message
from bot.wechat.replies import (
    MAX_TEXT_BYTES,
    TRUNCATION_HINT,
    Article,
    ArticlesReply,
    ImageReply,
    TextReply,
    cdata,
    fit_text,
    render,
)
from bot.wechat.signature import (
    check_msg_signature,
    check_signature,
    check_timestamp,
    msg_signature,
    url_signature,
)
from bot.wechat.xmlparse import MAX_DEPTH, parse_envelope, parse_message
from tests.protocol_helpers import (
    SAMPLES,
    decrypt_reply,
    encrypt_body,
    sample,
    sign,
    vectors,
    wechatpy_msg_signature,
)

TOKEN = "protoToken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx1234567890abcdef"
TS = "1718000000"
NONCE = "1320562132"

VECTORS = vectors()
AES = VECTORS["aes_by_id"]


@pytest.fixture
def crypto() -> MessageCrypto:
    return MessageCrypto(TOKEN, AES_KEY, APP_ID)


def text_xml(content: str, *, source: str = "o_resident", msg_id: str = "24612345678901234") -> str:
    return (
        "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>"
        f"<FromUserName><![CDATA[{source}]]></FromUserName>"
        "<CreateTime>1718000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


def reason_of(call: Callable[[], object]) -> str:
    with pytest.raises(ProtocolError) as info:
        call()
    return info.value.reason


# ---------------------------------------------------------------------------
# signature.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["url_signature_vectors"], ids=lambda v: v["id"])
def test_official_url_signatures_verify(vector: dict[str, Any]) -> None:
    args = (vector["token"], vector["timestamp"], vector["nonce"])
    assert url_signature(*args) == vector["signature"]
    check_signature(vector["token"], vector["signature"], vector["timestamp"], vector["nonce"])


def test_safe_mode_push_also_carries_a_valid_url_signature() -> None:
    v = AES["doc_safe_mode_json"]
    check_signature(v["token"], v["signature"], v["timestamp"], v["nonce"])


def test_url_signature_agrees_with_wechatpy_on_odd_inputs() -> None:
    for token, ts, nonce in [("t", "1", "2"), ("Token中文", "1718000000", "nonce"), ("", "", "")]:
        assert url_signature(token, ts, nonce) == sign(token, ts, nonce)


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "0" * 40,
        url_signature(TOKEN, TS, NONCE).upper(),
        url_signature(TOKEN, TS, NONCE)[:-1],
        "签名" * 20,  # non-ASCII must not crash hmac.compare_digest
        "\udcff" * 40,
    ],
)
def test_wrong_url_signature_is_refused_with_403(signature: str) -> None:
    with pytest.raises(SignatureError) as info:
        check_signature(TOKEN, signature, TS, NONCE)
    assert info.value.reason == "bad_signature"
    assert info.value.status == 403


def test_hostile_query_values_give_signature_errors_not_crashes() -> None:
    good = url_signature(TOKEN, TS, NONCE)
    assert reason_of(lambda: check_signature(TOKEN, good, TS, "\ud800")) == "bad_signature"
    assert reason_of(lambda: check_signature(TOKEN, good, "１７", NONCE)) == "bad_signature"


def test_msg_signature_vectors() -> None:
    reply = AES["doc_safe_mode_reply"]
    assert (
        msg_signature(
            reply["token"],
            reply["reply_timestamp"],
            reply["reply_nonce"],
            reply["expected_encrypt"],
        )
        == reply["expected_msg_signature"]
    )
    for vid in ("mp_python_sample", "doc_safe_mode_json"):
        v = AES[vid]
        check_msg_signature(
            v["token"], v["msg_signature"], v["timestamp"], v["nonce"], v["encrypt"]
        )


def test_msg_signature_mismatch_is_refused() -> None:
    v = AES["mp_python_sample"]
    with pytest.raises(SignatureError) as info:
        check_msg_signature(v["token"], v["msg_signature"], v["timestamp"], v["nonce"], "x")
    assert info.value.reason == "bad_msg_signature"


@pytest.mark.parametrize("offset", [0, 1, -1, 300, -300])
def test_timestamp_within_skew_is_accepted(offset: int) -> None:
    now = 1_700_000_000.0
    check_timestamp(str(int(now) + offset), now)


@pytest.mark.parametrize("offset", [302, -301, 86_400, -1_700_000_000])
def test_stale_or_future_timestamp_is_refused(offset: int) -> None:
    now = 1_700_000_000.0
    with pytest.raises(SignatureError) as info:
        check_timestamp(str(int(now) + offset), now)
    assert info.value.reason == "stale_timestamp"
    assert info.value.status == 403


def test_timestamp_skew_is_configurable() -> None:
    check_timestamp("1000", 1900.0, max_skew=900)
    assert reason_of(lambda: check_timestamp("1000", 1901.0, max_skew=900)) == "stale_timestamp"


@pytest.mark.parametrize(
    "timestamp", ["", "abc", "１７００００００００", "1.7e9", "-5", " 1700000000", "1" * 13, "٣"]
)
def test_non_numeric_timestamp_is_refused(timestamp: str) -> None:
    assert reason_of(lambda: check_timestamp(timestamp, 1_700_000_000.0)) == "bad_timestamp"


# ---------------------------------------------------------------------------
# crypto.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        AES_KEY[:-1],
        AES_KEY + "A",
        AES_KEY[:-1] + "+",
        AES_KEY[:-1] + "/",
        AES_KEY[:-1] + "=",
        AES_KEY[:-1] + "é",
        " " + AES_KEY[1:],
    ],
)
def test_bad_encoding_aes_key_is_a_config_error_at_start_up(key: str) -> None:
    with pytest.raises(ConfigError, match="43 characters"):
        validate_encoding_aes_key(key)
    with pytest.raises(ConfigError):
        MessageCrypto(TOKEN, key, APP_ID)


def test_good_encoding_aes_keys_are_accepted() -> None:
    for key in (AES_KEY, "A" * 43, AES["wecom_wechatpy_test"]["encoding_aes_key"]):
        validate_encoding_aes_key(key)


@pytest.mark.parametrize(
    "body_file",
    [
        "encrypted/compat_mode_text_official_sample.xml",
        "encrypted/safe_mode_text_official_sample_stripped.xml",
    ],
)
def test_official_mp_sample_decrypts_and_parses(body_file: str) -> None:
    v = AES["mp_python_sample"]
    crypto = MessageCrypto(v["token"], v["encoding_aes_key"], v["appid"])
    envelope = parse_envelope(sample(body_file))
    assert envelope["ToUserName"] == "gh_10f6c3c3ac5a"
    plain = crypto.decrypt(envelope["Encrypt"], v["msg_signature"], v["timestamp"], v["nonce"])
    assert plain == v["expected_plaintext"].encode()
    msg = parse_message(plain)
    assert (msg.msg_type, msg.content, msg.msg_id) == ("text", "abcdteT", 6054768590064713728)


def test_official_json_push_decrypts() -> None:
    v = AES["doc_safe_mode_json"]
    body = json.loads(sample("encrypted/safe_mode_json_official_doc.json"))
    crypto = MessageCrypto(v["token"], v["encoding_aes_key"], v["appid"])
    plain = crypto.decrypt(body["Encrypt"], v["msg_signature"], v["timestamp"], v["nonce"])
    assert plain.decode() == v["expected_plaintext"]
    assert len(plain) == v["doc_intermediate_values"]["msg_len"]


def test_wecom_vectors_decrypt() -> None:
    v = AES["wecom_wechatpy_test"]
    crypto = MessageCrypto(v["token"], v["encoding_aes_key"], v["corp_id"])
    envelope = parse_envelope(sample("encrypted/safe_mode_wecom_text.xml"))
    assert envelope["AgentID"] == "1"
    plain = crypto.decrypt(envelope["Encrypt"], v["msg_signature"], v["timestamp"], v["nonce"])
    assert plain.decode() == v["expected_plaintext"]
    echo = v["echostr_check"]
    assert (
        crypto.decrypt(echo["echostr"], echo["msg_signature"], echo["timestamp"], echo["nonce"])
        == echo["expected_echostr_plain"].encode()
    )


@pytest.mark.parametrize(
    "vid", ["doc_safe_mode_reply", "java_sample_encrypt_1", "java_sample_encrypt_2"]
)
def test_deterministic_encrypt_vectors_match_byte_for_byte(vid: str) -> None:
    v = AES[vid]
    crypto = MessageCrypto(v["token"], v["encoding_aes_key"], v["appid"])
    encrypted = crypto.encrypt_payload(v["plaintext"].encode(), v["random16"].encode())
    assert encrypted == v["expected_encrypt"]
    assert crypto.decrypt_payload(v["expected_encrypt"]).decode() == v["plaintext"]


def test_every_sample_file_decrypts_after_wechatpy_encrypts_it(crypto: MessageCrypto) -> None:
    for path in sorted(SAMPLES.glob("*.xml")):
        xml = path.read_text(encoding="utf-8")
        body, signature = encrypt_body(TOKEN, AES_KEY, APP_ID, xml, NONCE, TS)
        envelope = parse_envelope(body)
        assert crypto.decrypt(envelope["Encrypt"], signature, TS, NONCE) == xml.encode(), path.name


@pytest.mark.parametrize("length", range(70))
def test_every_padding_length_interoperates_with_wechatpy(
    crypto: MessageCrypto, length: int
) -> None:
    # 70 consecutive lengths cover every PKCS#7 pad value 1..32 at least twice.
    content = ("社区a😀"[length % 3] * length)[:length]
    xml = text_xml(content)
    body, signature = encrypt_body(TOKEN, AES_KEY, APP_ID, xml, NONCE, TS)
    assert crypto.decrypt(parse_envelope(body)["Encrypt"], signature, TS, NONCE) == xml.encode()
    assert decrypt_reply(TOKEN, AES_KEY, APP_ID, crypto.encrypt(xml, NONCE, TS)) == xml


def test_one_instance_stays_interoperable_over_many_calls() -> None:
    # MessageCrypto keeps its cipher contexts between calls: no call may leak into the next.
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    rng = random.Random(3)
    for i in range(60):
        xml = text_xml("通知😀" * rng.randrange(40), msg_id=str(i + 1))
        assert decrypt_reply(TOKEN, AES_KEY, APP_ID, crypto.encrypt(xml, NONCE, TS)) == xml
        body, signature = encrypt_body(TOKEN, AES_KEY, APP_ID, xml, NONCE, TS)
        assert crypto.decrypt(parse_envelope(body)["Encrypt"], signature, TS, NONCE) == xml.encode()
        garbage = GARBAGE_CIPHERTEXTS["pad_inconsistent"]
        with pytest.raises(MalformedMessage):
            crypto.decrypt(garbage, msg_signature(TOKEN, TS, NONCE, garbage), TS, NONCE)
    v = AES["java_sample_encrypt_2"]
    reused = MessageCrypto(v["token"], v["encoding_aes_key"], v["appid"])
    for _ in range(3):
        encrypted = reused.encrypt_payload(v["plaintext"].encode(), v["random16"].encode())
        assert encrypted == v["expected_encrypt"]
        assert reused.decrypt_payload(encrypted).decode() == v["plaintext"]


def test_wechatpy_reply_envelope_decrypts_with_ours(crypto: MessageCrypto) -> None:
    xml = text_xml("周六上午九点集合 ]]> & <ok>")
    envelope = xmltodict.parse(
        WeChatCrypto(TOKEN, AES_KEY, APP_ID).encrypt_message(xml, NONCE, TS)
    )["xml"]
    plain = crypto.decrypt(
        envelope["Encrypt"], envelope["MsgSignature"], envelope["TimeStamp"], NONCE
    )
    assert plain.decode() == xml


def test_encrypted_reply_envelope_is_well_formed(crypto: MessageCrypto) -> None:
    hostile_nonce = "12]]><Encrypt>x</Encrypt>"
    body = crypto.encrypt("<xml/>", hostile_nonce, "1718000000")
    root = ET.fromstring(body)
    assert [child.tag for child in root] == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
    assert root.findtext("Nonce") == hostile_nonce
    assert root.findtext("TimeStamp") == "1718000000"
    assert root.findtext("MsgSignature") == wechatpy_msg_signature(
        TOKEN, "1718000000", hostile_nonce, root.findtext("Encrypt") or ""
    )


def test_same_reply_encrypts_differently_each_time(crypto: MessageCrypto) -> None:
    # The IV is fixed by the protocol; only the random prefix keeps equal replies unlinkable.
    assert crypto.encrypt_payload(b"<xml/>") != crypto.encrypt_payload(b"<xml/>")


def test_wrong_msg_signature_is_refused_before_decrypting(crypto: MessageCrypto) -> None:
    body, signature = encrypt_body(TOKEN, AES_KEY, APP_ID, text_xml("hi"), NONCE, TS)
    encrypt = parse_envelope(body)["Encrypt"]
    for bad in ("", signature.upper(), sign(TOKEN, TS, NONCE), "密" * 40):
        with pytest.raises(SignatureError) as info:
            crypto.decrypt(encrypt, bad, TS, NONCE)
        assert info.value.reason == "bad_msg_signature"
    other = MessageCrypto("otherToken", AES_KEY, APP_ID)
    assert reason_of(lambda: other.decrypt(encrypt, signature, TS, NONCE)) == "bad_msg_signature"


def test_message_for_another_app_is_refused(crypto: MessageCrypto) -> None:
    body, signature = encrypt_body(TOKEN, AES_KEY, "wx_someone_else_00", text_xml("hi"), NONCE, TS)
    with pytest.raises(SignatureError) as info:
        crypto.decrypt(parse_envelope(body)["Encrypt"], signature, TS, NONCE)
    assert (info.value.reason, info.value.status) == ("bad_app_id", 403)


def _raw_encrypt(frame: bytes, key: str = AES_KEY) -> str:
    """AES-CBC with WeChat's key and IV but no framing or padding of our own."""
    import base64

    aes = base64.b64decode(key + "=")
    encryptor = Cipher(algorithms.AES(aes), modes.CBC(aes[:16])).encryptor()
    return base64.b64encode(encryptor.update(frame) + encryptor.finalize()).decode()


def _frame(msg: bytes, *, length: int | None = None, app_id: bytes = APP_ID.encode()) -> bytes:
    size = len(msg) if length is None else length
    return b"r" * 16 + size.to_bytes(4, "big") + msg + app_id


def _padded(frame: bytes) -> bytes:
    pad = 32 - len(frame) % 32
    return frame + bytes([pad]) * pad


GARBAGE_CIPHERTEXTS = {
    "empty": "",
    "not_base64": "!!!!not base64!!!!",
    "bad_base64_padding": "abc",
    "non_ascii": "密文密文",
    "whitespace": "AAAA AAAA",
    "20_bytes": "A" * 28 + "=",
    "one_aes_block_not_32": "A" * 22 + "==",
    "pad_zero": _raw_encrypt(_frame(b"<xml/>").ljust(63, b"x") + b"\x00"),
    "pad_33": _raw_encrypt(_frame(b"<xml/>").ljust(63, b"x") + b"\x21"),
    "pad_inconsistent": _raw_encrypt(_frame(b"<xml/>").ljust(60, b"x") + b"\x05\x04\x04\x04"),
    "length_field_huge": _raw_encrypt(_padded(_frame(b"<xml/>", length=0xFFFFFFFF))),
    "length_field_past_end": _raw_encrypt(_padded(_frame(b"<xml/>", length=500))),
    "padding_only": _raw_encrypt(bytes([32]) * 32),
    "frame_shorter_than_header": _raw_encrypt(_padded(b"r" * 10)),
}


@pytest.mark.parametrize("encrypt", GARBAGE_CIPHERTEXTS.values(), ids=GARBAGE_CIPHERTEXTS.keys())
def test_garbage_ciphertext_is_a_400_never_a_crash(crypto: MessageCrypto, encrypt: str) -> None:
    signature = msg_signature(TOKEN, TS, NONCE, encrypt)
    with pytest.raises(MalformedMessage) as info:
        crypto.decrypt(encrypt, signature, TS, NONCE)
    assert (info.value.reason, info.value.status) == ("bad_ciphertext", 400)


def test_crafted_frame_with_valid_layout_decrypts(crypto: MessageCrypto) -> None:
    # The counterpart of the garbage cases: the same builder with sane values works.
    assert crypto.decrypt_payload(_raw_encrypt(_padded(_frame(b"<xml/>")))) == b"<xml/>"


def test_random_ciphertexts_only_raise_protocol_errors(crypto: MessageCrypto) -> None:
    rng = random.Random(20260101)
    for _ in range(3000):
        blob = rng.randbytes(rng.choice([0, 1, 15, 16, 31, 32, 33, 64, 96, rng.randrange(200)]))
        text = _raw_encrypt(blob) if len(blob) % 16 == 0 and rng.random() < 0.7 else blob.hex()
        with contextlib.suppress(ProtocolError):
            crypto.decrypt_payload(text)


# ---------------------------------------------------------------------------
# xmlparse.py
# ---------------------------------------------------------------------------

Check = tuple[str, str | None, Callable[[Message], object], object]

SAMPLE_CHECKS: dict[str, Check] = {
    "text.xml": (
        "text",
        None,
        lambda m: (m.content, m.msg_id),
        ("this is a test", 1234567890123456),
    ),
    "text_from_article.xml": (
        "text",
        None,
        lambda m: (m.get("MsgDataId"), m.get("Idx")),
        ("xxxx", "xxxx"),
    ),
    "image.xml": ("image", None, lambda m: (m.pic_url, m.media_id), ("this is a url", "media_id")),
    "voice.xml": ("voice", None, lambda m: (m.get("Format"), m.recognition), ("Format", None)),
    "voice_recognition.xml": ("voice", None, lambda m: (m.recognition, m.text), ("Meow~", "Meow~")),
    "video.xml": ("video", None, lambda m: m.get("ThumbMediaId"), "thumb_media_id"),
    "shortvideo.xml": ("shortvideo", None, lambda m: m.get("ThumbMediaId"), "thumb_media_id"),
    "location.xml": (
        "location",
        None,
        lambda m: (
            m.location
            and (m.location.latitude, m.location.longitude, m.location.scale, m.location.label)
        ),
        (23.134521, 113.358803, 20, "位置信息"),
    ),
    "link.xml": (
        "link",
        None,
        lambda m: (m.get("Title"), m.get("Url")),
        ("公众平台官网链接", "url"),
    ),
    "unknown_msgtype.xml": (
        "notsure",
        None,
        lambda m: (m.known_type, m.msg_id),
        (False, 1234567890123456),
    ),
    "event_subscribe.xml": ("event", "subscribe", lambda m: (m.event_key, m.scene), (None, None)),
    "event_unsubscribe.xml": ("event", "unsubscribe", lambda m: m.msg_id, None),
    "event_subscribe_qrscene.xml": (
        "event",
        "subscribe",
        lambda m: (m.scene, m.get("Ticket")),
        ("123123", "TICKET"),
    ),
    "event_scan.xml": ("event", "scan", lambda m: m.scene, "SCENE_VALUE"),
    "event_location.xml": (
        "event",
        "location",
        lambda m: m.location and (m.location.latitude, m.location.longitude, m.get("Precision")),
        (23.137466, 113.352425, "119.385040"),
    ),
    "event_click.xml": ("event", "click", lambda m: m.event_key, "EVENTKEY"),
    "event_view.xml": ("event", "view", lambda m: m.event_key, "www.qq.com"),
    "event_templatesendjobfinish.xml": (
        "event",
        "templatesendjobfinish",
        lambda m: (m.msg_id, m.get("MsgID"), m.get("Status")),
        (None, "200163836", "success"),
    ),
    "event_templatesendjobfinish_alt1.xml": (
        "event",
        "templatesendjobfinish",
        lambda m: (m.msg_id, m.get("MsgID")),
        (None, "200163836"),
    ),
    "event_templatesendjobfinish_alt2.xml": (
        "event",
        "templatesendjobfinish",
        lambda m: (m.get("MsgID"), m.get("Status")),
        ("200163840", "failed: system failed"),
    ),
    "event_masssendjobfinish.xml": (
        "event",
        "masssendjobfinish",
        lambda m: (
            m.msg_id,
            m.get("MsgID"),
            [
                i["OriginalArticleUrl"]
                for i in m.fields["CopyrightCheckResult"]["ResultList"]["item"]
            ],
            m.fields["ArticleUrlResult"]["ResultList"]["item"][0]["ArticleUrl"],
        ),
        (None, "1000001625", ["Url_1", "Url_2"], "Url"),
    ),
    "event_scancode_push.xml": (
        "event",
        "scancode_push",
        lambda m: (
            m.event_key,
            m.fields["ScanCodeInfo"]["ScanType"],
            m.fields["ScanCodeInfo"]["ScanResult"],
        ),
        ("6", "qrcode", "1"),
    ),
    "event_scancode_waitmsg.xml": (
        "event",
        "scancode_waitmsg",
        lambda m: m.fields["ScanCodeInfo"]["ScanResult"],
        "2",
    ),
    "event_pic_sysphoto.xml": (
        "event",
        "pic_sysphoto",
        lambda m: [p["PicMd5Sum"] for p in m.fields["SendPicsInfo"]["PicList"]["item"]],
        ["1b5f7c23b5bf75682a53e7b6d163e185"],
    ),
    "event_pic_photo_or_album.xml": (
        "event",
        "pic_photo_or_album",
        lambda m: (
            m.fields["SendPicsInfo"]["Count"],
            len(m.fields["SendPicsInfo"]["PicList"]["item"]),
        ),
        ("1", 1),
    ),
    "event_pic_weixin.xml": (
        "event",
        "pic_weixin",
        lambda m: len(m.fields["SendPicsInfo"]["PicList"]["item"]),
        1,
    ),
    "event_location_select.xml": (
        "event",
        "location_select",
        lambda m: (m.fields["SendLocationInfo"]["Label"], m.fields["SendLocationInfo"]["Poiname"]),
        ("广州市海珠区客村艺苑路 106号", ""),
    ),
    "event_subscribe_msg_popup.xml": (
        "event",
        "subscribe_msg_popup_event",
        lambda m: [i["SubscribeStatusString"] for i in m.fields["SubscribeMsgPopupEvent"]["List"]],
        ["accept", "reject"],
    ),
    "event_subscribe_msg_change.xml": (
        "event",
        "subscribe_msg_change_event",
        lambda m: [i["SubscribeStatusString"] for i in m.fields["SubscribeMsgChangeEvent"]["List"]],
        ["reject"],
    ),
    "event_subscribe_msg_sent.xml": (
        "event",
        "subscribe_msg_sent_event",
        lambda m: [
            (i["MsgID"], i["ErrorStatus"]) for i in m.fields["SubscribeMsgSentEvent"]["List"]
        ],
        [("1700827132819554304", "success")],
    ),
    "event_kf_create_session.xml": (
        "event",
        "kf_create_session",
        lambda m: m.get("KfAccount"),
        "test1@test",
    ),
    "event_unknown.xml": ("event", "unknown", lambda m: m.known_type, True),
}


def test_every_sample_file_has_a_check() -> None:
    assert {p.name for p in SAMPLES.glob("*.xml")} == set(SAMPLE_CHECKS)


@pytest.mark.parametrize("name", sorted(SAMPLE_CHECKS))
def test_sample_parses_to_its_type_and_fields(name: str) -> None:
    msg_type, event, getter, expected = SAMPLE_CHECKS[name]
    body = sample(name)
    msg = parse_message(body)
    assert (msg.msg_type, msg.event) == (msg_type, event)
    assert getter(msg) == expected
    # The common header agrees with wechatpy's reading of the same payload.
    theirs = wechatpy.parse_message(body)
    assert (msg.source, msg.target, msg.create_time) == (
        theirs.source,
        theirs.target,
        int(theirs.create_time.timestamp()),
    )


def test_messages_and_events_have_distinct_dedup_keys() -> None:
    text = parse_message(sample("text.xml"))
    event = parse_message(sample("event_click.xml"))
    assert text.dedup_key == "m:fromUser:1234567890123456"
    assert event.dedup_key == "e:FromUser:123456789:click:EVENTKEY"


def test_content_keeps_entities_whitespace_and_chinese() -> None:
    body = (
        "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName>"
        "<CreateTime>1</CreateTime><MsgType>TEXT</MsgType>"
        "<Content>  a &amp; b &lt;c&gt; &#20320;好\n第二行 </Content></xml>"
    ).encode()
    msg = parse_message(body)
    assert msg.msg_type == "text"
    assert msg.content == "  a & b <c> 你好\n第二行 "
    assert msg.text == "a & b <c> 你好\n第二行"


def test_declared_encoding_is_ignored_in_favour_of_utf8() -> None:
    body = ('<?xml version="1.0" encoding="GBK"?>' + text_xml("你好")).encode("utf-8")
    assert parse_message(body).content == "你好"


def test_parsed_fields_are_read_only() -> None:
    msg = parse_message(sample("text.xml"))
    with pytest.raises(TypeError):
        msg.fields["Content"] = "changed"  # type: ignore[index]


def test_empty_event_key_is_none() -> None:
    body = sample("event_click.xml").replace(b"EVENTKEY", b"")
    assert parse_message(body).event_key is None


XXE = (
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType>text</MsgType><Content>&xxe;</Content></xml>"
)
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">'
        % (i, b"".join(b"&lol%s;" % (b"" if i == 1 else b"%d" % (i - 1)) for _ in range(10)))
        for i in range(1, 10)
    )
    + b"]><xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType>text</MsgType><Content>&lol9;</Content></xml>"
)
EXTERNAL_DTD = (
    b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml><ToUserName>a</ToUserName></xml>'
)
PARAMETER_ENTITY = (
    b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>'
    b"<xml><ToUserName>a</ToUserName></xml>"
)


@pytest.mark.parametrize(
    "body",
    [XXE, BILLION_LAUGHS, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["xxe", "billion_laughs", "external_dtd", "parameter_entity"],
)
@pytest.mark.parametrize("parse", [parse_message, parse_envelope], ids=["message", "envelope"])
def test_any_dtd_is_refused(body: bytes, parse: Callable[[bytes], object]) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse(body)
    assert (info.value.reason, info.value.status) == ("forbidden_dtd", 400)


def test_undeclared_entity_is_a_syntax_error() -> None:
    assert (
        reason_of(lambda: parse_message(text_xml("x").replace("<![CDATA[x]]>", "&xxe;").encode()))
        == "bad_xml"
    )


def test_cdata_breakout_in_user_text_cannot_forge_a_field() -> None:
    # What a naive template (wechatpy's fields.py) produces when it echoes "]]>" text.
    attack = "hi]]></Content><MsgType><![CDATA[event]]></MsgType><Content><![CDATA["
    assert reason_of(lambda: parse_message(text_xml(attack).encode())) == "duplicate_field"
    spoof = "hi]]></Content><FromUserName><![CDATA[o_admin]]></FromUserName><Content><![CDATA["
    assert reason_of(lambda: parse_message(text_xml(spoof).encode())) == "duplicate_field"


@pytest.mark.parametrize(
    "field", ["MsgType", "FromUserName", "ToUserName", "CreateTime", "Content", "MsgId"]
)
def test_duplicated_top_level_field_is_refused(field: str) -> None:
    root = ET.fromstring(sample("text.xml"))
    element = root.find(field)
    assert element is not None
    root.append(element)
    assert reason_of(lambda: parse_message(ET.tostring(root))) == "duplicate_field"


def test_envelope_with_two_encrypt_fields_is_refused() -> None:
    body = b"<xml><ToUserName>gh</ToUserName><Encrypt>AAAA</Encrypt><Encrypt>BBBB</Encrypt></xml>"
    assert reason_of(lambda: parse_envelope(body)) == "duplicate_field"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"\xff\xfe\x00<\x00x",
        sample("text.xml")[:-10],
        b"<xml><Content>\xff\xfe</Content></xml>",
        sample("text.xml") + b"<xml></xml>",
        b"<xml><a></b></xml>",
        b'{"ToUserName": "gh"}',
    ],
    ids=[
        "empty",
        "text",
        "utf16_bytes",
        "truncated",
        "bad_utf8",
        "two_roots",
        "mismatched",
        "json",
    ],
)
def test_syntax_errors_are_bad_xml(body: bytes) -> None:
    assert reason_of(lambda: parse_message(body)) == "bad_xml"


def test_root_must_be_xml() -> None:
    body = sample("text.xml").replace(b"<xml>", b"<msg>").replace(b"</xml>", b"</msg>")
    assert reason_of(lambda: parse_message(body)) == "bad_xml"


@pytest.mark.parametrize("field", ["ToUserName", "FromUserName", "CreateTime", "MsgType"])
def test_missing_required_field_is_refused(field: str) -> None:
    root = ET.fromstring(sample("text.xml"))
    element = root.find(field)
    assert element is not None
    root.remove(element)
    assert reason_of(lambda: parse_message(ET.tostring(root))) == "missing_field"


@pytest.mark.parametrize(
    "replacement",
    [
        b"<FromUserName></FromUserName>",
        b"<FromUserName><![CDATA[]]></FromUserName>",
        b"<FromUserName><a>x</a></FromUserName>",
    ],
)
def test_empty_or_structured_sender_is_missing(replacement: bytes) -> None:
    body = sample("text.xml").replace(
        b"<FromUserName><![CDATA[fromUser]]></FromUserName>", replacement
    )
    assert reason_of(lambda: parse_message(body)) == "missing_field"


def test_envelope_needs_encrypt_and_to_user() -> None:
    assert (
        reason_of(lambda: parse_envelope(b"<xml><ToUserName>gh</ToUserName></xml>"))
        == "missing_field"
    )
    assert (
        reason_of(lambda: parse_envelope(b"<xml><Encrypt>AAAA</Encrypt></xml>")) == "missing_field"
    )


def test_compat_envelope_with_nested_plaintext_fields_is_read() -> None:
    body = sample("event_scancode_push.xml").replace(
        b"</xml>", b"<Encrypt><![CDATA[AAAA]]></Encrypt></xml>"
    )
    envelope = parse_envelope(body)
    assert envelope["Encrypt"] == "AAAA"
    assert "ScanCodeInfo" not in envelope


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<CreateTime>1348831860", b"<CreateTime>abc"),
        (b"<CreateTime>1348831860", b"<CreateTime>-1348831860"),
        (b"<CreateTime>1348831860", b"<CreateTime>1.3e9"),
        (b"<CreateTime>1348831860", "<CreateTime>１３４８".encode()),
        (b"<CreateTime>1348831860", b"<CreateTime>" + b"9" * 5000),
        (b"<MsgId>1234567890123456", b"<MsgId>12a"),
        (b"<MsgId>1234567890123456", b"<MsgId>"),
        (b"<MsgId>1234567890123456</MsgId>", b"<MsgId><a>1</a></MsgId>"),
    ],
)
def test_non_numeric_create_time_or_msg_id_is_refused(old: bytes, new: bytes) -> None:
    body = sample("text.xml").replace(old, new)
    assert body != sample("text.xml")
    assert reason_of(lambda: parse_message(body)) == "bad_number"


def test_event_msg_id_is_kept_as_text_even_if_odd() -> None:
    body = sample("event_templatesendjobfinish.xml").replace(b"200163836", b"not-a-number")
    msg = parse_message(body)
    assert (msg.msg_id, msg.get("MsgID")) == (None, "not-a-number")


def _nested(depth: int) -> bytes:
    inner = "<a>" * (depth - 1) + "x" + "</a>" * (depth - 1)
    return text_xml("hi").replace("<Content>", f"<Extra>{inner}</Extra><Content>").encode()


def test_nesting_up_to_the_bound_is_accepted_and_beyond_refused() -> None:
    # <xml> is level 1, <Extra> level 2, so depth-1 further <a> levels reach `depth`.
    assert parse_message(_nested(MAX_DEPTH - 1)).content == "hi"
    assert reason_of(lambda: parse_message(_nested(MAX_DEPTH))) == "too_deep"
    assert reason_of(lambda: parse_message(_nested(100_000))) == "too_deep"


def test_repeated_nested_elements_become_lists() -> None:
    one = parse_message(sample("event_subscribe_msg_change.xml"))
    assert isinstance(one.fields["SubscribeMsgChangeEvent"]["List"], list)
    body = text_xml("hi").replace(
        "<Content>", "<Extra><k>1</k><k>2</k><k>3</k><j>4</j></Extra><Content>"
    )
    extra = parse_message(body.encode()).fields["Extra"]
    assert extra == {"k": ["1", "2", "3"], "j": "4"}


def test_mutated_samples_parse_or_fail_cleanly() -> None:
    rng = random.Random(7)
    bodies = [p.read_bytes() for p in sorted(SAMPLES.glob("*.xml"))]
    for _ in range(3000):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(body))
            if op < 0.4:
                body[pos] = rng.choice(b"<>/![]&;x\x00\xff ")
            elif op < 0.7:
                del body[pos : pos + rng.randint(1, 20)]
            else:
                body[pos:pos] = rng.choice(
                    [b"<MsgType>x</MsgType>", b"<a>", b"]]>", b"<!DOCTYPE x>", b"&#0;"]
                )
        with contextlib.suppress(MalformedMessage):
            parse_message(bytes(body))


# ---------------------------------------------------------------------------
# replies.py
# ---------------------------------------------------------------------------

RESIDENT = "o_resident_0001"
ACCOUNT = "gh_0123456789ab"


def _render(reply: TextReply | ArticlesReply | ImageReply) -> str:
    return render(reply, to_user=RESIDENT, from_user=ACCOUNT, create_time=1718000000)


def test_cdata_keeps_any_text_inside_one_element() -> None:
    for text in ["]]>", "a]]>b]]>c", "]]]]>", "<![CDATA[x]]>", "&amp; <b>", ""]:
        assert (ET.fromstring(f"<v>{cdata(text)}</v>").text or "") == text


HACK = "你好]]><MsgType><![CDATA[event]]></MsgType><Content>hack"


def test_user_text_echoed_in_a_reply_cannot_break_out() -> None:
    body = _render(TextReply(f"您说：{HACK}"))
    root = ET.fromstring(body)
    assert len(root.findall("MsgType")) == 1
    assert root.findtext("MsgType") == "text"
    assert root.findtext("Content") == f"您说：{HACK}"
    theirs = wechatpy.parse_message(body)
    assert (theirs.type, theirs.content) == ("text", f"您说：{HACK}")
    ours = parse_message(body.encode())
    assert (ours.source, ours.target, ours.content) == (ACCOUNT, RESIDENT, f"您说：{HACK}")


def test_text_reply_has_the_passive_reply_shape() -> None:
    root = ET.fromstring(_render(TextReply("收到")))
    assert [c.tag for c in root] == [
        "ToUserName",
        "FromUserName",
        "CreateTime",
        "MsgType",
        "Content",
    ]
    assert (root.findtext("ToUserName"), root.findtext("FromUserName")) == (RESIDENT, ACCOUNT)
    assert root.findtext("CreateTime") == "1718000000"


def _as_dict(xml: str) -> dict[str, Any]:
    tree: dict[str, Any] = xmltodict.parse(xml)["xml"]
    tree.pop("CreateTime")
    return tree


def test_article_reply_matches_wechatpy_rendering() -> None:
    article = Article(
        title="周六清洁活动",
        description="9点集合 & 带手套",
        url="https://x.cn/a?b=1&c=2",
        pic_url="https://x.cn/p.jpg",
    )
    theirs = WeArticlesReply(source=ACCOUNT, target=RESIDENT)
    theirs.add_article(
        {
            "title": article.title,
            "description": article.description,
            "url": article.url,
            "image": article.pic_url,
        }
    )
    assert _as_dict(_render(ArticlesReply(article))) == _as_dict(theirs.render())


def test_article_fields_cannot_break_out() -> None:
    hostile = "活动]]></Title><Url>https://evil.example</Url><Title><![CDATA["
    root = ET.fromstring(_render(ArticlesReply(Article(title=hostile, url="https://x.cn"))))
    assert root.findtext("Articles/item/Title") == hostile
    assert [u.text for u in root.iter("Url")] == ["https://x.cn"]


def test_image_reply_matches_wechatpy_rendering() -> None:
    theirs = WeImageReply(source=ACCOUNT, target=RESIDENT, media_id="MEDIA_1").render()
    assert _as_dict(_render(ImageReply("MEDIA_1"))) == _as_dict(theirs)


def test_characters_xml_cannot_carry_are_dropped_not_fatal() -> None:
    body = _render(TextReply("a\x00b\x07c\x1bd\ud800e\ufffff\tg\nh"))
    body.encode("utf-8")  # a lone surrogate would make this raise
    assert ET.fromstring(body).findtext("Content") == "abcdef\tg\nh"


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def test_short_text_is_unchanged() -> None:
    assert fit_text("您好") == "您好"
    exact = "社" * (MAX_TEXT_BYTES // 3) + "ab"
    assert _utf8_len(exact) == MAX_TEXT_BYTES
    assert fit_text(exact) == exact


def test_long_chinese_text_is_cut_at_a_character_with_the_hint() -> None:
    long = "".join(f"第{i}条：社区活动通知。" for i in range(200))
    assert _utf8_len(long) > 3000
    fitted = fit_text(long)
    assert _utf8_len(fitted) <= MAX_TEXT_BYTES
    assert fitted.endswith(TRUNCATION_HINT)
    kept = fitted.removesuffix(TRUNCATION_HINT)
    assert long.startswith(kept)
    # Not over-cut: at most one 3-byte character is lost to alignment.
    assert _utf8_len(kept) >= MAX_TEXT_BYTES - _utf8_len(TRUNCATION_HINT) - 3


def test_one_byte_over_is_truncated() -> None:
    over = "a" * (MAX_TEXT_BYTES + 1)
    fitted = fit_text(over)
    assert fitted.endswith(TRUNCATION_HINT) and _utf8_len(fitted) <= MAX_TEXT_BYTES


def test_rendered_long_reply_content_fits_wechat_limit() -> None:
    content = ET.fromstring(_render(TextReply("通知" * 2000))).findtext("Content") or ""
    assert _utf8_len(content) <= MAX_TEXT_BYTES and content.endswith(TRUNCATION_HINT)


BUDGET = MAX_TEXT_BYTES - len(TRUNCATION_HINT.encode())


@pytest.mark.parametrize("shift", range(8))
def test_emoji_at_the_boundary_is_kept_whole_or_dropped(shift: int) -> None:
    text = "a" * (BUDGET - shift) + "😀" * 100
    kept = fit_text(text).removesuffix(TRUNCATION_HINT)
    assert text.startswith(kept)
    assert kept.endswith("😀" if shift >= 4 else "a")
    assert _utf8_len(kept) > BUDGET - 4


FAMILY = "👨\u200d👩\u200d👧"
THUMB_TONE = "👍🏽"
KEYCAP = "1\ufe0f\u20e3"
FLAG_PAIR = "🇨🇳🇺🇸"


@pytest.mark.parametrize(
    "sequence", [FAMILY, THUMB_TONE, KEYCAP, "❤\ufe0f"], ids=["zwj", "skin_tone", "keycap", "vs16"]
)
@pytest.mark.parametrize("shift", range(1, 19))
def test_emoji_sequence_across_the_boundary_is_never_split(sequence: str, shift: int) -> None:
    text = "a" * (BUDGET - _utf8_len(sequence) + shift) + sequence + "b" * 100
    kept = fit_text(text).removesuffix(TRUNCATION_HINT)
    assert text.startswith(kept)
    assert kept.endswith(("a", sequence))
    assert _utf8_len(kept + TRUNCATION_HINT) <= MAX_TEXT_BYTES


@pytest.mark.parametrize("shift", range(9))
def test_flags_are_never_split(shift: int) -> None:
    text = "a" * (BUDGET - 8 - shift) + FLAG_PAIR * 5
    kept = fit_text(text).removesuffix(TRUNCATION_HINT)
    flags = kept.lstrip("a")
    assert len(flags) % 2 == 0 and FLAG_PAIR.startswith(flags[:2])


def test_tiny_limit_still_respected() -> None:
    fitted = fit_text("社区" * 100, max_bytes=10)
    assert _utf8_len(fitted) <= 10 and "社区社区社区".startswith(fitted)


def test_encrypted_reply_round_trips_through_wechatpy(crypto: MessageCrypto) -> None:
    rendered = _render(TextReply(f"已收到：{HACK}"))
    body = crypto.encrypt(rendered, NONCE, TS)
    plain = decrypt_reply(TOKEN, AES_KEY, APP_ID, body)
    assert plain == rendered
    assert wechatpy.parse_message(plain).content == f"已收到：{HACK}"
