"""The 户主坝坝会: meetings, households' answers, agenda suggestions, votes and objections.

An answer (RSVP) is a record per meeting and household, keyed ``meeting:household``,
so thousands of households answering at once never contend on one record, and the
organiser's counts are index counts. A ballot is inserted at ``vote:household`` with
"must not exist": one vote per household holds across every process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.contract import Record, Store

SCHEDULED = "scheduled"
CANCELLED = "cancelled"

ATTEND = "attend"
ABSENT = "absent"
MAYBE = "maybe"
ANSWERS = (ATTEND, ABSENT, MAYBE)

VOTE_OPEN = "open"  # ballots accepted until closes_at
VOTE_CLOSED = "closed"  # counted; results posted; objections accepted until publicity_until
VOTE_FINAL = "final"  # the 公示 period is over
VOTE_STATES = (VOTE_OPEN, VOTE_CLOSED, VOTE_FINAL)


def _key(number: int) -> str:
    return f"{number:010d}"


class Unchanged(Exception):
    """Raised by a change to write nothing (it had already happened)."""


@dataclass(frozen=True, slots=True)
class Meeting:
    number: int
    title: str
    starts_at: float
    ends_at: float
    place: str
    agenda: tuple[str, ...] = ()
    status: str = SCHEDULED
    created_at: float = 0.0
    created_by: str = ""
    updated_at: float = 0.0
    cancel_reason: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "place": self.place,
            "agenda": list(self.agenda),
            "status": self.status,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "cancel_reason": self.cancel_reason,
        }


def meeting_from(record: Record) -> Meeting:
    d = record.data
    return Meeting(
        number=int(d["number"]),
        title=d["title"],
        starts_at=d["starts_at"],
        ends_at=d["ends_at"],
        place=d["place"],
        agenda=tuple(d.get("agenda", ())),
        status=d["status"],
        created_at=d.get("created_at", 0.0),
        created_by=d.get("created_by", ""),
        updated_at=d.get("updated_at", 0.0),
        cancel_reason=d.get("cancel_reason", ""),
    )


class MeetingRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("meetings")

    async def get(self, number: int) -> Meeting | None:
        record = await self._items.get(_key(number))
        return meeting_from(record) if record else None

    async def insert(self, meeting: Meeting) -> None:
        await self._items.insert(_key(meeting.number), meeting.to_doc())

    async def change(self, number: int, change: Callable[[Meeting], Meeting]) -> Meeting:
        """Apply ``change`` atomically; ``KeyError`` if absent, :class:`Unchanged` passes."""

        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(number)
            return change(meeting_from(current)).to_doc()

        return meeting_from(await self._items.update(_key(number), apply))

    async def by_status(self, status: str, *, limit: int = 1000) -> list[Meeting]:
        found = await self._items.find("by_status", (status,), limit=limit)
        return [meeting_from(r) for r in found]

    async def page(self, *, after: int | None, limit: int) -> list[Meeting]:
        start = _key(after) if after is not None else None
        return [meeting_from(r) for r in await self._items.scan(after=start, limit=limit)]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A member's answer, passed on to the representative (who decides)."""

    openid: str
    name: str
    answer: str
    at: float


@dataclass(frozen=True, slots=True)
class Rsvp:
    meeting: int
    household: str
    answer: str = ""  # "" until the representative answers
    by: str = ""
    at: float = 0.0
    suggestions: tuple[Suggestion, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {
            "meeting": self.meeting,
            "household": self.household,
            "answer": self.answer,
            "by": self.by,
            "at": self.at,
            "suggestions": [
                {"openid": s.openid, "name": s.name, "answer": s.answer, "at": s.at}
                for s in self.suggestions
            ],
        }


def rsvp_from(record: Record) -> Rsvp:
    d = record.data
    return Rsvp(
        meeting=int(d["meeting"]),
        household=d["household"],
        answer=d.get("answer", ""),
        by=d.get("by", ""),
        at=d.get("at", 0.0),
        suggestions=tuple(
            Suggestion(s["openid"], s.get("name", ""), s["answer"], s["at"])
            for s in d.get("suggestions", ())
        ),
    )


class RsvpRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("rsvps")

    @staticmethod
    def key(meeting: int, household: str) -> str:
        return f"{_key(meeting)}:{household}"

    async def get(self, meeting: int, household: str) -> Rsvp | None:
        record = await self._items.get(self.key(meeting, household))
        return rsvp_from(record) if record else None

    async def change(
        self, meeting: int, household: str, change: Callable[[Rsvp], Rsvp]
    ) -> tuple[Rsvp, Rsvp]:
        """(before, after); a household that has not answered starts from an empty answer."""
        seen: list[Rsvp] = []

        def apply(current: Record | None) -> dict[str, Any]:
            before = rsvp_from(current) if current else Rsvp(meeting, household)
            seen.append(before)
            return change(before).to_doc()

        saved = await self._items.update(self.key(meeting, household), apply)
        return seen[-1], rsvp_from(saved)

    async def count(self, meeting: int, answer: str) -> int:
        return await self._items.count("by_meeting_answer", (meeting, answer))

    async def answered(self, meeting: int, answer: str, *, limit: int = 100_000) -> list[Rsvp]:
        found = await self._items.find("by_meeting_answer", (meeting, answer), limit=limit)
        return [rsvp_from(r) for r in found]


@dataclass(frozen=True, slots=True)
class AgendaItem:
    number: int
    meeting: int  # 0: suggested while no assembly was scheduled
    openid: str
    household: str
    text: str
    at: float


class AgendaRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("agenda")

    @staticmethod
    def _item(record: Record) -> AgendaItem:
        d = record.data
        return AgendaItem(
            int(record.key), int(d["meeting"]), d["openid"], d["household"], d["text"], d["at"]
        )

    async def insert(self, item: AgendaItem) -> None:
        await self._items.insert(
            _key(item.number),
            {
                "meeting": item.meeting,
                "openid": item.openid,
                "household": item.household,
                "text": item.text,
                "at": item.at,
            },
        )

    async def for_meeting(self, meeting: int, *, limit: int = 1000) -> list[AgendaItem]:
        found = await self._items.find("by_meeting", (meeting,), limit=limit)
        return [self._item(r) for r in found]


@dataclass(frozen=True, slots=True)
class Vote:
    number: int
    title: str
    options: tuple[str, ...]
    closes_at: float
    publicity_days: int
    seats: int = 1  # how many options win (最美居民户 may name several)
    meeting: int = 0
    status: str = VOTE_OPEN
    created_at: float = 0.0
    created_by: str = ""
    results: tuple[int, ...] = ()  # ballots per option, set when it closes
    closed_at: float | None = None
    results_pushed_at: float | None = None

    @property
    def publicity_until(self) -> float:
        return self.closes_at + self.publicity_days * 86400.0

    @property
    def turnout(self) -> int:
        return sum(self.results)

    def winners(self) -> list[int]:
        """Indexes of the winning options: the top ``seats``, and any tied with the last."""
        if not self.results or self.turnout == 0:
            return []
        ranked = sorted(range(len(self.options)), key=lambda i: -self.results[i])
        cut = self.results[ranked[min(self.seats, len(ranked)) - 1]]
        return [i for i in ranked if self.results[i] >= cut and self.results[i] > 0]

    def to_doc(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "options": list(self.options),
            "closes_at": self.closes_at,
            "publicity_days": self.publicity_days,
            "seats": self.seats,
            "meeting": self.meeting,
            "status": self.status,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "results": list(self.results),
            "closed_at": self.closed_at,
            "results_pushed_at": self.results_pushed_at,
        }


def vote_from(record: Record) -> Vote:
    d = record.data
    return Vote(
        number=int(d["number"]),
        title=d["title"],
        options=tuple(d["options"]),
        closes_at=d["closes_at"],
        publicity_days=int(d["publicity_days"]),
        seats=int(d.get("seats", 1)),
        meeting=int(d.get("meeting", 0)),
        status=d["status"],
        created_at=d.get("created_at", 0.0),
        created_by=d.get("created_by", ""),
        results=tuple(int(n) for n in d.get("results", ())),
        closed_at=d.get("closed_at"),
        results_pushed_at=d.get("results_pushed_at"),
    )


class VoteRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("votes")

    async def get(self, number: int) -> Vote | None:
        record = await self._items.get(_key(number))
        return vote_from(record) if record else None

    async def insert(self, vote: Vote) -> None:
        await self._items.insert(_key(vote.number), vote.to_doc())

    async def change(self, number: int, change: Callable[[Vote], Vote]) -> Vote:
        """Apply ``change`` atomically; ``KeyError`` if absent, :class:`Unchanged` passes."""

        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(number)
            return change(vote_from(current)).to_doc()

        return vote_from(await self._items.update(_key(number), apply))

    async def by_status(self, status: str, *, limit: int = 1000) -> list[Vote]:
        return [vote_from(r) for r in await self._items.find("by_status", (status,), limit=limit)]

    async def page(self, *, after: int | None, limit: int) -> list[Vote]:
        start = _key(after) if after is not None else None
        return [vote_from(r) for r in await self._items.scan(after=start, limit=limit)]


@dataclass(frozen=True, slots=True)
class Ballot:
    vote: int
    household: str
    choice: int  # index into the vote's options
    by: str
    at: float


class BallotRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("ballots")

    @staticmethod
    def key(vote: int, household: str) -> str:
        return f"{_key(vote)}:{household}"

    async def cast(self, ballot: Ballot) -> None:
        """Insert; :class:`~bot.errors.ConflictError` if the household has voted."""
        await self._items.insert(
            self.key(ballot.vote, ballot.household),
            {
                "vote": ballot.vote,
                "household": ballot.household,
                "choice": ballot.choice,
                "by": ballot.by,
                "at": ballot.at,
            },
        )

    async def get(self, vote: int, household: str) -> Ballot | None:
        record = await self._items.get(self.key(vote, household))
        if record is None:
            return None
        d = record.data
        return Ballot(int(d["vote"]), d["household"], int(d["choice"]), d["by"], d["at"])

    async def count(self, vote: int, choice: int) -> int:
        return await self._items.count("by_vote_choice", (vote, choice))


@dataclass(frozen=True, slots=True)
class Objection:
    number: int
    vote: int
    openid: str
    household: str
    text: str
    at: float


class ObjectionRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("objections")

    async def insert(self, objection: Objection) -> None:
        await self._items.insert(
            _key(objection.number),
            {
                "vote": objection.vote,
                "openid": objection.openid,
                "household": objection.household,
                "text": objection.text,
                "at": objection.at,
            },
        )

    async def for_vote(self, vote: int, *, limit: int = 1000) -> list[Objection]:
        found = await self._items.find("by_vote", (vote,), limit=limit)
        return [
            Objection(
                int(r.key),
                int(r.data["vote"]),
                r.data["openid"],
                r.data["household"],
                r.data["text"],
                r.data["at"],
            )
            for r in found
        ]
