"""The one async storage contract every backend implements.

A store holds named collections declared up front (see :mod:`storage.schema`).
Each collection maps a string key to a JSON-able document with a version
number, and answers equality look-ups only through declared indexes, so every
query a handler makes is served by an index on every backend.

Versions make conditional writes possible without transactions: ``put`` with
``expect_version`` succeeds only if the record is still at that version
(``0`` means "must not exist"), which is how the domain claims things once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConflictError

JSONScalar = str | int | float | bool | None
Doc = Mapping[str, Any]

# A compare-and-set loop that keeps losing means something is wrong: fail, don't spin.
MAX_UPDATE_ATTEMPTS = 50


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """An equality index over one or more top-level fields of a document."""

    name: str
    fields: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    name: str
    indexes: tuple[IndexSpec, ...] = field(default_factory=tuple)

    def index(self, name: str) -> IndexSpec:
        for spec in self.indexes:
            if spec.name == name:
                return spec
        raise KeyError(f"collection {self.name!r} has no index {name!r}")


@dataclass(frozen=True, slots=True)
class Record:
    """A stored document. ``data`` must be treated as read-only."""

    key: str
    version: int
    data: Doc


class Collection(ABC):
    """One collection of a store. All methods are coroutine-safe."""

    spec: CollectionSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    async def get(self, key: str) -> Record | None:
        """The record at ``key``, or ``None``."""

    @abstractmethod
    async def put(self, key: str, data: Doc, *, expect_version: int | None = None) -> Record:
        """Write ``data`` at ``key`` and return the new record (version + 1).

        With ``expect_version=None`` the write is unconditional (an upsert).
        With ``expect_version=0`` the key must not exist yet; with ``N > 0`` the
        record must be at version ``N``. Otherwise :class:`ConflictError` is
        raised and nothing is written. A unique index violated by ``data`` also
        raises :class:`ConflictError`. The call returns only once the write is
        durable.
        """

    async def insert(self, key: str, data: Doc) -> Record:
        """Create ``key``; :class:`ConflictError` if it exists."""
        return await self.put(key, data, expect_version=0)

    async def update(self, key: str, change: Callable[[Record | None], Doc]) -> Record:
        """Read ``key``, compute its new data with ``change``, write it only if unchanged meanwhile.

        ``change`` gets the current record (``None`` if absent) and may raise to abort.
        Concurrent updates of one key from any process all apply, each once.
        """
        for _ in range(MAX_UPDATE_ATTEMPTS):
            current = await self.get(key)
            data = change(current)
            try:
                return await self.put(key, data, expect_version=current.version if current else 0)
            except ConflictError:
                continue
        raise ConflictError(
            f"{self.name}/{key} stayed contended for {MAX_UPDATE_ATTEMPTS} attempts"
        )

    @abstractmethod
    async def delete(self, key: str, *, expect_version: int | None = None) -> bool:
        """Remove ``key``; ``False`` if it did not exist.

        With ``expect_version`` the record must be at that version, else
        :class:`ConflictError`. Returns once the deletion is durable.
        """

    @abstractmethod
    async def find(
        self, index: str, values: Sequence[JSONScalar], *, limit: int = 100
    ) -> list[Record]:
        """Records whose indexed fields equal ``values``, in key order, at most ``limit``."""

    @abstractmethod
    async def count(self, index: str, values: Sequence[JSONScalar]) -> int:
        """How many records the same look-up as :meth:`find` would return."""

    @abstractmethod
    async def scan(self, *, after: str | None = None, limit: int = 1000) -> list[Record]:
        """Every record in key order, a page at a time (export and migration)."""

    @abstractmethod
    async def size(self) -> int:
        """How many records the collection holds."""


class Store(ABC):
    """A set of collections with one lifetime: ``open`` once, ``close`` once."""

    backend: str

    @abstractmethod
    async def open(self) -> None:
        """Connect or load; raise :class:`StorageError` with a clear message on failure."""

    @abstractmethod
    async def close(self) -> None:
        """Flush what is pending and release every resource (files, locks, pools)."""

    @abstractmethod
    def collection(self, name: str) -> Collection:
        """The declared collection ``name``; ``KeyError`` if it was not declared."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StorageError` unless the store can read and write now."""
