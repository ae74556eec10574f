"""Talking about residents and connection URLs without repeating what must stay private."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def endpoint(url: str, default_port: int) -> str:
    """``[user@]host:port[/path]`` (or a socket path) for messages: never the password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path or "a unix socket"
        user = f"{unquote(parts.username)}@" if parts.username else ""
        path = unquote(parts.path) if parts.path not in ("", "/") else ""
        return f"{user}{parts.hostname or 'localhost'}:{parts.port or default_port}{path}"
    except ValueError:
        return "an unparseable URL"


def password_of(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def describe_error(exc: BaseException, secret: str | None) -> str:
    """One line about ``exc`` that never repeats ``secret``."""
    text = " ".join(str(exc).split()) or "no detail"
    if secret:
        text = text.replace(secret, "***")
    return f"{type(exc).__name__}: {text}"


def mask(openid: str) -> str:
    """Enough of an openid to follow one resident through the logs, not to identify them."""
    return f"{openid[:4]}…{openid[-3:]}" if len(openid) > 8 else "…"
