"""WeCom (企业微信) group-robot webhook client on aiohttp, for staff alerts.

A group robot is one URL, ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY``,
that takes one POST per message: ``{"msgtype": "text", "text": {"content": ...}}`` or
``{"msgtype": "markdown", "markdown": {"content": ...}}``, and answers
``{"errcode": 0, "errmsg": "ok"}`` (protocol reference, section 1.6; wechatpy does
not wrap it). WeCom allows 20 messages a minute per robot and a text of 2048 bytes;
markdown content may be 4096 bytes (the WeCom robot doc's figure, *not* in our
reference).

Policy:

* One request per call, no retry: the caller (the alert delivery) retries with
  backoff. :class:`RobotRateLimited` means "wait a minute", :class:`InvalidRobot`
  means "fix the grid's configuration, retrying will not help",
  :class:`RobotTransportError` means the message may or may not have arrived.
* Content longer than the limit is cut at a character boundary (never inside a
  UTF-8 sequence or an emoji sequence) and ends in ``…``, so the start of an alert
  still reaches the group instead of a refusal.
* Only ``http``/``https`` URLs with a ``key`` are accepted, redirects are not
  followed (a POST body is not sent anywhere the configured URL did not name).
* The key is a secret: anyone holding the URL can post to the group. It is never
  logged nor put in an exception; logs and ``repr`` show :func:`mask_webhook_url`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal, NoReturn
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import aiohttp

from bot.errors import WeChatAPIError
from bot.wechat.api_errors import TRANSPORT_ERRCODE, APITransportError
from bot.wechat.replies import _grapheme_boundary

logger = logging.getLogger("bot.wechat.wecom")

API_NAME = "wecom_robot"  # the observer's and the fake's label for this endpoint
TEXT_MAX_BYTES = 2048
MARKDOWN_MAX_BYTES = 4096
RATE_LIMIT_PER_MINUTE = 20
RATE_LIMIT_ERRCODE = 45009
INVALID_ROBOT_ERRCODE = 93000
CUT_MARKER = "…"

_SCHEMES = frozenset({"http", "https"})
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


class RobotError(WeChatAPIError):
    """A WeCom robot refused a message; ``errcode``/``errmsg`` are WeCom's.

    The base of every robot failure, so a caller that does not care which one
    catches this class (or :class:`~bot.errors.WeChatAPIError` for any API).
    """


class RobotRateLimited(RobotError):
    """45009: more than 20 messages in a minute to this robot. Retry after ``retry_after`` s."""

    retry_after = 60.0


class InvalidRobot(RobotError):
    """93000: the webhook URL or its key is invalid (robot removed?). Retrying will not help."""


class RobotTransportError(APITransportError, RobotError):
    """No usable answer: timeout, connection error, HTTP error status, non-JSON body.

    ``errcode`` is -2 (:data:`~bot.wechat.api_errors.TRANSPORT_ERRCODE`). It is
    both an :class:`~bot.wechat.api_errors.APITransportError` and a :class:`RobotError`.
    """


def robot_error_for(errcode: int, errmsg: str) -> RobotError:
    """The exception for a robot answer with a non-zero ``errcode``."""
    if errcode == TRANSPORT_ERRCODE:
        return RobotTransportError(errmsg, api=API_NAME)
    if errcode == RATE_LIMIT_ERRCODE:
        return RobotRateLimited(errcode, errmsg, api=API_NAME)
    if errcode == INVALID_ROBOT_ERRCODE:
        return InvalidRobot(errcode, errmsg, api=API_NAME)
    return RobotError(errcode, errmsg, api=API_NAME)


def check_webhook_url(url: str) -> str:
    """``url`` if it is a usable robot webhook URL, else :class:`ValueError`.

    Usable: ``http`` or ``https``, a host, and a non-empty ``key`` query parameter.
    The error text never repeats the URL (it may carry the key).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        raise ValueError("the robot webhook URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        shown = repr(scheme) if scheme.isalnum() else "another scheme"
        raise ValueError(f"a robot webhook URL must be http(s), not {shown}")
    if not host:
        raise ValueError("the robot webhook URL has no host")
    if not _keys_of(url):
        raise ValueError("the robot webhook URL has no key= parameter")
    return url


def mask_webhook_url(url: str) -> str:
    """``scheme://host[:port]/path?key=***``: names the robot's endpoint, never its key."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "an unparseable URL"
    shown_host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown_host}{port}{parts.path}?key=***"


def fit_bytes(content: str, max_bytes: int, marker: str = CUT_MARKER) -> str:
    """``content`` if it fits in ``max_bytes`` UTF-8 bytes, else its start plus ``marker``.

    The cut falls on a character boundary that splits no emoji sequence.
    (:func:`bot.wechat.replies.fit_text` does the same for passive replies, but
    its hint tells a resident to reply "帮助", which means nothing in a staff group.)
    """
    if len(content) * 4 <= max_bytes:
        return content
    encoded = content.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return content
    budget = max_bytes - len(marker.encode("utf-8"))
    if budget < 0:
        marker, budget = "", max_bytes
    cut = budget
    while cut > 0 and encoded[cut] & 0xC0 == 0x80:  # step back to a character start
        cut -= 1
    kept = encoded[:cut].decode("utf-8", "surrogatepass")
    kept = kept[: _grapheme_boundary(content, len(kept))]
    return kept.rstrip() + marker


class WeComRobot:
    """One WeCom group robot, reached through its webhook URL.

    ``observer(api_name, errcode)`` is called once per HTTP request with
    ``"wecom_robot"`` and 0 for a success, WeCom's errcode otherwise, -2 when no
    usable answer came (as :class:`~bot.wechat.client.WeChatClient` does).
    ``timeout`` is the total deadline of one request, in seconds.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        webhook_url: str,
        *,
        timeout: float = 5.0,
        observer: Callable[[str, int], None] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._session = session
        self._url = check_webhook_url(webhook_url)
        self._keys = _keys_of(webhook_url)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._observer = observer
        self.masked_url = mask_webhook_url(webhook_url)

    def __repr__(self) -> str:
        return f"WeComRobot({self.masked_url!r})"

    async def send_text(self, content: str) -> None:
        """Post a plain text (cut to 2048 bytes)."""
        await self._send("text", content, TEXT_MAX_BYTES)

    async def send_markdown(self, content: str) -> None:
        """Post a markdown message (WeCom's subset; cut to 4096 bytes)."""
        await self._send("markdown", content, MARKDOWN_MAX_BYTES)

    # -- plumbing -------------------------------------------------------------
    async def _send(self, msgtype: str, content: str, max_bytes: int) -> None:
        if not content:
            raise ValueError("a robot message needs content")
        fitted = fit_bytes(content, max_bytes)
        if fitted != content:
            logger.info(
                "WeCom robot %s: %s cut to %d of %d bytes",
                self.masked_url,
                msgtype,
                len(fitted.encode("utf-8", "surrogatepass")),
                len(content.encode("utf-8", "surrogatepass")),
            )
        body = {"msgtype": msgtype, msgtype: {"content": fitted}}
        raw = await self._post(body)
        self._check(raw)
        logger.debug("WeCom robot %s: %s delivered", self.masked_url, msgtype)

    async def _post(self, body: Mapping[str, Any]) -> bytes:
        # ensure_ascii=False: the content goes as UTF-8, as WeChat's APIs expect.
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass"
        )
        try:
            async with self._session.post(
                self._url,
                data=data,
                headers=_JSON_HEADERS,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            self._transport_failure(f"no answer within {self._timeout.total} s")
        except aiohttp.ClientError as exc:
            self._transport_failure(f"{type(exc).__name__}: {exc}")
        if status != 200:
            self._transport_failure(f"HTTP {status}")
        return raw

    def _check(self, raw: bytes) -> None:
        try:
            answer = json.loads(raw)
        except ValueError:  # includes UnicodeDecodeError
            self._transport_failure("answer is not JSON")
        if not isinstance(answer, dict):
            self._transport_failure("answer is not a JSON object")
        errcode = answer.get("errcode")
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            self._transport_failure("answer has no integer errcode")
        if errcode != 0:
            errmsg = self._redact(str(answer.get("errmsg", "")))
            self._observe(errcode)
            logger.warning(
                "WeCom robot %s failed: errcode=%s errmsg=%s", self.masked_url, errcode, errmsg
            )
            raise robot_error_for(errcode, errmsg)
        self._observe(0)

    def _transport_failure(self, detail: str) -> NoReturn:
        detail = self._redact(detail)
        self._observe(TRANSPORT_ERRCODE)
        logger.warning(
            "WeCom robot %s failed: errcode=%s errmsg=%s",
            self.masked_url,
            TRANSPORT_ERRCODE,
            detail,
        )
        # "from None": the original exception's text may quote the URL and its key.
        raise RobotTransportError(detail, api=API_NAME) from None

    def _redact(self, text: str) -> str:
        for key in self._keys:
            for form in (key, quote(key, safe=""), quote_plus(key)):
                text = text.replace(form, "***")
        return text

    def _observe(self, errcode: int) -> None:
        if self._observer is not None:
            self._observer(API_NAME, errcode)


async def send_robot_message(
    session: aiohttp.ClientSession,
    webhook_url: str,
    content: str,
    *,
    msgtype: Literal["text", "markdown"] = "text",
    timeout: float = 5.0,
    observer: Callable[[str, int], None] | None = None,
) -> None:
    """Post one message to the robot at ``webhook_url``: the function form of :class:`WeComRobot`.

    Unlike the class, a URL that :func:`check_webhook_url` refuses raises
    :class:`InvalidRobot` (errcode 93000, as WeCom answers a bad key), so a caller
    that handles :class:`~bot.errors.BotError` treats a misconfigured grid like a
    removed robot: no retry can cure it. No request is made then.
    """
    try:
        robot = WeComRobot(session, webhook_url, timeout=timeout, observer=observer)
    except ValueError as exc:
        if timeout <= 0:
            raise
        logger.warning(
            "WeCom robot %s refused before sending: %s", mask_webhook_url(webhook_url), exc
        )
        raise InvalidRobot(INVALID_ROBOT_ERRCODE, str(exc), api=API_NAME) from None
    if msgtype == "markdown":
        await robot.send_markdown(content)
    else:
        await robot.send_text(content)


def _keys_of(url: str) -> tuple[str, ...]:
    """The non-empty ``key`` values in ``url``'s query, decoded and as written."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return ()
    decoded = [value for name, value in parse_qsl(query) if name == "key" and value]
    written = [
        value
        for name, _, value in (pair.partition("=") for pair in query.split("&"))
        if name == "key" and value
    ]
    return tuple(dict.fromkeys(decoded + written))
