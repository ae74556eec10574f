"""WeChat API error codes that change what the caller does, as exception classes.

Every class derives from :class:`bot.errors.WeChatAPIError`, so a caller that
does not care which failure it was catches that one class. :func:`raise_for`
turns a non-zero ``errcode`` into the matching class; codes without a class
here raise a plain :class:`WeChatAPIError`.

Codes and meanings: WeChat's global return-code page, summarised in
``/work/shared/reference/wechat_protocol.md`` section 2.7.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from bot.errors import WeChatAPIError

# Our own marker for failures that never produced a WeChat answer. WeChat's
# Official Account APIs do not use -2 (their generic failure is -1), so the two
# cannot be confused in metrics or logs.
TRANSPORT_ERRCODE = -2


class SystemBusy(WeChatAPIError):
    """-1 "system error": WeChat is busy. Retry later, not in a tight loop."""


class AccessTokenInvalid(WeChatAPIError):
    """40001 / 40014 / 42001: the access_token was refused.

    The client raises it only after its one token refresh and one retry also
    failed, so seeing it means a configuration or platform problem (wrong
    secret, another system force-refreshing our token), not a stale cache.
    """


class InvalidOpenID(WeChatAPIError):
    """40003: the openid does not belong to this account. Drop it and log."""


class NotFollowing(WeChatAPIError):
    """43004 "require subscribe": the user no longer follows the account."""


class QuotaExceeded(WeChatAPIError):
    """45009: the API's daily quota or rate limit is used up. Stop sending."""


class OutOfReplyWindow(WeChatAPIError):
    """45015: the customer-service window closed (or the user unfollowed).

    Fall back to a template or subscribe message.
    """


class ReplyCountExceeded(WeChatAPIError):
    """45047: too many customer-service messages in the window. Fall back."""


class MassAlreadySent(WeChatAPIError):
    """45065 "clientmsgid exist": a mass send with this clientmsgid already ran.

    ``msg_id`` is the earlier job's id when WeChat sent it, so a retried job can
    be treated as done.
    """

    def __init__(
        self, errcode: int, errmsg: str = "", *, api: str = "", msg_id: int | None = None
    ) -> None:
        super().__init__(errcode, errmsg, api=api)
        self.msg_id = msg_id


class APITransportError(WeChatAPIError):
    """No usable answer: timeout, connection error, HTTP error status, non-JSON body.

    ``errcode`` is always :data:`TRANSPORT_ERRCODE` (-2), our own marker; the
    call may or may not have reached WeChat, so a send is not known to have
    failed (or succeeded).
    """

    def __init__(self, errmsg: str = "", *, api: str = "") -> None:
        super().__init__(TRANSPORT_ERRCODE, errmsg, api=api)


TOKEN_ERRCODES = frozenset({40001, 40014, 42001})

_SIMPLE: dict[int, type[WeChatAPIError]] = {
    -1: SystemBusy,
    40001: AccessTokenInvalid,
    40014: AccessTokenInvalid,
    42001: AccessTokenInvalid,
    40003: InvalidOpenID,
    43004: NotFollowing,
    45009: QuotaExceeded,
    45015: OutOfReplyWindow,
    45047: ReplyCountExceeded,
}


def error_for(
    errcode: int, errmsg: str, api: str, *, response: Mapping[str, Any] | None = None
) -> WeChatAPIError:
    """The exception for a WeChat answer with a non-zero ``errcode``."""
    if errcode == 45065:
        msg_id = response.get("msg_id") if response is not None else None
        return MassAlreadySent(
            errcode, errmsg, api=api, msg_id=msg_id if isinstance(msg_id, int) else None
        )
    if errcode == TRANSPORT_ERRCODE:
        return APITransportError(errmsg, api=api)
    cls = _SIMPLE.get(errcode, WeChatAPIError)
    return cls(errcode, errmsg, api=api)


def raise_for(
    errcode: int, errmsg: str, api: str, *, response: Mapping[str, Any] | None = None
) -> NoReturn:
    """Raise the exception for ``errcode`` (which must not be 0).

    ``response`` is the whole JSON answer, for codes whose class carries more
    than the code and message (45065's ``msg_id``).
    """
    if errcode == 0:
        raise ValueError("errcode 0 is success, not an error")
    raise error_for(errcode, errmsg, api, response=response)
