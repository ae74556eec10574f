"""Staff accounts for the admin pages, and their login sessions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from storage.contract import Record, Store


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str  # "admin" or "grid"
    password_hash: str
    display: str = ""
    openid: str = ""  # a grid worker's WeChat openid: the grids listing it are theirs
    failures: int = 0  # failed logins since the last success or lock
    locked_until: float = 0.0
    created_at: float = 0.0
    created_by: str = ""

    @property
    def label(self) -> str:
        return self.display or self.name

    def to_doc(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "password_hash": self.password_hash,
            "display": self.display,
            "openid": self.openid,
            "failures": self.failures,
            "locked_until": self.locked_until,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


def _user(record: Record) -> User:
    d = record.data
    return User(
        record.key,
        d["role"],
        d["password_hash"],
        d.get("display", ""),
        d.get("openid", ""),
        int(d.get("failures", 0)),
        float(d.get("locked_until", 0.0)),
        float(d.get("created_at", 0.0)),
        d.get("created_by", ""),
    )


class UserRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("users")

    async def get(self, name: str) -> User | None:
        record = await self._items.get(name)
        return None if record is None else _user(record)

    async def insert(self, user: User) -> User:
        return _user(await self._items.insert(user.name, user.to_doc()))

    async def update(self, name: str, change: Callable[[User], User]) -> User:
        def apply(current: Record | None) -> dict[str, Any]:
            if current is None:
                raise KeyError(name)
            return change(_user(current)).to_doc()

        return _user(await self._items.update(name, apply))

    async def all(self) -> list[User]:
        return [_user(r) for r in await self._items.scan(limit=10_000)]


@dataclass(frozen=True, slots=True)
class Session:
    key: str  # SHA-256 of the token
    user: str
    csrf: str
    created_at: float
    seen_at: float
    expires_at: float

    def to_doc(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "csrf": self.csrf,
            "created_at": self.created_at,
            "seen_at": self.seen_at,
            "expires_at": self.expires_at,
        }

    def seen(self, at: float) -> Session:
        return replace(self, seen_at=at)

    def ended(self, now: float, idle_limit: float) -> bool:
        """Past its absolute expiry, or unused for longer than ``idle_limit`` seconds."""
        return self.expires_at <= now or now - self.seen_at > idle_limit


def _session(record: Record) -> Session:
    d = record.data
    return Session(record.key, d["user"], d["csrf"], d["created_at"], d["seen_at"], d["expires_at"])


class SessionRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("sessions")

    async def get(self, key: str) -> Session | None:
        record = await self._items.get(key)
        return None if record is None else _session(record)

    async def insert(self, session: Session) -> Session:
        return _session(await self._items.insert(session.key, session.to_doc()))

    async def put(self, session: Session) -> None:
        await self._items.put(session.key, session.to_doc())

    async def delete(self, key: str) -> None:
        await self._items.delete(key)

    async def of_user(self, user: str) -> list[Session]:
        return [_session(r) for r in await self._items.find("by_user", [user], limit=1000)]

    async def page(self, *, after: str | None, limit: int) -> list[Session]:
        return [_session(r) for r in await self._items.scan(after=after, limit=limit)]
