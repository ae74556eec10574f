"""What a domain rule refuses, in words a member of staff can act on."""

from __future__ import annotations

from bot.errors import BotError


class DomainError(BotError):
    """A rule refused the request; the message says why (Chinese, for staff)."""


class NotFound(DomainError):
    pass


class Invalid(DomainError):
    pass


class Refused(DomainError):
    """Valid, but cannot be done now (e.g. WeChat's reply window has closed)."""
