"""Build signed and encrypted WeChat requests, and read encrypted replies, with wechatpy.

These deliberately use the SDK rather than ``bot.wechat``: tests that go through them
check our protocol code against an independent implementation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import xmltodict
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import WeChatSigner

# The shared/ folder that sits beside the repository checkout (locally and in CI).
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "wechat_samples"

_TO_USER = re.compile(r"<ToUserName><!\[CDATA\[(.*?)\]\]></ToUserName>", re.S)


def sample(name: str) -> bytes:
    """The bytes of one file under ``shared/wechat_samples`` (e.g. ``"text.xml"``)."""
    return (SAMPLES / name).read_bytes()


def vectors() -> dict[str, Any]:
    """``safe_mode_vectors.json``, with the AES vectors indexed by id."""
    data: dict[str, Any] = json.loads(sample("safe_mode_vectors.json"))
    data["aes_by_id"] = {v["id"]: v for v in data["aes_vectors"]}
    return data


def sign(token: str, timestamp: str, nonce: str) -> str:
    """The URL ``signature`` WeChat sends with every request."""
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return str(signer.signature)


def wechatpy_msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, encrypt)
    return str(signer.signature)


def encrypt_body(
    token: str, aes_key: str, app_id: str, xml: str, nonce: str, timestamp: str
) -> tuple[bytes, str]:
    """A safe-mode POST body carrying ``xml``, and its ``msg_signature`` query parameter.

    The body has the shape WeChat sends in safe mode: ``ToUserName`` (copied from the
    inner message when it has one) and ``Encrypt``.
    """
    key = WeChatCrypto(token, aes_key, app_id).key
    encrypt = PrpCrypto(key).encrypt(xml, app_id).decode("ascii")
    found = _TO_USER.search(xml)
    to_user = found.group(1) if found else "gh_0123456789ab"
    body = (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    )
    return body.encode("utf-8"), wechatpy_msg_signature(token, timestamp, nonce, encrypt)


def decrypt_reply(token: str, aes_key: str, app_id: str, body: str | bytes) -> str:
    """The plaintext reply XML inside an encrypted reply ``body``.

    wechatpy checks the reply's own ``MsgSignature`` (over its ``TimeStamp`` and
    ``Nonce``) and the app id, as WeChat does.
    """
    envelope = xmltodict.parse(body)["xml"]
    crypto = WeChatCrypto(token, aes_key, app_id)
    plain: str = crypto.decrypt_message(
        {"Encrypt": envelope["Encrypt"]},
        envelope["MsgSignature"],
        envelope["TimeStamp"],
        envelope["Nonce"],
    )
    return plain
