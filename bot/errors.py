"""The one exception root of the project and its short tree.

Every error we raise on purpose derives from :class:`BotError`, so a caller that
wants "anything the bot itself refused" catches one class.
"""

from __future__ import annotations


class BotError(Exception):
    """Root of every error raised on purpose by the bot."""


class ConfigError(BotError):
    """The configuration is missing a key, has a bad value, or cannot be read."""


class ProtocolError(BotError):
    """An inbound WeChat request that we refuse (bad signature, malformed XML...).

    ``status`` is the HTTP status the webhook answers with; ``reason`` is a short
    machine-friendly label used in logs and metrics.
    """

    status: int = 400

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SignatureError(ProtocolError):
    """The signature, msg_signature, timestamp or app id does not hold."""

    status = 403


class MalformedMessage(ProtocolError):
    """The body is not a WeChat message we can read safely."""

    status = 400


class StorageError(BotError):
    """The store failed or refused an operation."""


class ConflictError(StorageError):
    """A conditional write lost: the record exists, or its version moved on."""


class StoreLockedError(StorageError):
    """Another process holds the embedded store's data directory."""


class WeChatAPIError(BotError):
    """An outbound WeChat API call failed. ``errcode`` is WeChat's code (or -1)."""

    def __init__(self, errcode: int, errmsg: str = "", *, api: str = "") -> None:
        super().__init__(f"WeChat API {api or '?'} errcode={errcode} errmsg={errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api
