"""``GET|POST /wechat``: verify, decrypt, parse, answer once, render, encrypt.

Each hop happens here once; handlers only ever see a typed :class:`Message`.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from bot import keys
from bot.errors import MalformedMessage, ProtocolError
from bot.wechat.replies import render
from bot.wechat.signature import check_signature, check_timestamp
from bot.wechat.xmlparse import parse_envelope, parse_message

log = logging.getLogger("bot.webhook")

# WeChat reads this body as "received, nothing to say" (a passive reply of "success").
SUCCESS = b"success"
_XML = "application/xml"


def _refuse(request: web.Request, exc: ProtocolError) -> web.Response:
    metrics = request.app[keys.METRICS]
    metrics.outcome["forbidden" if exc.status == 403 else "bad_request"].inc()
    # Peer address and reason only: bodies may carry residents' messages.
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, exc)
    return web.Response(status=exc.status, text=exc.reason)


def _check_url_signature(request: web.Request) -> tuple[str, str]:
    config = request.app[keys.CONFIG]
    query = request.query
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    check_timestamp(timestamp, time.time(), config.webhook.timestamp_skew)
    check_signature(config.wechat.token, query.get("signature", ""), timestamp, nonce)
    return timestamp, nonce


async def verify(request: web.Request) -> web.Response:
    """WeChat's server verification: echo ``echostr`` when the signature holds."""
    try:
        _check_url_signature(request)
        echostr = request.query.get("echostr")
        if not echostr:
            raise MalformedMessage("missing_echostr")
    except ProtocolError as exc:
        return _refuse(request, exc)
    request.app[keys.METRICS].outcome["verified"].inc()
    log.info("server verification from %s succeeded", request.remote)
    return web.Response(text=echostr)


async def receive(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[keys.METRICS]
    limit = app[keys.CONFIG].webhook.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        metrics.outcome["too_large"].inc()
        log.warning("refused a %s-byte body from %s", request.content_length, request.remote)
        return web.Response(status=413, text="too_large")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.outcome["too_large"].inc()
        log.warning("refused an oversized chunked body from %s", request.remote)
        return web.Response(status=413, text="too_large")
    crypto = app.get(keys.CRYPTO)
    try:
        timestamp, nonce = _check_url_signature(request)
        mode = request.query.get("encrypt_type", "raw")
        if mode == "aes":
            if crypto is None:
                raise MalformedMessage("aes_not_configured", "set [wechat] encoding_aes_key")
            envelope = parse_envelope(body)
            xml = crypto.decrypt(
                envelope["Encrypt"], request.query.get("msg_signature", ""), timestamp, nonce
            )
        elif mode == "raw":
            xml = body
        else:
            raise MalformedMessage("bad_encrypt_type", mode[:16])
        msg = parse_message(xml)
    except ProtocolError as exc:
        return _refuse(request, exc)

    reply, outcome = await app[keys.GUARD].answer(msg)
    metrics.outcome[outcome].inc()
    if reply is None:
        return web.Response(body=SUCCESS, content_type="text/plain")
    now = int(time.time())
    text = render(reply, to_user=msg.source, from_user=msg.target, create_time=now)
    if mode == "aes" and crypto is not None:
        text = crypto.encrypt(text, nonce, str(now))
    return web.Response(text=text, content_type=_XML)


def setup(app: web.Application) -> None:
    app.router.add_get("/wechat", verify)
    app.router.add_post("/wechat", receive)
