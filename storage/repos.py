"""Typed repositories over the contract: the queries the product makes, written once.

They know the shape of each collection's documents and nothing of WeChat,
HTTP or flows; every backend serves them through the same contract.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage.contract import Record, Store


@dataclass(frozen=True, slots=True)
class SavedConversation:
    state: str | None
    data: Mapping[str, Any]
    updated_at: float


class ConversationRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("conversations")

    async def load(self, openid: str) -> SavedConversation | None:
        record = await self._items.get(openid)
        if record is None:
            return None
        doc = record.data
        return SavedConversation(doc.get("state"), doc.get("data") or {}, doc["updated_at"])

    async def save(
        self, openid: str, state: str | None, data: Mapping[str, Any], now: float
    ) -> None:
        # The caller holds the user's lock, so an unconditional write cannot lose an update.
        if state is None and not data:
            await self._items.delete(openid)
        else:
            await self._items.put(openid, {"state": state, "data": dict(data), "updated_at": now})


@dataclass(frozen=True, slots=True)
class Resident:
    openid: str
    subscribed: bool
    first_seen: float
    last_seen: float


class ResidentRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("residents")

    async def get(self, openid: str) -> Resident | None:
        record = await self._items.get(openid)
        if record is None:
            return None
        d = record.data
        return Resident(openid, bool(d["subscribed"]), d["first_seen"], d["last_seen"])

    async def set_subscribed(self, openid: str, subscribed: bool, now: float) -> Resident:
        """Record a follow or unfollow; returns the resident as now stored."""
        record = await self._items.get(openid)
        first_seen = record.data["first_seen"] if record else now
        doc = {"subscribed": subscribed, "first_seen": first_seen, "last_seen": now}
        await self._items.put(openid, doc)
        return Resident(openid, subscribed, first_seen, now)

    async def count_subscribed(self) -> int:
        return await self._items.count("by_subscribed", (True,))


class Sequences:
    """Gap-free, human-sized numbers (留言 12, 报事 345) shared by every process."""

    def __init__(self, store: Store) -> None:
        self._items = store.collection("counters")

    async def next(self, name: str) -> int:
        saved = await self._items.update(
            name, lambda current: {"value": (current.data["value"] if current else 0) + 1}
        )
        return int(saved.data["value"])


@dataclass(frozen=True, slots=True)
class FeedbackReply:
    text: str
    by: str
    at: float


@dataclass(frozen=True, slots=True)
class Feedback:
    number: int
    openid: str
    text: str
    created_at: float
    replies: tuple[FeedbackReply, ...] = ()


def _feedback(record: Record) -> Feedback:
    d = record.data
    replies = tuple(FeedbackReply(r["text"], r["by"], r["at"]) for r in d.get("replies", ()))
    return Feedback(int(record.key), d["openid"], d["text"], d["created_at"], replies)


class FeedbackRepo:
    """Messages residents leave for the community office (the 留言 flow)."""

    def __init__(self, store: Store, sequences: Sequences) -> None:
        self._items = store.collection("feedback")
        self._sequences = sequences

    async def add(self, openid: str, text: str, now: float) -> Feedback:
        number = await self._sequences.next("feedback")
        # Zero-padded keys keep key order equal to arrival order.
        doc = {"openid": openid, "text": text, "created_at": now}
        await self._items.insert(f"{number:010d}", doc)
        return Feedback(number, openid, text, now)

    async def by_resident(self, openid: str, limit: int = 20) -> list[Feedback]:
        return [_feedback(r) for r in await self._items.find("by_openid", (openid,), limit=limit)]

    async def get(self, number: int) -> Feedback | None:
        record = await self._items.get(f"{number:010d}")
        return _feedback(record) if record else None

    async def page(self, *, after: int | None, limit: int) -> list[Feedback]:
        """In arrival order, ``limit`` at a time after number ``after``."""
        start = f"{after:010d}" if after is not None else None
        return [_feedback(r) for r in await self._items.scan(after=start, limit=limit)]

    async def add_reply(self, number: int, reply: FeedbackReply) -> Feedback:
        def append(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(number)
            entry = {"text": reply.text, "by": reply.by, "at": reply.at}
            return {**current.data, "replies": [*current.data.get("replies", ()), entry]}

        return _feedback(await self._items.update(f"{number:010d}", append))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    actor: str
    action: str
    target: str
    detail: Mapping[str, Any]
    at: float


class AuditRepo:
    """Who changed what, when: written by every admin change, never edited."""

    def __init__(self, store: Store) -> None:
        self._items = store.collection("audit")
        self._tiebreak = itertools.count()

    async def add(
        self, actor: str, action: str, target: str, detail: Mapping[str, Any], now: float
    ) -> AuditEntry:
        # Time-ordered keys list the log in order without a shared counter to contend on;
        # the local count orders one process's entries made within one microsecond.
        entry_id = f"{int(now * 1_000_000):017d}-{next(self._tiebreak):08d}-{secrets.token_hex(4)}"
        doc = {
            "actor": actor,
            "action": action,
            "target": target,
            "detail": dict(detail),
            "at": now,
        }
        await self._items.insert(entry_id, doc)
        return AuditEntry(entry_id, actor, action, target, dict(detail), now)

    async def page(self, *, after: str | None, limit: int) -> list[AuditEntry]:
        return [
            AuditEntry(
                r.key,
                r.data["actor"],
                r.data["action"],
                r.data["target"],
                r.data["detail"],
                r.data["at"],
            )
            for r in await self._items.scan(after=after, limit=limit)
        ]
