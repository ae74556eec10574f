"""Reports (报事), who follows them, grids and the alert outbox.

A report keeps its whole history in its own record: a transition is one
compare-and-set that checks the state it starts from, so a retried or
concurrent transition (a WeChat retry, a double tap, two workers) applies once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConflictError
from storage.contract import Record, Store

log = logging.getLogger("storage.reports")

REPORTED = "reported"
ACCEPTED = "accepted"
RESOLVED = "resolved"
REJECTED = "rejected"
OPEN_STATES = (REPORTED, ACCEPTED)
CLOSED_STATES = (RESOLVED, REJECTED)
STATES = (REPORTED, ACCEPTED, RESOLVED, REJECTED)


@dataclass(frozen=True, slots=True)
class Transition:
    at: float
    by: str  # openid of a worker or resident, an admin's name, or "system"
    action: str  # filed, accepted, resolved, rejected, transferred, reopened, rated, escalated...
    state: str  # the state after it
    note: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "by": self.by,
            "action": self.action,
            "state": self.state,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Photo:
    media_id: str
    pic_url: str
    path: str = ""  # where the fetched copy is kept, once fetched


@dataclass(frozen=True, slots=True)
class Report:
    number: int
    reporter: str
    category: str
    text: str
    created_at: float
    state: str = REPORTED
    grid: str = ""  # "": the community's default queue
    lat: float | None = None
    lng: float | None = None
    label: str = ""  # WeChat's name for the point, or the typed address
    photos: tuple[Photo, ...] = ()
    voice_media_id: str = ""
    assignee: str = ""
    followers: tuple[str, ...] = ()
    history: tuple[Transition, ...] = ()
    rating: int | None = None
    reopened: bool = False
    duplicate_of: int | None = None
    escalated: Mapping[str, int] = field(default_factory=dict)  # clock -> level reached
    accepted_at: float | None = None
    resolved_at: float | None = None
    closed_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def to_doc(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "reporter": self.reporter,
            "category": self.category,
            "text": self.text,
            "created_at": self.created_at,
            "state": self.state,
            "grid": self.grid,
            "lat": self.lat,
            "lng": self.lng,
            "cell": cell_of(self.lat, self.lng),
            "label": self.label,
            "photos": [
                {"media_id": p.media_id, "pic_url": p.pic_url, "path": p.path} for p in self.photos
            ],
            "voice_media_id": self.voice_media_id,
            "assignee": self.assignee,
            "followers": list(self.followers),
            "history": [t.to_doc() for t in self.history],
            "rating": self.rating,
            "reopened": self.reopened,
            "duplicate_of": self.duplicate_of,
            "escalated": dict(self.escalated),
            "accepted_at": self.accepted_at,
            "resolved_at": self.resolved_at,
            "closed_at": self.closed_at,
        }


# Reports are filed into cells of 0.002° (about 220 m north-south, 190 m east-west at
# Chengdu's latitude), so "open reports within 100 m" reads a few cells, not them all.
CELL_DEGREES = 0.002


def cell_of(lat: float | None, lng: float | None) -> str | None:
    if lat is None or lng is None:
        return None
    return f"{int(lat // CELL_DEGREES)}:{int(lng // CELL_DEGREES)}"


def cells_around(lat: float, lng: float, reach: int) -> list[str]:
    """The cell of the point and its neighbours up to ``reach`` cells away."""
    row, col = int(lat // CELL_DEGREES), int(lng // CELL_DEGREES)
    return [
        f"{row + dr}:{col + dc}"
        for dr in range(-reach, reach + 1)
        for dc in range(-reach, reach + 1)
    ]


def report_from(record: Record) -> Report:
    d = record.data
    return Report(
        number=int(d["number"]),
        reporter=d["reporter"],
        category=d["category"],
        text=d["text"],
        created_at=d["created_at"],
        state=d["state"],
        grid=d.get("grid", ""),
        lat=d.get("lat"),
        lng=d.get("lng"),
        label=d.get("label", ""),
        photos=tuple(
            Photo(p["media_id"], p["pic_url"], p.get("path", "")) for p in d.get("photos", ())
        ),
        voice_media_id=d.get("voice_media_id", ""),
        assignee=d.get("assignee", ""),
        followers=tuple(d.get("followers", ())),
        history=tuple(
            Transition(t["at"], t["by"], t["action"], t["state"], t.get("note", ""))
            for t in d.get("history", ())
        ),
        rating=d.get("rating"),
        reopened=bool(d.get("reopened", False)),
        duplicate_of=d.get("duplicate_of"),
        escalated=dict(d.get("escalated", {})),
        accepted_at=d.get("accepted_at"),
        resolved_at=d.get("resolved_at"),
        closed_at=d.get("closed_at"),
    )


def report_key(number: int) -> str:
    return f"{number:010d}"


class Unchanged(Exception):
    """Raised by a change to write nothing (the transition had already happened)."""


class ReportRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("reports")
        self._follows = store.collection("follows")

    async def get(self, number: int) -> Report | None:
        record = await self._items.get(report_key(number))
        return report_from(record) if record else None

    async def insert(self, report: Report) -> None:
        await self._items.insert(report_key(report.number), report.to_doc())

    async def change(self, number: int, change: Callable[[Report], Report]) -> Report:
        """Apply ``change`` atomically (it may run again under contention: no side effects).

        ``KeyError`` if there is no such report; :class:`Unchanged` (raised by ``change``)
        passes through and nothing is written.
        """

        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(number)
            return change(report_from(current)).to_doc()

        return report_from(await self._items.update(report_key(number), apply))

    async def by_reporter(self, openid: str, *, limit: int = 50) -> list[Report]:
        found = await self._items.find("by_reporter", (openid,), limit=limit)
        return [report_from(r) for r in found]

    async def by_state(self, state: str, *, limit: int = 20_000) -> list[Report]:
        return await self._capped("by_state", (state,), limit)

    async def by_grid(self, grid: str, state: str, *, limit: int = 5000) -> list[Report]:
        return await self._capped("by_grid_state", (grid, state), limit)

    async def by_category(self, category: str, state: str, *, limit: int = 5000) -> list[Report]:
        return await self._capped("by_category_state", (category, state), limit)

    async def in_cells(self, category: str, cells: list[str], state: str) -> list[Report]:
        found: list[Report] = []
        for cell in cells:
            records = await self._items.find(
                "by_category_cell_state", (category, cell, state), limit=500
            )
            found += [report_from(r) for r in records]
        return found

    async def _capped(self, index: str, values: tuple[str, ...], limit: int) -> list[Report]:
        found = await self._items.find(index, values, limit=limit)
        if len(found) == limit:
            # Open reports this many mean a backlog no screen shows whole: say so loudly.
            log.error(
                "%s %s reached its cap of %s reports: later ones are not read", index, values, limit
            )
        return [report_from(r) for r in found]

    async def page(self, *, after: int | None, limit: int) -> list[Report]:
        start = report_key(after) if after is not None else None
        return [report_from(r) for r in await self._items.scan(after=start, limit=limit)]

    async def follow(self, openid: str, number: int, at: float) -> None:
        await self._follows.put(
            f"{openid}:{report_key(number)}", {"openid": openid, "report": number, "at": at}
        )

    async def followed_by(self, openid: str, *, limit: int = 50) -> list[int]:
        found = await self._follows.find("by_openid", (openid,), limit=limit)
        return [int(r.data["report"]) for r in found]


@dataclass(frozen=True, slots=True)
class Grid:
    id: str
    name: str
    area: Mapping[str, Any]  # GeoJSON MultiPolygon, [longitude, latitude] positions
    workers: tuple[str, ...] = ()
    leader: str = ""
    wecom_url: str = ""
    updated_at: float = 0.0


class GridRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("grids")

    @staticmethod
    def _grid(record: Record) -> Grid:
        d = record.data
        return Grid(
            record.key,
            d["name"],
            d["area"],
            tuple(d.get("workers", ())),
            d.get("leader", ""),
            d.get("wecom_url", ""),
            d.get("updated_at", 0.0),
        )

    async def put(self, grid: Grid) -> None:
        await self._items.put(
            grid.id,
            {
                "name": grid.name,
                "area": dict(grid.area),
                "workers": list(grid.workers),
                "leader": grid.leader,
                "wecom_url": grid.wecom_url,
                "updated_at": grid.updated_at,
            },
        )

    async def get(self, grid_id: str) -> Grid | None:
        record = await self._items.get(grid_id)
        return self._grid(record) if record else None

    async def delete(self, grid_id: str) -> bool:
        return await self._items.delete(grid_id)

    async def all(self) -> list[Grid]:
        return [self._grid(r) for r in await self._items.scan(limit=10_000)]


PENDING = "pending"
SENT = "sent"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    report: int
    channel: str  # "wechat" (template or customer-service message) or "wecom"
    target: str  # an openid, or a robot webhook URL
    text: str
    fields: Mapping[str, str]
    state: str
    attempts: int
    next_at: float
    created_at: float
    last_error: str = ""
    sent_at: float | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "report": self.report,
            "channel": self.channel,
            "target": self.target,
            "text": self.text,
            "fields": dict(self.fields),
            "state": self.state,
            "attempts": self.attempts,
            "next_at": self.next_at,
            "created_at": self.created_at,
            "last_error": self.last_error,
            "sent_at": self.sent_at,
        }


def _alert(record: Record) -> Alert:
    d = record.data
    return Alert(
        record.key,
        int(d["report"]),
        d["channel"],
        d["target"],
        d["text"],
        dict(d.get("fields", {})),
        d["state"],
        int(d["attempts"]),
        d["next_at"],
        d["created_at"],
        d.get("last_error", ""),
        d.get("sent_at"),
    )


class AlertRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("alerts")

    async def add(self, alert: Alert) -> bool:
        """Queue ``alert``; False if the same alert (same key) was queued before."""
        try:
            await self._items.insert(alert.key, alert.to_doc())
        except ConflictError:
            return False
        return True

    async def get(self, key: str) -> Alert | None:
        record = await self._items.get(key)
        return _alert(record) if record else None

    async def change(self, key: str, change: Callable[[Alert], Alert]) -> Alert:
        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(key)
            return change(_alert(current)).to_doc()

        return _alert(await self._items.update(key, apply))

    async def by_state(self, state: str, *, limit: int = 1000) -> list[Alert]:
        return [_alert(r) for r in await self._items.find("by_state", (state,), limit=limit)]
