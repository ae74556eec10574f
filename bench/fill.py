"""Filling a fresh store with a benchmark's community, fast: the same records on each backend.

PostgreSQL through ``PostgresStore.load`` (COPY, then INSERT … SELECT in batches) into a
new schema, then VACUUM ANALYZE; TinyDB by writing each collection's snapshot with the
store's own ``write_snapshot``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import asyncpg

from storage.contract import Record
from storage.postgres_store import PostgresStore
from storage.schema import SCHEMA
from storage.tinydb_journal import write_snapshot

PG_DSN = os.environ.get("GONGZHI_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
LOAD_BATCH = 50_000

Records = Mapping[str, list[Record]]


def batches(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


async def fill_postgres(namespace: str, records: Records) -> float:
    """Create schema ``namespace`` holding ``records``; returns the seconds it took."""
    started = time.perf_counter()
    admin = await asyncpg.connect(PG_DSN, timeout=10, command_timeout=600)
    try:
        await admin.execute(f'CREATE SCHEMA "{namespace}"')
        store = PostgresStore(PG_DSN, SCHEMA, namespace=namespace, pool_size=4)
        await store.open()
        try:
            for name, collection in records.items():
                for batch in batches(collection, LOAD_BATCH):
                    await store.load(name, batch, timeout=600)
        finally:
            await store.close()
        await admin.execute(f'VACUUM ANALYZE "{namespace}".records')
    finally:
        await admin.close()
    return time.perf_counter() - started


def fill_tinydb(directory: Path, records: Records) -> float:
    started = time.perf_counter()
    for name, collection in records.items():
        write_snapshot(directory, name, 0, collection)
    return time.perf_counter() - started
