"""The storage contract harness: every backend runs ``test_contract.py`` unchanged.

To add a backend, add one entry to ``BACKENDS``: a name and a function that
builds an unopened store for a test's location (a temporary directory, or for a
server backend whatever names a database it may reset for the test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from storage.contract import CollectionSpec, IndexSpec, Store
from storage.tinydb_store import TinyDBStore

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

MakeStore = Callable[[Path, Sequence[CollectionSpec]], Store]

BACKENDS: dict[str, MakeStore] = {
    "tinydb": lambda location, schema: TinyDBStore(location / "data", schema),
    # A tiny journal limit makes every test also run across compactions.
    "tinydb-compacting": lambda location, schema: TinyDBStore(
        location / "data", schema, compact_after=3
    ),
}


class Stores:
    """Opens stores of one backend at one location, and closes them all at the end."""

    def __init__(self, make: MakeStore, location: Path) -> None:
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
    harness = Stores(BACKENDS[request.param], tmp_path)
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
