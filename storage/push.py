"""Pushes (campaigns), one delivery record per recipient, and the monthly mass-send counts.

A campaign is keyed ``<campaign>:<period>`` and inserted once: whoever inserts it
owns the push, so a second scheduler, a restart or "run now" twice sends nothing.
Each recipient gets a delivery record keyed ``<campaign key>|<openid>`` that
moves ``pending → sending → sent / failed / unknown`` (``retry``: waiting for a
later attempt after an error that may pass). ``sending`` is written, with a lease,
before the request goes out, so a delivery is never sent twice by two processes,
and one whose sender died is known to have been in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConflictError
from storage.contract import Record, Store

# Campaign states.
CLAIMED = "claimed"  # inserted with its recipients; deliveries being written
RUNNING = "running"  # deliveries written; sending
DONE = "done"  # every delivery reached sent, failed or unknown
CAMPAIGN_STATES = (CLAIMED, RUNNING, DONE)

# Delivery states.
PENDING = "pending"  # to be sent
SENDING = "sending"  # claimed under a lease; the request may be in flight
RETRY = "retry"  # an error that may pass: pending again at ``next_at``
SENT = "sent"
FAILED = "failed"
UNKNOWN = "unknown"  # the answer was lost: maybe delivered, never retried automatically
DELIVERY_STATES = (PENDING, SENDING, RETRY, SENT, FAILED, UNKNOWN)
OPEN_STATES = (PENDING, SENDING, RETRY)

CHANNELS = ("template", "mass", "custom")


def campaign_key(campaign: str, period: str) -> str:
    return f"{campaign}:{period}"


def delivery_key(key: str, recipient: str) -> str:
    return f"{key}|{recipient}"


@dataclass(frozen=True, slots=True)
class Campaign:
    key: str
    campaign: str
    period: str
    channel: str
    text: str
    template_id: str
    template_data: Mapping[str, str]
    url: str
    audience: str
    state: str
    total: int
    created_at: float
    by: str
    batch_size: int = 0  # mass: openids per mass-send job
    paused_until: float = 0.0  # WeChat said busy or over its rate: nobody sends before this
    busy_streak: int = 0  # consecutive busy answers: the next pause doubles
    over_limit: int = 0  # mass: recipients who had had their 4 mass messages this month
    mass: Mapping[str, Any] = field(default_factory=dict)  # the mass batch in progress
    batches: tuple[Mapping[str, Any], ...] = ()  # mass: each batch sent (size, state, msg_id)
    finished_at: float | None = None
    counts: Mapping[str, int] = field(default_factory=dict)  # per state, when done
    version: int = 0


def campaign_from(record: Record) -> Campaign:
    d = record.data
    return Campaign(
        key=record.key,
        campaign=d["campaign"],
        period=d["period"],
        channel=d["channel"],
        text=d["text"],
        template_id=d.get("template_id", ""),
        template_data=dict(d.get("template_data") or {}),
        url=d.get("url", ""),
        audience=d.get("audience", ""),
        state=d["state"],
        total=int(d.get("total", 0)),
        created_at=d["created_at"],
        by=d.get("by", ""),
        batch_size=int(d.get("batch_size", 0)),
        paused_until=float(d.get("paused_until", 0.0)),
        busy_streak=int(d.get("busy_streak", 0)),
        over_limit=int(d.get("over_limit", 0)),
        mass=dict(d.get("mass") or {}),
        batches=tuple(dict(b) for b in d.get("batches") or ()),
        finished_at=d.get("finished_at"),
        counts=dict(d.get("counts") or {}),
        version=record.version,
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    key: str
    campaign: str  # the campaign key
    recipient: str
    state: str
    attempts: int = 0
    errcode: int | None = None
    reason: str = ""
    next_at: float = 0.0
    lease_until: float = 0.0
    owner: str = ""  # the engine (process) holding the lease
    batch: int | None = None  # mass: the batch it went out in
    msgid: int | None = None
    sent_at: float | None = None
    updated_at: float = 0.0
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "recipient": self.recipient,
            "state": self.state,
            "attempts": self.attempts,
            "errcode": self.errcode,
            "reason": self.reason,
            "next_at": self.next_at,
            "lease_until": self.lease_until,
            "owner": self.owner,
            "batch": self.batch,
            "msgid": self.msgid,
            "sent_at": self.sent_at,
            "updated_at": self.updated_at,
        }


def delivery_from(record: Record) -> Delivery:
    d = record.data
    return Delivery(
        key=record.key,
        campaign=d["campaign"],
        recipient=d["recipient"],
        state=d["state"],
        attempts=int(d.get("attempts", 0)),
        errcode=d.get("errcode"),
        reason=d.get("reason", ""),
        next_at=float(d.get("next_at", 0.0)),
        lease_until=float(d.get("lease_until", 0.0)),
        owner=d.get("owner", ""),
        batch=d.get("batch"),
        msgid=d.get("msgid"),
        sent_at=d.get("sent_at"),
        updated_at=float(d.get("updated_at", 0.0)),
        version=record.version,
    )


class Unchanged(Exception):
    """Raised by a change function to write nothing."""


class PushRepo:
    def __init__(self, store: Store) -> None:
        self._campaigns = store.collection("campaigns")
        self._deliveries = store.collection("deliveries")
        self._quota = store.collection("mass_quota")

    # -- campaigns ------------------------------------------------------------
    async def claim(self, key: str, doc: Mapping[str, Any]) -> Campaign | None:
        """Insert the campaign; ``None`` if it was claimed before (by anyone, ever)."""
        try:
            return campaign_from(await self._campaigns.insert(key, doc))
        except ConflictError:
            return None

    async def campaign(self, key: str) -> Campaign | None:
        record = await self._campaigns.get(key)
        return campaign_from(record) if record else None

    async def recipients(self, key: str) -> list[str]:
        """The recipients kept in a claimed campaign until its deliveries are written."""
        record = await self._campaigns.get(key)
        return list(record.data.get("recipients") or ()) if record else []

    async def change_campaign(
        self, key: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Campaign:
        """Apply ``change`` to the stored document atomically; :class:`Unchanged` writes nothing."""

        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(key)
            return change(dict(current.data))

        return campaign_from(await self._campaigns.update(key, apply))

    async def campaigns_in(self, state: str, *, limit: int = 1000) -> list[Campaign]:
        found = await self._campaigns.find("by_state", (state,), limit=limit)
        return [campaign_from(r) for r in found]

    # -- deliveries -----------------------------------------------------------
    async def add(self, delivery: Delivery) -> bool:
        """Write a new delivery; ``False`` if it exists (a resumed write)."""
        try:
            await self._deliveries.insert(delivery.key, delivery.to_doc())
        except ConflictError:
            return False
        return True

    async def delivery(self, key: str) -> Delivery | None:
        record = await self._deliveries.get(key)
        return delivery_from(record) if record else None

    async def in_state(self, campaign: str, state: str, *, limit: int) -> list[Delivery]:
        found = await self._deliveries.find("by_campaign_state", (campaign, state), limit=limit)
        return [delivery_from(r) for r in found]

    async def count(self, campaign: str, state: str) -> int:
        return await self._deliveries.count("by_campaign_state", (campaign, state))

    async def swap(self, before: Delivery, after: Delivery) -> Delivery | None:
        """Write ``after`` only if the record is still ``before`` (same version); else ``None``."""
        try:
            record = await self._deliveries.put(
                before.key, after.to_doc(), expect_version=before.version
            )
        except ConflictError:
            return None
        return delivery_from(record)

    async def change(self, key: str, change: Callable[[Delivery], Delivery]) -> Delivery | None:
        """Apply ``change`` atomically; ``None`` if it raised :class:`Unchanged` (or no record)."""

        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise Unchanged
            return change(delivery_from(current)).to_doc()

        try:
            return delivery_from(await self._deliveries.update(key, apply))
        except Unchanged:
            return None

    # -- the mass-send monthly count ------------------------------------------
    async def reserve_mass(self, openid: str, month: str, campaign: str, limit: int) -> bool:
        """Count ``campaign`` as one of ``openid``'s mass messages of ``month``.

        ``False`` if the recipient already had ``limit`` others that month. Counting the
        same campaign again is free (a retried batch), so the count stays exact.
        """

        def apply(current: Record | None) -> dict[str, Any]:
            taken: list[str] = list(current.data["campaigns"]) if current else []
            if campaign in taken:
                raise Unchanged
            if len(taken) >= limit:
                raise _OverLimit
            taken.append(campaign)
            return {"openid": openid, "month": month, "count": len(taken), "campaigns": taken}

        key = f"{openid}|{month}"
        first = {"openid": openid, "month": month, "count": 1, "campaigns": [campaign]}
        try:
            await self._quota.insert(key, first)  # the month's first: one round trip
            return True
        except ConflictError:
            pass
        try:
            await self._quota.update(key, apply)
        except Unchanged:
            return True
        except _OverLimit:
            return False
        return True

    async def release_mass(self, openid: str, month: str, campaign: str) -> None:
        """Undo :meth:`reserve_mass` for a job WeChat refused (nothing was delivered)."""

        def apply(current: Record | None) -> dict[str, Any]:
            if current is None or campaign not in current.data["campaigns"]:
                raise Unchanged
            left = [c for c in current.data["campaigns"] if c != campaign]
            return {"openid": openid, "month": month, "count": len(left), "campaigns": left}

        try:
            await self._quota.update(f"{openid}|{month}", apply)
        except Unchanged:
            return

    async def mass_count(self, openid: str, month: str) -> int:
        record = await self._quota.get(f"{openid}|{month}")
        return len(record.data["campaigns"]) if record else 0

    async def set_mass_count(self, openid: str, month: str, campaigns: Sequence[str]) -> None:
        """Record mass messages sent outside the engine (an import, a test)."""
        await self._quota.put(
            f"{openid}|{month}",
            {
                "openid": openid,
                "month": month,
                "count": len(campaigns),
                "campaigns": list(campaigns),
            },
        )


class _OverLimit(Exception):
    pass
