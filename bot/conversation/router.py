"""Routing an inbound message to one handler, in the style of aiogram routers.

A router holds handlers, each guarded by filters; the first handler whose
filters all pass wins, then included routers are tried in order. Filters are
small objects combined with ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.conversation.context import Context
from bot.conversation.text import as_number, normalize
from bot.wechat.messages import Message
from bot.wechat.replies import Reply

D = TypeVar("D")
Result = Reply | str | None
Handler = Callable[[Message, Context, D], Awaitable[Result]]


class Filter(ABC):
    @abstractmethod
    def __call__(self, msg: Message, ctx: Context) -> bool: ...

    def __and__(self, other: Filter) -> Filter:
        return _All((self, other))

    def __or__(self, other: Filter) -> Filter:
        return _Any((self, other))

    def __invert__(self) -> Filter:
        return _Not(self)


@dataclass(frozen=True, slots=True)
class _All(Filter):
    parts: tuple[Filter, ...]

    def __call__(self, msg: Message, ctx: Context) -> bool:
        return all(part(msg, ctx) for part in self.parts)


@dataclass(frozen=True, slots=True)
class _Any(Filter):
    parts: tuple[Filter, ...]

    def __call__(self, msg: Message, ctx: Context) -> bool:
        return any(part(msg, ctx) for part in self.parts)


@dataclass(frozen=True, slots=True)
class _Not(Filter):
    inner: Filter

    def __call__(self, msg: Message, ctx: Context) -> bool:
        return not self.inner(msg, ctx)


class Text(Filter):
    """Exact keywords, matched on typed text and on recognised speech."""

    __slots__ = ("keywords",)

    def __init__(self, *keywords: str) -> None:
        self.keywords = frozenset(normalize(k) for k in keywords)

    def __call__(self, msg: Message, ctx: Context) -> bool:
        text = msg.text
        return text is not None and normalize(text) in self.keywords


class TextPrefix(Filter):
    """A command with arguments, such as ``接单 12``."""

    __slots__ = ("prefixes",)

    def __init__(self, *prefixes: str) -> None:
        self.prefixes = tuple(prefixes)

    def __call__(self, msg: Message, ctx: Context) -> bool:
        text = msg.text
        return text is not None and normalize(text).startswith(self.prefixes)


class AnyText(Filter):
    """Any typed text or recognised speech."""

    def __call__(self, msg: Message, ctx: Context) -> bool:
        return msg.text is not None and msg.text != ""


class Number(Filter):
    """A reply that is an option number (typed, full-width, or spoken as 一/二/三)."""

    def __call__(self, msg: Message, ctx: Context) -> bool:
        return as_number(msg.text) is not None


class MsgType(Filter):
    __slots__ = ("types",)

    def __init__(self, *types: str) -> None:
        self.types = frozenset(types)

    def __call__(self, msg: Message, ctx: Context) -> bool:
        return msg.msg_type in self.types


class Event(Filter):
    """Events by lower-cased name: ``subscribe``, ``scan``, ``click``..."""

    __slots__ = ("events",)

    def __init__(self, *events: str) -> None:
        self.events = frozenset(e.lower() for e in events)

    def __call__(self, msg: Message, ctx: Context) -> bool:
        return msg.event is not None and msg.event in self.events


class State(Filter):
    """The user's stored state: exact names, or a whole flow with ``"report:*"``."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, *names: str) -> None:
        self.exact = frozenset(n for n in names if not n.endswith("*"))
        self.prefixes = tuple(n[:-1] for n in names if n.endswith("*"))

    def __call__(self, msg: Message, ctx: Context) -> bool:
        state = ctx.state
        if state is None:
            return False
        return state in self.exact or (bool(self.prefixes) and state.startswith(self.prefixes))


class NoState(Filter):
    def __call__(self, msg: Message, ctx: Context) -> bool:
        return ctx.state is None


class Router(Generic[D]):
    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: list[tuple[tuple[Filter, ...], Handler[D]]] = []
        self._children: list[Router[D]] = []

    def on(self, *filters: Filter) -> Callable[[Handler[D]], Handler[D]]:
        def register(handler: Handler[D]) -> Handler[D]:
            self._handlers.append((filters, handler))
            return handler

        return register

    def include(self, *routers: Router[D]) -> None:
        self._children.extend(routers)

    def match(self, msg: Message, ctx: Context) -> Handler[D] | None:
        for filters, handler in self._handlers:
            if all(f(msg, ctx) for f in filters):
                return handler
        for child in self._children:
            found = child.match(msg, ctx)
            if found is not None:
                return found
        return None

    def describe(self) -> list[str]:
        """Handler names in matching order (for logs and a test of the order)."""
        names = [f"{self.name}.{getattr(h, '__name__', repr(h))}" for _, h in self._handlers]
        for child in self._children:
            names.extend(child.describe())
        return names
