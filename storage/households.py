"""Households (户) and which household each resident belongs to.

A household's members and its representative (户代表) live in the household's own
record, so binding, leaving and a handover are each one compare-and-set: two
residents binding at once cannot both become the representative. ``memberships``
(keyed by openid) points a resident at their one household; it is written before
the household when binding and removed after it when leaving, so it always names
the only household that could list the resident. The household record is the
truth: a pointer to a household that does not list the resident means "not bound".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.errors import ConflictError
from storage.contract import Record, Store


class Unchanged(Exception):
    """Raised by a change to write nothing (it had already happened)."""


@dataclass(frozen=True, slots=True)
class Member:
    openid: str
    name: str  # what the resident asked to be called (王阿姨); may be empty
    joined_at: float


@dataclass(frozen=True, slots=True)
class Household:
    id: str  # normalised "building-unit-room", e.g. "3-2-501" ("12-501" without units)
    building: str
    unit: str
    room: str
    representative: str = ""  # an openid among the members; "" only when nobody is bound
    members: tuple[Member, ...] = ()  # in the order they bound
    grid: str = ""
    tags: tuple[str, ...] = ()
    created_at: float = 0.0
    created_by: str = ""

    @property
    def label(self) -> str:
        """``3栋2单元501`` as residents write it."""
        unit = f"{self.unit}单元" if self.unit else ""
        return f"{self.building}栋{unit}{self.room}"

    def member(self, openid: str) -> Member | None:
        return next((m for m in self.members if m.openid == openid), None)

    def to_doc(self) -> dict[str, Any]:
        return {
            "building": self.building,
            "unit": self.unit,
            "room": self.room,
            "representative": self.representative,
            "members": [
                {"openid": m.openid, "name": m.name, "joined_at": m.joined_at} for m in self.members
            ],
            "grid": self.grid,
            "tags": list(self.tags),
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


def household_from(record: Record) -> Household:
    d = record.data
    return Household(
        id=record.key,
        building=d["building"],
        unit=d.get("unit", ""),
        room=d["room"],
        representative=d.get("representative", ""),
        members=tuple(
            Member(m["openid"], m.get("name", ""), m.get("joined_at", 0.0))
            for m in d.get("members", ())
        ),
        grid=d.get("grid", ""),
        tags=tuple(d.get("tags", ())),
        created_at=d.get("created_at", 0.0),
        created_by=d.get("created_by", ""),
    )


class HouseholdRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("households")

    async def get(self, household_id: str) -> Household | None:
        record = await self._items.get(household_id)
        return household_from(record) if record else None

    async def insert(self, household: Household) -> Household:
        """Create it; :class:`~bot.errors.ConflictError` if the address exists."""
        await self._items.insert(household.id, household.to_doc())
        return household

    async def change(
        self, household_id: str, change: Callable[[Household | None], Household]
    ) -> tuple[Household | None, Household]:
        """Apply ``change`` atomically (it gets ``None`` for a household not yet stored).

        Returns (before, after). ``change`` may run more than once under contention, so
        it must have no side effects; it may raise to refuse, or :class:`Unchanged`.
        """
        seen: list[Household | None] = []

        def apply(current: Record | None) -> dict[str, Any]:
            before = household_from(current) if current else None
            seen.append(before)
            return change(before).to_doc()

        saved = await self._items.update(household_id, apply)
        return seen[-1], household_from(saved)

    async def page(self, *, after: str | None, limit: int) -> list[Household]:
        return [household_from(r) for r in await self._items.scan(after=after, limit=limit)]

    async def in_building(self, building: str, *, limit: int = 100_000) -> list[Household]:
        found = await self._items.find("by_building", (building,), limit=limit)
        return [household_from(r) for r in found]

    async def in_grid(self, grid: str, *, limit: int = 100_000) -> list[Household]:
        return [household_from(r) for r in await self._items.find("by_grid", (grid,), limit=limit)]

    async def count(self) -> int:
        return await self._items.size()


@dataclass(frozen=True, slots=True)
class Membership:
    openid: str
    household: str
    at: float


class MembershipRepo:
    """openid → household: a resident belongs to one household."""

    def __init__(self, store: Store) -> None:
        self._items = store.collection("memberships")

    async def get(self, openid: str) -> Membership | None:
        record = await self._items.get(openid)
        if record is None:
            return None
        return Membership(openid, record.data["household"], record.data["at"])

    async def put(self, membership: Membership) -> None:
        await self._items.put(
            membership.openid, {"household": membership.household, "at": membership.at}
        )

    async def claim(self, membership: Membership) -> bool:
        """Point an unbound resident at a household; ``False`` if they already point elsewhere."""
        try:
            await self._items.insert(
                membership.openid, {"household": membership.household, "at": membership.at}
            )
        except ConflictError:
            current = await self.get(membership.openid)
            return current is not None and current.household == membership.household
        return True

    async def delete(self, openid: str, *, household: str) -> None:
        """Remove the pointer if it still names ``household`` (a newer binding stays)."""
        record = await self._items.get(openid)
        if record is None or record.data.get("household") != household:
            return
        with contextlib.suppress(ConflictError):
            await self._items.delete(openid, expect_version=record.version)
