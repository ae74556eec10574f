"""A local fake of api.weixin.qq.com, written from WeChat's public documentation.

It is the one fake of a real component the project allows: tests and the chat
simulator talk to it over real HTTP, so the client under test cannot tell it
from WeChat except by the base URL. It serves the endpoints the bot uses with
the documented paths, request fields, answers and error codes, and records
every call.

Modelled behaviour worth knowing (from the docs unless marked *assumed*):

* ``/cgi-bin/token`` issues a new token each call; the previous one keeps
  working 5 more minutes, then answers 40001.
* ``/cgi-bin/stable_token`` returns the same token while it is valid (and a
  renewed one in its last 5 minutes when ``token_ttl`` > 600); ``force_refresh``
  issues a new token and kills the old one at once. Forced refreshes are limited
  to 20 a day, 30 s apart; the error code for breaking that limit is not
  documented, 45009 is *assumed*.
* Every other endpoint checks ``access_token``: missing 41001, unknown or
  superseded 40001, expired 42001.
* WeChat does not decode ``\\uXXXX`` escapes in request bodies (a well-known
  pitfall: users see the escapes), so neither does the fake.
* Once a follower is registered with :meth:`FakeWeChatAPI.add_follower`, the
  fake knows the account's followers: custom and template sends to anyone else
  answer 43004, and ``user/info`` answers ``subscribe: 0`` for a former follower
  and 40003 for an openid never seen. Mass sends accept non-followers (WeChat
  skips them inside the job). With no follower registered, any openid is a
  follower.
* Default error messages end in `` rid: ...`` as WeChat's do, so callers
  cannot depend on exact message text.
* The WeCom group-robot webhook (``POST /cgi-bin/webhook/send?key=KEY``, api
  label ``wecom_robot``; really on qyapi.weixin.qq.com, served here beside the
  rest) takes ``text`` (content up to 2048 bytes) and ``markdown`` (up to 4096
  bytes, the WeCom doc's figure) messages, answers ``{"errcode":0,"errmsg":"ok"}``
  and records them (:meth:`FakeWeChatAPI.robot_messages`). It needs no access
  token. At most 20 messages per key in any 60 s of the fake's clock, 45009
  beyond; only accepted messages count (*assumed*: WeCom does not say whether
  its minute is sliding or fixed, sliding is the stricter). A missing key
  answers 93000. Keys work like followers: with no robot registered by
  :meth:`FakeWeChatAPI.add_robot`, any key is a robot (so a test needs no set-up);
  once one is registered, other keys answer 93000, as does a key given to
  :meth:`FakeWeChatAPI.remove_robot`. Other message types answer 40008; a content
  over its limit answers 40058 (*assumed* code). The key is a secret, so
  :attr:`FakeWeChatAPI.calls` records it as ``***``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import mimetypes
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

logger = logging.getLogger("bot.wechat.fake_api")

Handler = Callable[[web.Request, dict[str, str], Any], Awaitable[web.StreamResponse]]

# api label -> (method, path). The labels match the client's observer labels.
ENDPOINTS: dict[str, tuple[str, str]] = {
    "token": ("GET", "/cgi-bin/token"),
    "stable_token": ("POST", "/cgi-bin/stable_token"),
    "custom_send": ("POST", "/cgi-bin/message/custom/send"),
    "template_send": ("POST", "/cgi-bin/message/template/send"),
    "mass_send": ("POST", "/cgi-bin/message/mass/send"),
    "qrcode_create": ("POST", "/cgi-bin/qrcode/create"),
    "media_get": ("GET", "/cgi-bin/media/get"),
    "user_info": ("GET", "/cgi-bin/user/info"),
    "media_video": ("GET", "/fake-cdn/video/{media_id}"),  # where video_url points
    "wecom_robot": ("POST", "/cgi-bin/webhook/send"),  # WeCom group robot (qyapi host)
}
_TOKEN_APIS = frozenset({"token", "stable_token"})
_UNAUTHENTICATED_APIS = _TOKEN_APIS | {"media_video", "wecom_robot"}

ERRMSG: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid appid",
    40014: "invalid access_token",
    40031: "invalid openid list",
    40037: "invalid template_id",
    40052: "invalid action name",
    40053: "invalid action info, please check document",
    40058: "invalid Request Parameter",  # WeCom; assumed wording for an over-long content
    40125: "invalid appsecret",
    40130: "invalid openid list size, at least two openid",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41006: "media_id missing",
    41009: "missing openid",
    42001: "access_token expired",
    43001: "require GET method",
    43002: "require POST method",
    43004: "require subscribe",
    44002: "empty post data",
    44004: "empty content",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45065: "clientmsgid exist",
    45067: "clientmsgid size out of limit",  # assumed wording; the code is documented
    47001: "data format error",
    93000: "invalid webhook url",  # WeCom group robot
}
RATE_LIMIT_ERRMSG = "api freq out of limit"

OLD_TOKEN_GRACE = 300.0  # /cgi-bin/token: the previous token works 5 more minutes
STABLE_RENEW_WINDOW = 300.0  # stable_token renews 5 minutes before expiry
FORCE_REFRESH_SPACING = 30.0
FORCE_REFRESH_PER_DAY = 20
MASS_DEDUP_SECONDS = 86_400.0
QR_DEFAULT_EXPIRE = 30  # older doc: temporary codes default to 30 s
QR_MAX_EXPIRE = 2_592_000
QR_LIMIT_SCENE_MAX = 100_000
SCENE_STR_MAX = 64
CLIENTMSGID_MAX_BYTES = 64
ROBOT_PER_MINUTE = 20  # WeCom: 20 messages a minute per robot
ROBOT_WINDOW = 60.0
ROBOT_MAX_BYTES = {"text": 2048, "markdown": 4096}  # content limits per msgtype
_CUSTOM_MSGTYPES = frozenset(
    {"text", "image", "voice", "video", "music", "news", "mpnews", "mpnewsarticle", "msgmenu"}
    | {"wxcard", "miniprogrampage"}
)
_MASS_MSGTYPES = frozenset({"text", "mpnews", "voice", "image", "mpvideo", "wxcard"})
_JSON_CONTENT_TYPE = "application/json; encoding=utf-8"  # sic, as WeChat sends it
# An unescaped "\u" (preceded by an even number of backslashes).
_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u")


@dataclass
class RecordedCall:
    """One request the fake received. Secrets are replaced by ``***``."""

    api: str
    path: str
    query: dict[str, str]
    body: Any
    at: float


@dataclass(frozen=True)
class RobotMessage:
    """One message a WeCom group robot accepted."""

    key: str
    msgtype: str  # "text" or "markdown"
    content: str
    at: float


@dataclass
class _IssuedToken:
    kind: str  # "token" or "stable"
    expires_at: float
    revoked_at: float | None = None


@dataclass
class _Bucket:
    rate: float
    capacity: float
    level: float
    updated: float


@dataclass
class _MassJob:
    msg_id: int
    at: float


@dataclass
class _Failure:
    errcode: int
    errmsg: str | None


@dataclass
class _QRCodeRecord:
    scene: str | int
    permanent: bool
    expires_at: float | None = None


@dataclass
class _Media:
    content: bytes
    content_type: str


@dataclass
class _State:
    """Everything the fake remembers, in one place."""

    tokens: dict[str, _IssuedToken] = field(default_factory=dict)
    stable_token: str | None = None
    forced_at: list[float] = field(default_factory=list)
    failures: dict[str, deque[_Failure]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    media: dict[str, _Media] = field(default_factory=dict)
    followers: dict[str, dict[str, Any]] = field(default_factory=dict)
    former_followers: set[str] = field(default_factory=set)
    followers_known: bool = False
    mass_jobs: dict[str, _MassJob] = field(default_factory=dict)
    qrcodes: dict[str, _QRCodeRecord] = field(default_factory=dict)
    delivered_texts: list[tuple[str, str]] = field(default_factory=list)
    robots: set[str] = field(default_factory=set)
    removed_robots: set[str] = field(default_factory=set)
    robots_known: bool = False
    robot_sends: dict[str, deque[float]] = field(default_factory=dict)
    robot_messages: list[RobotMessage] = field(default_factory=list)
    next_id: int = 1_000_001


class FakeWeChatAPI:
    """api.weixin.qq.com on loopback. ``clock`` is monotonic seconds (injectable)."""

    def __init__(
        self,
        *,
        app_id: str = "wx_fake_app",
        app_secret: str = "fake_secret",
        token_ttl: int = 7200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if token_ttl <= 0:
            raise ValueError("token_ttl must be positive")
        self._app_id = app_id
        self._app_secret = app_secret
        self._token_ttl = token_ttl
        self._clock = clock
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self.calls: list[RecordedCall] = []
        self.base_url: str | None = None
        self.app = web.Application()
        handlers: dict[str, Handler] = {
            "token": self._token,
            "stable_token": self._stable_token,
            "custom_send": self._custom_send,
            "template_send": self._template_send,
            "mass_send": self._mass_send,
            "qrcode_create": self._qrcode_create,
            "media_get": self._media_get,
            "user_info": self._user_info,
            "media_video": self._media_video,
            "wecom_robot": self._wecom_robot,
        }
        for api, (_method, path) in ENDPOINTS.items():
            self.app.router.add_route("*", path, self._endpoint(api, handlers[api]))

    def __repr__(self) -> str:
        return f"FakeWeChatAPI(app_id={self._app_id!r}, base_url={self.base_url!r})"

    # -- lifecycle --------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 = any free port); returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("the fake is already running")
        # access_log=None: /cgi-bin/token carries the secret in its query string.
        # handler_cancellation: a client that gave up (timeout) frees the handler.
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeWeChatAPI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- inspection -------------------------------------------------------------
    def calls_to(self, api: str) -> list[RecordedCall]:
        _check_api(api)
        return [call for call in self.calls if call.api == api]

    def sent_texts(self, openid: str | None = None) -> list[str]:
        """Contents of the custom-service text messages WeChat accepted, in order."""
        return [
            content for to, content in self._state.delivered_texts if openid is None or to == openid
        ]

    def robot_messages(self, key: str | None = None) -> list[RobotMessage]:
        """Messages the WeCom robot ``key`` (or any robot) accepted, in order."""
        return [m for m in self._state.robot_messages if key is None or m.key == key]

    @property
    def token_fetches(self) -> int:
        """Calls to /cgi-bin/token and /cgi-bin/stable_token, failed ones included."""
        return sum(1 for call in self.calls if call.api in _TOKEN_APIS)

    def qrcode_scene(self, ticket: str) -> str | int | None:
        """The scene a ticket was created for (for simulating a scan)."""
        record = self._state.qrcodes.get(ticket)
        return record.scene if record is not None else None

    # -- scripting --------------------------------------------------------------
    def fail_next(
        self, api: str, errcode: int, *, times: int = 1, errmsg: str | None = None
    ) -> None:
        """Answer the next ``times`` calls to ``api`` with ``errcode`` (queued in order)."""
        _check_api(api)
        if times < 1:
            raise ValueError("times must be >= 1")
        queue = self._state.failures.setdefault(api, deque())
        queue.extend(_Failure(errcode, errmsg) for _ in range(times))

    def set_delay(self, api: str, seconds: float) -> None:
        """Delay every answer of ``api`` by ``seconds`` (0 removes the delay)."""
        _check_api(api)
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._state.delays[api] = seconds

    def set_rate_limit(self, api: str, per_second: float) -> None:
        """Allow ``per_second`` calls a second (bursts up to that many); 45009 beyond."""
        _check_api(api)
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        capacity = max(1.0, per_second)
        self._state.buckets[api] = _Bucket(per_second, capacity, capacity, self._clock())

    def add_media(self, media_id: str, content: bytes, content_type: str = "image/jpeg") -> None:
        self._state.media[media_id] = _Media(content, content_type)

    def add_follower(self, openid: str, **info: Any) -> None:
        """Register a follower; ``info`` overrides fields of its user/info answer."""
        self._state.followers_known = True
        self._state.former_followers.discard(openid)
        self._state.followers[openid] = dict(info)

    def remove_follower(self, openid: str) -> None:
        if self._state.followers.pop(openid, None) is not None:
            self._state.former_followers.add(openid)

    def add_robot(self, key: str) -> None:
        """Register a WeCom robot key; from then on unregistered keys answer 93000."""
        if not key:
            raise ValueError("a robot key must not be empty")
        self._state.robots_known = True
        self._state.removed_robots.discard(key)
        self._state.robots.add(key)

    def remove_robot(self, key: str) -> None:
        """The robot was removed from its group: its key answers 93000 from now on."""
        self._state.robots.discard(key)
        self._state.removed_robots.add(key)

    def expire_tokens(self) -> None:
        """Make every token issued so far answer 42001 (as if its 2 hours ran out)."""
        now = self._clock()
        for issued in self._state.tokens.values():
            issued.expires_at = min(issued.expires_at, now)

    # -- request pipeline ---------------------------------------------------------
    def _endpoint(
        self, api: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        method = ENDPOINTS[api][0]
        plain = api == "media_get"  # media/get answers its JSON as text/plain

        async def handle(request: web.Request) -> web.StreamResponse:
            query = dict(request.query)
            body, body_errcode = await self._read_body(request) if method == "POST" else (None, 0)
            shown_query = {**query, "key": "***"} if "key" in query else query  # robot key
            self.calls.append(
                RecordedCall(
                    api, request.path, self._scrub(shown_query), self._scrub(body), self._clock()
                )
            )
            delay = self._state.delays.get(api, 0.0)
            if delay > 0:
                await asyncio.sleep(delay)
            if request.method != method:
                return self._error(43001 if method == "GET" else 43002, plain=plain)
            if self._rate_limited(api):
                return self._error(45009, RATE_LIMIT_ERRMSG, plain=plain)
            queue = self._state.failures.get(api)
            if queue:
                failure = queue.popleft()
                return self._error(failure.errcode, failure.errmsg, plain=plain)
            if api not in _UNAUTHENTICATED_APIS:
                token_errcode = self._token_errcode(query.get("access_token", ""))
                if token_errcode:
                    return self._error(token_errcode, plain=plain)
            if body_errcode:
                return self._error(body_errcode, plain=plain)
            return await handler(request, query, body)

        return handle

    async def _read_body(self, request: web.Request) -> tuple[Any, int]:
        """The parsed JSON body and 0, or (what we could read, errcode)."""
        raw = await request.read()
        if not raw.strip():
            return None, 44002
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace"), 47001
        try:
            return json.loads(_UNICODE_ESCAPE.sub(r"\1\\\\u", text)), 0
        except ValueError:
            return text, 47001

    def _scrub(self, value: Any) -> Any:
        """``value`` with the app secret (and any ``secret`` field) replaced by ***."""
        if isinstance(value, dict):
            return {
                key: "***" if key == "secret" else self._scrub(item) for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._scrub(item) for item in value]
        if isinstance(value, str) and self._app_secret:
            return value.replace(self._app_secret, "***")
        return value

    def _rate_limited(self, api: str) -> bool:
        bucket = self._state.buckets.get(api)
        if bucket is None:
            return False
        now = self._clock()
        bucket.level = min(bucket.capacity, bucket.level + (now - bucket.updated) * bucket.rate)
        bucket.updated = now
        if bucket.level < 1.0:
            return True
        bucket.level -= 1.0
        return False

    def _token_errcode(self, value: str) -> int:
        if not value:
            return 41001
        issued = self._state.tokens.get(value)
        now = self._clock()
        if issued is None or (issued.revoked_at is not None and now >= issued.revoked_at):
            return 40001
        if now >= issued.expires_at:
            return 42001
        return 0

    def _error(
        self, errcode: int, errmsg: str | None = None, *, plain: bool = False
    ) -> web.Response:
        if errmsg is None:
            errmsg = f"{ERRMSG.get(errcode, 'error')} rid: {_rid()}"
        logger.debug("fake WeChat answers errcode=%s", errcode)
        return _json({"errcode": errcode, "errmsg": errmsg}, plain=plain)

    def _new_id(self) -> int:
        self._state.next_id += 1
        return self._state.next_id

    def _is_follower(self, openid: str) -> bool:
        return not self._state.followers_known or openid in self._state.followers

    # -- tokens -----------------------------------------------------------------
    def _credentials_errcode(self, grant_type: Any, appid: Any, secret: Any) -> int:
        if grant_type != "client_credential":
            return 40002
        if not appid:
            return 41002
        if appid != self._app_id:
            return 40013
        if not secret:
            return 41004
        if secret != self._app_secret:
            return 40125
        return 0

    def _issue(self, kind: str) -> tuple[str, _IssuedToken]:
        value = f"{self._new_id()}_{secrets.token_urlsafe(96)}"
        issued = _IssuedToken(kind, self._clock() + self._token_ttl)
        self._state.tokens[value] = issued
        return value, issued

    async def _token(self, request: web.Request, query: dict[str, str], body: Any) -> web.Response:
        errcode = self._credentials_errcode(
            query.get("grant_type"), query.get("appid"), query.get("secret")
        )
        if errcode:
            return self._error(errcode)
        grace_end = self._clock() + OLD_TOKEN_GRACE
        for issued in self._state.tokens.values():
            if issued.kind == "token" and issued.revoked_at is None:
                issued.revoked_at = grace_end
        value, _ = self._issue("token")
        return _json({"access_token": value, "expires_in": self._token_ttl})

    async def _stable_token(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        if not isinstance(body, dict):
            return self._error(47001)
        errcode = self._credentials_errcode(
            body.get("grant_type"), body.get("appid"), body.get("secret")
        )
        if errcode:
            return self._error(errcode)
        now = self._clock()
        state = self._state
        if body.get("force_refresh") is True:
            state.forced_at = [at for at in state.forced_at if now - at < 86_400]
            too_soon = state.forced_at and now - state.forced_at[-1] < FORCE_REFRESH_SPACING
            if too_soon or len(state.forced_at) >= FORCE_REFRESH_PER_DAY:
                return self._error(45009)
            state.forced_at.append(now)
            if state.stable_token is not None:
                state.tokens[state.stable_token].revoked_at = now
            state.stable_token = None
        current = state.tokens.get(state.stable_token) if state.stable_token else None
        renew_window = STABLE_RENEW_WINDOW if self._token_ttl > 2 * STABLE_RENEW_WINDOW else 0.0
        if (
            state.stable_token is None
            or current is None
            or current.revoked_at is not None
            or current.expires_at - now <= max(renew_window, 1.0)
        ):
            # The old token, if any, keeps working until its own expiry.
            state.stable_token, current = self._issue("stable")
        return _json(
            {"access_token": state.stable_token, "expires_in": int(current.expires_at - now)}
        )

    # -- messages ---------------------------------------------------------------
    async def _custom_send(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        if not isinstance(body, dict):
            return self._error(47001)
        touser = body.get("touser")
        if not isinstance(touser, str) or not touser:
            return self._error(40003)
        msgtype = body.get("msgtype")
        if msgtype not in _CUSTOM_MSGTYPES:
            return self._error(40008)
        content: str | None = None
        if msgtype == "text":
            text = body.get("text")
            if not isinstance(text, dict):
                return self._error(47001)
            content = text.get("content")
            if not isinstance(content, str) or not content:
                return self._error(44004)
        if not self._is_follower(touser):
            return self._error(43004)
        if content is not None:
            self._state.delivered_texts.append((touser, content))
        return _json({"errcode": 0, "errmsg": "ok"})

    async def _template_send(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        if not isinstance(body, dict):
            return self._error(47001)
        touser = body.get("touser")
        if not isinstance(touser, str) or not touser:
            return self._error(40003)
        template_id = body.get("template_id")
        if not isinstance(template_id, str) or not template_id:
            return self._error(40037)
        data = body.get("data", {})
        if not isinstance(data, dict) or not all(
            isinstance(item, dict) and isinstance(item.get("value"), str) for item in data.values()
        ):
            return self._error(47001)
        if "url" in body and not isinstance(body["url"], str):
            return self._error(47001)
        if not self._is_follower(touser):
            return self._error(43004)
        return _json({"errcode": 0, "errmsg": "ok", "msgid": self._new_id()})

    async def _mass_send(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        if not isinstance(body, dict):
            return self._error(47001)
        touser = body.get("touser")
        if not isinstance(touser, list) or not all(isinstance(o, str) and o for o in touser):
            return self._error(40031)
        if not 2 <= len(touser) <= 10_000:
            return self._error(40130)
        msgtype = body.get("msgtype")
        if msgtype not in _MASS_MSGTYPES:
            return self._error(40008)
        message = body.get(msgtype)
        if not isinstance(message, dict):
            return self._error(47001)
        if msgtype == "text" and not (
            isinstance(message.get("content"), str) and message["content"]
        ):
            return self._error(44004)
        clientmsgid = body.get("clientmsgid")
        if clientmsgid is None:
            # Documented default: a digest of the recipients and the content.
            digest_source = json.dumps([touser, msgtype, message], ensure_ascii=False)
            clientmsgid = hashlib.sha1(digest_source.encode("utf-8")).hexdigest()
        elif not isinstance(clientmsgid, str) or len(clientmsgid.encode()) > CLIENTMSGID_MAX_BYTES:
            return self._error(45067)
        now = self._clock()
        earlier = self._state.mass_jobs.get(clientmsgid)
        if earlier is not None and now - earlier.at < MASS_DEDUP_SECONDS:
            return _json(
                {
                    "errcode": 45065,
                    "errmsg": f"{ERRMSG[45065]} rid: {_rid()}",
                    "msg_id": earlier.msg_id,
                }
            )
        msg_id = self._new_id()
        self._state.mass_jobs[clientmsgid] = _MassJob(msg_id, now)
        return _json(
            {
                "errcode": 0,
                "errmsg": "send job submission success",
                "msg_id": msg_id,
                "msg_data_id": self._new_id(),
            }
        )

    async def _wecom_robot(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        key = query.get("key", "")
        state = self._state
        if (
            not key
            or key in state.removed_robots
            or (state.robots_known and key not in state.robots)
        ):
            return self._error(93000)
        if not isinstance(body, dict):
            return self._error(47001)
        msgtype = body.get("msgtype")
        if not isinstance(msgtype, str) or msgtype not in ROBOT_MAX_BYTES:
            return self._error(40008)
        message = body.get(msgtype)
        if not isinstance(message, dict):
            return self._error(47001)
        content = message.get("content")
        if not isinstance(content, str) or not content:
            return self._error(44004)
        if len(content.encode("utf-8", "surrogatepass")) > ROBOT_MAX_BYTES[msgtype]:
            return self._error(40058)
        now = self._clock()
        sends = state.robot_sends.setdefault(key, deque())
        while sends and now - sends[0] >= ROBOT_WINDOW:
            sends.popleft()
        if len(sends) >= ROBOT_PER_MINUTE:
            return self._error(45009, RATE_LIMIT_ERRMSG)
        sends.append(now)
        state.robot_messages.append(RobotMessage(key, msgtype, content, now))
        return _json({"errcode": 0, "errmsg": "ok"})

    # -- QR codes, media, users -----------------------------------------------------
    async def _qrcode_create(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        if not isinstance(body, dict):
            return self._error(47001)
        action = body.get("action_name")
        if action not in ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"):
            return self._error(40052)
        info = body.get("action_info")
        scene = info.get("scene") if isinstance(info, dict) else None
        value = _scene_value(action, scene)
        if value is None:
            return self._error(40053)
        permanent = action.startswith("QR_LIMIT")
        ticket = base64.b64encode(secrets.token_bytes(60)).decode("ascii")
        answer: dict[str, Any] = {
            "ticket": ticket,
            "url": f"http://weixin.qq.com/q/{secrets.token_urlsafe(18)}",
        }
        record = _QRCodeRecord(value, permanent)
        if not permanent:
            expire = body.get("expire_seconds", QR_DEFAULT_EXPIRE)
            if not isinstance(expire, int) or isinstance(expire, bool) or expire <= 0:
                return self._error(40053)
            # *assumed*: longer requests are capped at the documented maximum.
            expire = min(expire, QR_MAX_EXPIRE)
            record.expires_at = self._clock() + expire
            answer = {"ticket": ticket, "expire_seconds": expire, "url": answer["url"]}
        self._state.qrcodes[ticket] = record
        return _json(answer)

    async def _media_get(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        media_id = query.get("media_id", "")
        if not media_id:
            return self._error(41006, plain=True)
        media = self._state.media.get(media_id)
        if media is None:
            return self._error(40007, plain=True)
        if media.content_type.startswith("video/"):
            video_url = f"{request.url.origin()}/fake-cdn/video/{media_id}"
            return _json({"video_url": video_url}, plain=True)
        return _media_response(media_id, media)

    async def _media_video(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        media_id = request.match_info["media_id"]
        media = self._state.media.get(media_id)
        if media is None:
            raise web.HTTPNotFound()
        return _media_response(media_id, media)

    async def _user_info(
        self, request: web.Request, query: dict[str, str], body: Any
    ) -> web.Response:
        openid = query.get("openid", "")
        if not openid:
            return self._error(41009)
        state = self._state
        if openid in state.former_followers:
            return _json({"subscribe": 0, "openid": openid})
        if state.followers_known and openid not in state.followers:
            return self._error(40003)
        info: dict[str, Any] = {
            "subscribe": 1,
            "openid": openid,
            "language": query.get("lang", "zh_CN"),
            "subscribe_time": int(time.time()),
            "remark": "",
            "groupid": 0,
            "tagid_list": [],
            "subscribe_scene": "ADD_SCENE_OTHERS",
            "qr_scene": 0,
            "qr_scene_str": "",
        }
        info.update(state.followers.get(openid, {}))
        return _json(info)


def _check_api(api: str) -> None:
    if api not in ENDPOINTS:
        raise ValueError(f"unknown api {api!r}; known: {', '.join(sorted(ENDPOINTS))}")


def _rid() -> str:
    return f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def _json(payload: Mapping[str, Any], *, plain: bool = False) -> web.Response:
    content_type = "text/plain" if plain else _JSON_CONTENT_TYPE
    return web.Response(
        body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": content_type},
    )


def _media_response(media_id: str, media: _Media) -> web.Response:
    extension = mimetypes.guess_extension(media.content_type) or ""
    return web.Response(
        body=media.content,
        headers={
            "Content-Type": media.content_type,
            "Content-disposition": f'attachment; filename="{media_id}{extension}"',
            "Cache-Control": "no-cache, must-revalidate",
        },
    )


def _scene_value(action: str, scene: Any) -> str | int | None:
    """The scene of a qrcode/create request if it is valid for ``action``."""
    if not isinstance(scene, dict):
        return None
    if action.endswith("STR_SCENE"):
        scene_str = scene.get("scene_str")
        if isinstance(scene_str, str) and 1 <= len(scene_str) <= SCENE_STR_MAX:
            return scene_str
        return None
    scene_id = scene.get("scene_id")
    if not isinstance(scene_id, int) or isinstance(scene_id, bool):
        return None
    if action == "QR_LIMIT_SCENE":
        return scene_id if 1 <= scene_id <= QR_LIMIT_SCENE_MAX else None
    return scene_id if scene_id != 0 and -(2**31) <= scene_id < 2**31 else None
