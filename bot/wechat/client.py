"""Outbound WeChat Official Account API client on aiohttp.

wechatpy's client is synchronous and its token handling is unsafe for us
(unbounded 40001 retry recursion, no timeout on the token fetch, no lock; see
the protocol reference, section 1.5), so the few endpoints the bot needs are
called here directly.

Token policy:

* The token comes from ``/cgi-bin/stable_token``: in normal mode it returns the
  same token while that is valid, so several processes can share an account
  without rotating each other's token away (reference section 2.5).
* It is cached until ``min(300 s, expires_in / 2)`` before it expires. 300 s
  because the platform renews a stable token 5 minutes before expiry, so asking
  inside that window gets the renewed one; halving caps the margin because a
  normal-mode answer's ``expires_in`` is the *remaining* life, which can be as
  low as 300 s, and a margin >= expires_in would refetch on every call.
* Concurrent callers share one fetch in flight (single-flight). With a shared
  :class:`~bot.coordination.base.TokenStore` (several server processes), the
  token lives there: a process reads it, and only the one process holding the
  store's refresh lock asks WeChat; the others wait for it and read its answer.
* When a call is refused for its token (40001 / 40014 / 42001) the client asks
  again in normal mode first: that answers the new token if someone else
  (another process, a forced refresh) replaced ours, or a fresh one if ours
  expired, without spending one of the 20 forced refreshes a day. Only if
  WeChat hands back the token it just refused does the client force a refresh,
  at most once per 30 s (WeChat's own spacing rule); inside those 30 s it
  reuses the token the last forced refresh gave. The call is then retried
  once; a second refusal raises :class:`AccessTokenInvalid`. No other failure
  is retried: -1 (system busy) and transport errors go to the caller.

Neither the access token nor the app secret is ever logged: the token travels
only in the query string of requests this module builds, the secret only in the
stable_token body, and both are scrubbed from any error text we keep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import aiohttp

from bot.coordination.base import SharedToken, TokenStore
from bot.errors import WeChatAPIError
from bot.wechat.api_errors import (
    TRANSPORT_ERRCODE,
    AccessTokenInvalid,
    APITransportError,
    error_for,
)

logger = logging.getLogger("bot.wechat.client")

T = TypeVar("T")

SHOWQRCODE_URL = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
MAX_REFRESH_MARGIN = 300.0  # seconds before expiry at which a cached token is refetched
FORCE_REFRESH_SPACING = 30.0  # WeChat allows a forced stable_token refresh every 30 s
MASS_SEND_MIN_OPENIDS = 2
MASS_SEND_MAX_OPENIDS = 10_000
CLIENTMSGID_MAX_BYTES = 64
QR_SCENE_STR_MAX_BYTES = 64
QR_MAX_EXPIRE_SECONDS = 2_592_000  # 30 days

# Content types under which an endpoint that normally answers binary data
# (media/get) sends its JSON instead: errors, and a video's download URL.
_JSON_CONTENT_TYPES = frozenset({"application/json", "text/plain", "text/json"})
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class QRCode:
    """A parametric QR code. ``expire_seconds`` is None for a permanent one."""

    ticket: str
    url: str
    expire_seconds: int | None
    image_url: str


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float
    expires_at: float


class WeChatClient:
    """The WeChat API calls the bot makes, with one shared access token.

    ``observer(api_name, errcode)`` is called once per HTTP request: 0 for a
    success, WeChat's errcode otherwise, -2 when no usable answer came.
    ``clock`` is a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: str,
        app_secret: str,
        base_url: str = "https://api.weixin.qq.com",
        timeout: float = 5.0,
        observer: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tokens: TokenStore | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._session = session
        self._app_id = app_id
        self._app_secret = app_secret
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._observer = observer
        self._clock = clock
        self._tokens = tokens
        self._wall_clock = wall_clock
        self._token: _Token | None = None
        self._fetching: asyncio.Task[_Token] | None = None
        self._last_forced_at: float | None = None

    def __repr__(self) -> str:
        return f"WeChatClient(app_id={self._app_id!r}, base_url={self._base_url!r})"

    # -- access token ---------------------------------------------------------
    async def access_token(self) -> str:
        """A valid access token, fetched (once, for all concurrent callers) if needed."""
        cached = self._token
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        try:
            return (await self._shared_fetch(force=False)).value
        except WeChatAPIError:
            # Refreshing early failed, but the token we hold has not expired
            # yet: keep using it rather than failing the caller's send.
            if cached is not None and self._clock() < cached.expires_at:
                return cached.value
            raise

    async def _shared_fetch(self, *, force: bool, avoid: str | None = None) -> _Token:
        """Join the token fetch in flight, or start one.

        The fetch runs as its own task, shielded, so a caller that is cancelled
        does not cancel it for the others waiting on it.
        """
        task = self._fetching
        if task is None:
            if force:
                self._last_forced_at = self._clock()
            task = asyncio.create_task(self._fetch_token(force=force, avoid=avoid))
            task.add_done_callback(_retrieve_exception)
            self._fetching = task
        return await asyncio.shield(task)

    async def _fetch_token(self, *, force: bool, avoid: str | None = None) -> _Token:
        """A fresh token: from the shared store if another process has one, else from WeChat.

        ``avoid`` is a token WeChat just refused: never adopt it from the store.
        """
        try:
            store = self._tokens
            if store is None:
                return await self._fetch_from_wechat(force=force)
            if not force and (shared := self._adopt(await store.get(), avoid)) is not None:
                return shared
            async with store.refreshing(self._timeout.total or 5.0):
                # Whoever held the lock before us may have just stored a fresh token.
                if not force and (shared := self._adopt(await store.get(), avoid)) is not None:
                    return shared
                token = await self._fetch_from_wechat(force=force)
                remaining = token.expires_at - self._clock()
                await store.put(SharedToken(token.value, self._wall_clock() + remaining))
                return token
        finally:
            self._fetching = None

    def _adopt(self, shared: SharedToken | None, avoid: str | None) -> _Token | None:
        """Use the store's token if it is not the refused one and not about to expire."""
        if shared is None or shared.token == avoid:
            return None
        remaining = shared.expires_at - self._wall_clock()
        margin = min(MAX_REFRESH_MARGIN, remaining / 2)
        if remaining <= margin or remaining <= 0:
            return None
        now = self._clock()
        token = _Token(
            shared.token, refresh_at=now + remaining - margin, expires_at=now + remaining
        )
        self._token = token
        return token

    async def _fetch_from_wechat(self, *, force: bool) -> _Token:
        started = self._clock()
        body = {
            "grant_type": "client_credential",
            "appid": self._app_id,
            "secret": self._app_secret,
            "force_refresh": force,
        }
        raw, _ = await self._request("stable_token", "POST", "/cgi-bin/stable_token", body=body)
        answer = self._checked_json("stable_token", raw)
        value = answer.get("access_token")
        expires_in = answer.get("expires_in")
        if (
            not isinstance(value, str)
            or not value
            or not isinstance(expires_in, int)
            or isinstance(expires_in, bool)
            or expires_in <= 0
        ):
            raise APITransportError(
                "stable_token answer lacks access_token/expires_in", api="stable_token"
            )
        margin = min(MAX_REFRESH_MARGIN, expires_in / 2)
        token = _Token(
            value, refresh_at=started + expires_in - margin, expires_at=started + expires_in
        )
        self._token = token
        return token

    async def _replacement_for(self, rejected: str) -> str:
        """The token to retry with after WeChat refused ``rejected``."""
        current = self._token
        if current is not None and current.value != rejected:
            return current.value  # another caller already replaced it
        self._token = None
        token = await self._shared_fetch(force=False, avoid=rejected)
        if token.value != rejected:
            return token.value
        if self._fetching is not None:
            # Another caller started a fetch meanwhile (most likely the forced
            # refresh for this same refusal): use its answer.
            token = await self._shared_fetch(force=False, avoid=rejected)
            if token.value != rejected:
                return token.value
        if self._force_allowed():
            return (await self._shared_fetch(force=True)).value
        # A forced refresh ran less than 30 s ago: reuse the token it gave.
        return self._token.value if self._token is not None else token.value

    def _force_allowed(self) -> bool:
        last = self._last_forced_at
        return last is None or self._clock() - last >= FORCE_REFRESH_SPACING

    # -- public API calls -----------------------------------------------------
    async def send_text(self, openid: str, content: str) -> None:
        """Send a customer-service text message (inside the user's reply window)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        await self._post_json("custom_send", "/cgi-bin/message/custom/send", body)

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, str],
        *,
        url: str | None = None,
    ) -> int:
        """Send a template message; returns WeChat's ``msgid``."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if url is not None:
            body["url"] = url
        answer = await self._post_json("template_send", "/cgi-bin/message/template/send", body)
        return _int_field(answer, "msgid", "template_send")

    async def mass_send_text(
        self, openids: Sequence[str], content: str, *, clientmsgid: str
    ) -> int:
        """Mass-send a text to 2..10,000 openids; returns the job's ``msg_id``.

        ``clientmsgid`` makes the job idempotent: WeChat refuses a second job
        with the same id within 24 h (:class:`MassAlreadySent`, carrying the
        first job's ``msg_id``).
        """
        if not MASS_SEND_MIN_OPENIDS <= len(openids) <= MASS_SEND_MAX_OPENIDS:
            raise ValueError(
                f"mass send takes {MASS_SEND_MIN_OPENIDS}..{MASS_SEND_MAX_OPENIDS} openids,"
                f" got {len(openids)}"
            )
        if not clientmsgid or len(clientmsgid.encode("utf-8")) > CLIENTMSGID_MAX_BYTES:
            raise ValueError(f"clientmsgid must be 1..{CLIENTMSGID_MAX_BYTES} bytes")
        body = {
            "touser": list(openids),
            "msgtype": "text",
            "text": {"content": content},
            "clientmsgid": clientmsgid,
        }
        answer = await self._post_json("mass_send", "/cgi-bin/message/mass/send", body)
        return _int_field(answer, "msg_id", "mass_send")

    async def create_qrcode(
        self, scene: str, *, permanent: bool = False, expire_seconds: int = QR_MAX_EXPIRE_SECONDS
    ) -> QRCode:
        """Create a string-scene QR code (temporary by default, 30 days)."""
        if not scene or len(scene.encode("utf-8")) > QR_SCENE_STR_MAX_BYTES:
            raise ValueError(f"scene must be 1..{QR_SCENE_STR_MAX_BYTES} bytes")
        action_info = {"scene": {"scene_str": scene}}
        body: dict[str, Any]
        if permanent:
            body = {"action_name": "QR_LIMIT_STR_SCENE", "action_info": action_info}
        else:
            if not 0 < expire_seconds <= QR_MAX_EXPIRE_SECONDS:
                raise ValueError(f"expire_seconds must be 1..{QR_MAX_EXPIRE_SECONDS}")
            body = {
                "expire_seconds": expire_seconds,
                "action_name": "QR_STR_SCENE",
                "action_info": action_info,
            }
        answer = await self._post_json("qrcode_create", "/cgi-bin/qrcode/create", body)
        ticket = answer.get("ticket")
        url = answer.get("url")
        expires = answer.get("expire_seconds")
        if not isinstance(ticket, str) or not ticket or not isinstance(url, str):
            raise APITransportError("qrcode answer lacks ticket/url", api="qrcode_create")
        return QRCode(
            ticket=ticket,
            url=url,
            expire_seconds=None if permanent or not isinstance(expires, int) else expires,
            image_url=SHOWQRCODE_URL + quote(ticket, safe=""),
        )

    async def get_media(self, media_id: str) -> bytes:
        """Download a temporary media file (an image or voice a user sent...).

        For videos WeChat answers a download URL instead of the bytes; that URL
        is fetched once, without the token, under the same timeout.
        """
        result = await self._with_token(
            "media_get",
            "GET",
            "/cgi-bin/media/get",
            self._media_result,
            params={"media_id": media_id},
        )
        if isinstance(result, bytes):
            return result
        video_url = result.get("video_url")
        if not isinstance(video_url, str) or not video_url:
            raise APITransportError("media/get answered JSON without media", api="media_get")
        raw, _ = await self._request("media_video", "GET", video_url, absolute=True)
        self._observe("media_video", 0)
        return raw

    async def user_info(self, openid: str) -> dict[str, Any]:
        """The user's info (``subscribe`` is 0 if they do not follow the account)."""
        answer = await self._with_token(
            "user_info",
            "GET",
            "/cgi-bin/user/info",
            lambda api, raw, _ctype: self._checked_json(api, raw),
            params={"openid": openid, "lang": "zh_CN"},
        )
        return {k: v for k, v in answer.items() if k not in ("errcode", "errmsg")}

    # -- plumbing -------------------------------------------------------------
    async def _post_json(self, api: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._with_token(
            api, "POST", path, lambda api, raw, _ctype: self._checked_json(api, raw), body=body
        )

    async def _with_token(
        self,
        api: str,
        method: str,
        path: str,
        parse: Callable[[str, bytes, str], T],
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> T:
        """One call with the current token; on a token refusal, one retry."""
        token = await self.access_token()
        try:
            return await self._attempt(api, method, path, parse, token, params, body)
        except AccessTokenInvalid:
            pass  # retried below, outside the handler, so no exception chain
        token = await self._replacement_for(token)
        return await self._attempt(api, method, path, parse, token, params, body)

    async def _attempt(
        self,
        api: str,
        method: str,
        path: str,
        parse: Callable[[str, bytes, str], T],
        token: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
    ) -> T:
        query = {**(params or {}), "access_token": token}
        raw, content_type = await self._request(api, method, path, params=query, body=body)
        return parse(api, raw, content_type)

    async def _request(
        self,
        api: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        absolute: bool = False,
    ) -> tuple[bytes, str]:
        """One HTTP request; returns (body, content type) of a 200 answer.

        Raises :class:`APITransportError` (and reports -2) for anything else.
        The caller reports the outcome of a 200 answer.
        """
        url = path if absolute else self._base_url + path
        token = (params or {}).get("access_token", "")
        data: bytes | None = None
        headers: Mapping[str, str] | None = None
        if body is not None:
            # ensure_ascii=False: WeChat shows \uXXXX escapes literally.
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers = _JSON_HEADERS
        try:
            async with self._session.request(
                method, url, params=params, data=data, headers=headers, timeout=self._timeout
            ) as response:
                raw = await response.read()
                status = response.status
                content_type = response.content_type
        except TimeoutError:
            self._transport_failure(api, f"no answer within {self._timeout.total} s")
        except aiohttp.ClientError as exc:
            self._transport_failure(api, f"{type(exc).__name__}: {exc}", token=token)
        if status != 200:
            self._transport_failure(api, f"HTTP {status}")
        return raw, content_type

    def _checked_json(self, api: str, raw: bytes) -> dict[str, Any]:
        """Parse a JSON answer, report it, and raise for a non-zero errcode."""
        try:
            answer = json.loads(raw)
        except ValueError:  # includes UnicodeDecodeError
            self._transport_failure(api, "answer is not JSON")
        if not isinstance(answer, dict):
            self._transport_failure(api, "answer is not a JSON object")
        errcode = answer.get("errcode", 0)
        if not isinstance(errcode, int):
            self._transport_failure(api, "answer has a non-integer errcode")
        if errcode != 0:
            errmsg = str(answer.get("errmsg", ""))
            self._observe(api, errcode)
            logger.warning("WeChat API %s failed: errcode=%s errmsg=%s", api, errcode, errmsg)
            raise error_for(errcode, errmsg, api, response=answer)
        self._observe(api, 0)
        return answer

    def _media_result(self, api: str, raw: bytes, content_type: str) -> bytes | dict[str, Any]:
        if content_type in _JSON_CONTENT_TYPES:
            return self._checked_json(api, raw)
        self._observe(api, 0)
        return raw

    def _transport_failure(self, api: str, detail: str, *, token: str = "") -> NoReturn:
        detail = self._redact(detail, token)
        self._observe(api, TRANSPORT_ERRCODE)
        logger.warning("WeChat API %s failed: errcode=%s errmsg=%s", api, TRANSPORT_ERRCODE, detail)
        # "from None": the original exception's text may quote the request URL,
        # which carries the access token.
        raise APITransportError(detail, api=api) from None

    def _redact(self, text: str, token: str) -> str:
        for secret in (self._app_secret, token, self._token.value if self._token else ""):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _observe(self, api: str, errcode: int) -> None:
        if self._observer is not None:
            self._observer(api, errcode)


def _int_field(answer: Mapping[str, Any], name: str, api: str) -> int:
    value = answer.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise APITransportError(f"answer lacks an integer {name}", api=api)
    return value


def _retrieve_exception(task: asyncio.Task[_Token]) -> None:
    # Every waiter may have been cancelled; mark the failure as seen so asyncio
    # does not log "exception was never retrieved" for it.
    if not task.cancelled():
        task.exception()
