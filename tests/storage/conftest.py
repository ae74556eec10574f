"""The storage contract harness: every backend runs ``test_contract.py`` unchanged.

To add a backend, add one entry to ``BACKENDS``: a name, a function that
provides a test's location (a temporary directory, or for a server backend
whatever names a database it may reset for the test, removed afterwards), and a
function that builds an unopened store for that location.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from storage.contract import CollectionSpec, IndexSpec, Store
from storage.postgres_store import PostgresStore
from storage.tinydb_store import TinyDBStore
from tests.services import PG_DSN, pg_namespace

ITEMS = CollectionSpec(
    "items",
    indexes=(
        IndexSpec("by_owner", ("owner",)),
        IndexSpec("by_owner_status", ("owner", "status")),
        IndexSpec("by_email", ("email",), unique=True),
        IndexSpec("by_slot", ("day", "seat"), unique=True),
    ),
)
PLAIN = CollectionSpec("plain")
TEST_SCHEMA: tuple[CollectionSpec, ...] = (ITEMS, PLAIN)

MakeStore = Callable[[str, Sequence[CollectionSpec]], Store]


@dataclass(frozen=True, slots=True)
class Backend:
    place: Callable[[Path], AbstractAsyncContextManager[str]]
    """Given the test's temporary directory, a location for its data (removed after)."""
    make: MakeStore


@asynccontextmanager
async def data_dir(tmp_path: Path) -> AsyncIterator[str]:
    yield str(tmp_path / "data")


def pg_schema(tmp_path: Path) -> AbstractAsyncContextManager[str]:
    # A fresh PostgreSQL schema per test: skips with a reason where PostgreSQL is absent.
    return pg_namespace()


BACKENDS: dict[str, Backend] = {
    "tinydb": Backend(data_dir, lambda location, schema: TinyDBStore(Path(location), schema)),
    # A tiny journal limit makes every test also run across compactions.
    "tinydb-compacting": Backend(
        data_dir, lambda location, schema: TinyDBStore(Path(location), schema, compact_after=3)
    ),
    "postgres": Backend(
        pg_schema,
        lambda location, schema: PostgresStore(PG_DSN, schema, namespace=location, pool_size=5),
    ),
}


class Stores:
    """Opens stores of one backend at one location, and closes them all at the end."""

    def __init__(self, make: MakeStore, location: str) -> None:
        self._make = make
        self._location = location
        self._open: list[Store] = []

    async def open(self, schema: Sequence[CollectionSpec] = TEST_SCHEMA) -> Store:
        store = self._make(self._location, schema)
        await store.open()
        self._open.append(store)
        return store

    async def reopen(self, store: Store, schema: Sequence[CollectionSpec] = TEST_SCHEMA) -> Store:
        """Close ``store`` and open the same data again, as a restarted process would."""
        await store.close()
        self._open.remove(store)
        return await self.open(schema)

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()


@pytest_asyncio.fixture(params=list(BACKENDS))
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    backend = BACKENDS[request.param]
    async with backend.place(tmp_path) as location:
        harness = Stores(backend.make, location)
        try:
            yield harness
        finally:
            await harness.close_all()


@pytest_asyncio.fixture
async def store(stores: Stores) -> Store:
    """An opened store with ``TEST_SCHEMA``, closed after the test."""
    return await stores.open()


@pytest.fixture
def reopen(stores: Stores) -> Callable[[Store], Awaitable[Store]]:
    """``store = await reopen(store)``: close it and open the same data again."""
    return stores.reopen
