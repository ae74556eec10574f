"""WeChat request signatures: the URL ``signature`` and the safe-mode ``msg_signature``.

Both are the SHA-1 hex digest of the sorted, concatenated strings (token, timestamp,
nonce, and for ``msg_signature`` also the ``Encrypt`` text). Every input except the
token comes from the query string or the body, so nothing here may raise anything but
:class:`~bot.errors.SignatureError` on hostile values.
"""

from __future__ import annotations

import hashlib
import hmac

from bot.errors import SignatureError

# A Unix time in seconds has 10 digits until 2286; the bound keeps int() away from
# attacker-sized strings.
_MAX_TIMESTAMP_DIGITS = 12


def _sha1_sorted(*parts: str) -> str:
    # surrogatepass: query strings can carry lone surrogates; they must yield a digest
    # that simply does not match, not a UnicodeEncodeError.
    joined = "".join(sorted(parts)).encode("utf-8", "surrogatepass")
    return hashlib.sha1(joined).hexdigest()


def _matches(expected: str, given: str) -> bool:
    # compare_digest raises TypeError on non-ASCII str; such a value cannot match a
    # hex digest anyway.
    return given.isascii() and hmac.compare_digest(expected, given)


def url_signature(token: str, timestamp: str, nonce: str) -> str:
    """The ``signature`` WeChat puts on every request (GET verification and POSTs)."""
    return _sha1_sorted(token, timestamp, nonce)


def check_signature(token: str, signature: str, timestamp: str, nonce: str) -> None:
    """Raise ``SignatureError("bad_signature")`` unless ``signature`` is the request's."""
    if not _matches(url_signature(token, timestamp, nonce), signature):
        raise SignatureError("bad_signature")


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """The safe-mode ``msg_signature`` over the ``Encrypt`` text (inbound and replies)."""
    return _sha1_sorted(token, timestamp, nonce, encrypt)


def check_msg_signature(
    token: str, signature: str, timestamp: str, nonce: str, encrypt: str
) -> None:
    """Raise ``SignatureError("bad_msg_signature")`` unless ``signature`` covers ``encrypt``."""
    if not _matches(msg_signature(token, timestamp, nonce, encrypt), signature):
        raise SignatureError("bad_msg_signature")


def check_timestamp(timestamp: str, now: float, max_skew: int = 300) -> None:
    """Refuse a request whose ``timestamp`` is not a Unix time within ``max_skew`` of ``now``.

    A captured request replayed later carries a valid signature; the timestamp is what
    bounds how long such a replay works.
    """
    # isdigit() alone accepts non-ASCII digits ("１２３", "٣") that int() would take.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise SignatureError("bad_timestamp", repr(timestamp[:32]))
    if abs(int(timestamp) - now) > max_skew:
        raise SignatureError("stale_timestamp", f"{timestamp} vs now {int(now)}")
