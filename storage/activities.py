"""Volunteer activities, their rosters, residents' sign-ups, the catalogue and redemptions.

An activity's roster (members, waitlist, check-ins) lives in the activity's own
record, so sign-up, cancellation, promotion and check-in are each one
compare-and-set on one record: atomic on every backend and in every process.
``signups`` is the per-resident view of the rosters (``我的报名``), written after
the roster; the roster is the truth when they differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from storage.contract import Record, Store

OPEN = "open"
CANCELLED = "cancelled"
DONE = "done"  # over and closed for check-in: out of the open index, so it stays small


@dataclass(frozen=True, slots=True)
class QRCode:
    ticket: str
    url: str
    scene: str
    expires_at: float | None  # None: a permanent code


@dataclass(frozen=True, slots=True)
class Activity:
    number: int
    title: str
    place: str
    starts_at: float
    ends_at: float
    capacity: int
    points: int
    remind_before: float
    description: str = ""
    status: str = OPEN
    created_at: float = 0.0
    created_by: str = ""
    qr: QRCode | None = None
    members: tuple[str, ...] = ()
    waitlist: tuple[str, ...] = ()
    checked_in: Mapping[str, float] = field(default_factory=dict)
    reminded_at: float | None = None
    cancel_reason: str = ""

    @property
    def places_left(self) -> int:
        return max(self.capacity - len(self.members), 0)

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED

    def to_doc(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "place": self.place,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "capacity": self.capacity,
            "points": self.points,
            "remind_before": self.remind_before,
            "description": self.description,
            "status": self.status,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "qr": None
            if self.qr is None
            else {
                "ticket": self.qr.ticket,
                "url": self.qr.url,
                "scene": self.qr.scene,
                "expires_at": self.qr.expires_at,
            },
            "members": list(self.members),
            "waitlist": list(self.waitlist),
            "checked_in": dict(self.checked_in),
            "reminded_at": self.reminded_at,
            "cancel_reason": self.cancel_reason,
        }


def activity_from(record: Record) -> Activity:
    d = record.data
    qr = d.get("qr")
    return Activity(
        number=int(d["number"]),
        title=d["title"],
        place=d["place"],
        starts_at=d["starts_at"],
        ends_at=d["ends_at"],
        capacity=int(d["capacity"]),
        points=int(d["points"]),
        remind_before=d["remind_before"],
        description=d.get("description", ""),
        status=d["status"],
        created_at=d.get("created_at", 0.0),
        created_by=d.get("created_by", ""),
        qr=None if not qr else QRCode(qr["ticket"], qr["url"], qr["scene"], qr["expires_at"]),
        members=tuple(d.get("members", ())),
        waitlist=tuple(d.get("waitlist", ())),
        checked_in=dict(d.get("checked_in", {})),
        reminded_at=d.get("reminded_at"),
        cancel_reason=d.get("cancel_reason", ""),
    )


def activity_key(number: int) -> str:
    return f"{number:010d}"


class ActivityRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("activities")

    async def get(self, number: int) -> Activity | None:
        record = await self._items.get(activity_key(number))
        return activity_from(record) if record else None

    async def insert(self, activity: Activity) -> Activity:
        await self._items.insert(activity_key(activity.number), activity.to_doc())
        return activity

    async def change(
        self, number: int, change: Callable[[Activity], Activity]
    ) -> tuple[Activity, Activity]:
        """Apply ``change`` atomically; returns (before, after). ``KeyError`` if absent.

        ``change`` may raise to refuse; it may run more than once under contention,
        so it must not have side effects.
        """
        seen: list[Activity] = []

        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(number)
            before = activity_from(current)
            seen.append(before)
            return change(before).to_doc()

        saved = await self._items.update(activity_key(number), apply)
        return seen[-1], activity_from(saved)

    async def by_status(self, status: str, *, limit: int = 500) -> list[Activity]:
        return [
            activity_from(r) for r in await self._items.find("by_status", (status,), limit=limit)
        ]

    async def page(self, *, after: int | None, limit: int) -> list[Activity]:
        """Every activity in number order, a page at a time (whatever its status)."""
        start = activity_key(after) if after is not None else None
        return [activity_from(r) for r in await self._items.scan(after=start, limit=limit)]


@dataclass(frozen=True, slots=True)
class SignUp:
    openid: str
    activity: int
    status: str  # confirmed / waitlisted / cancelled
    title: str
    starts_at: float
    ends_at: float
    at: float


class SignUpRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("signups")

    async def record(self, signup: SignUp) -> None:
        await self._items.put(
            f"{signup.openid}:{activity_key(signup.activity)}",
            {
                "openid": signup.openid,
                "activity": signup.activity,
                "status": signup.status,
                "title": signup.title,
                "starts_at": signup.starts_at,
                "ends_at": signup.ends_at,
                "at": signup.at,
            },
        )

    async def of(self, openid: str, *, limit: int = 200) -> list[SignUp]:
        found = await self._items.find("by_openid", (openid,), limit=limit)
        return [
            SignUp(
                r.data["openid"],
                int(r.data["activity"]),
                r.data["status"],
                r.data["title"],
                r.data["starts_at"],
                r.data["ends_at"],
                r.data["at"],
            )
            for r in found
        ]


@dataclass(frozen=True, slots=True)
class Item:
    number: int
    name: str
    cost: int
    active: bool
    created_at: float


class CatalogueRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("catalogue")

    @staticmethod
    def _item(record: Record) -> Item:
        d = record.data
        return Item(int(record.key), d["name"], int(d["cost"]), bool(d["active"]), d["created_at"])

    async def insert(self, item: Item) -> Item:
        doc = {"name": item.name, "cost": item.cost, "active": item.active}
        await self._items.insert(f"{item.number:06d}", {**doc, "created_at": item.created_at})
        return item

    async def get(self, number: int) -> Item | None:
        record = await self._items.get(f"{number:06d}")
        return self._item(record) if record else None

    async def change(self, number: int, change: Callable[[Item], Item]) -> Item:
        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(number)
            new = change(self._item(current))
            return {
                "name": new.name,
                "cost": new.cost,
                "active": new.active,
                "created_at": new.created_at,
            }

        return self._item(await self._items.update(f"{number:06d}", apply))

    async def all(self) -> list[Item]:
        return [self._item(r) for r in await self._items.scan(limit=1000)]


PENDING = "pending"
ISSUED = "issued"
USED = "used"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Redemption:
    code: str
    openid: str
    item: int
    name: str
    cost: int
    state: str
    created_at: float
    updated_at: float
    note: str = ""
    confirmed_by: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "openid": self.openid,
            "item": self.item,
            "name": self.name,
            "cost": self.cost,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "note": self.note,
            "confirmed_by": self.confirmed_by,
        }


def _redemption(record: Record) -> Redemption:
    d = record.data
    return Redemption(
        record.key,
        d["openid"],
        int(d["item"]),
        d["name"],
        int(d["cost"]),
        d["state"],
        d["created_at"],
        d["updated_at"],
        d.get("note", ""),
        d.get("confirmed_by", ""),
    )


class RedemptionRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("redemptions")

    async def insert(self, redemption: Redemption) -> None:
        await self._items.insert(redemption.code, redemption.to_doc())

    async def get(self, code: str) -> Redemption | None:
        record = await self._items.get(code)
        return _redemption(record) if record else None

    async def change(self, code: str, change: Callable[[Redemption], Redemption]) -> Redemption:
        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(code)
            return change(_redemption(current)).to_doc()

        return _redemption(await self._items.update(code, apply))

    async def by_state(self, state: str, *, limit: int = 200) -> list[Redemption]:
        return [_redemption(r) for r in await self._items.find("by_state", (state,), limit=limit)]

    async def of(self, openid: str, *, limit: int = 50) -> list[Redemption]:
        return [_redemption(r) for r in await self._items.find("by_openid", (openid,), limit=limit)]


def with_state(
    redemption: Redemption, state: str, at: float, *, note: str = "", confirmed_by: str = ""
) -> Redemption:
    return replace(
        redemption,
        state=state,
        updated_at=at,
        note=note or redemption.note,
        confirmed_by=confirmed_by or redemption.confirmed_by,
    )
