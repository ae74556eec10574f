"""``python -m bot migrate --from tinydb:PATH --to postgres:DSN``.

Moves a community's embedded store into PostgreSQL. Idempotent: every record is
upserted with its version, so a second run changes nothing. It takes the
embedded store's lock, so it refuses to run while a server uses that store, and
it verifies each collection afterwards by comparing keys and versions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ConfigError, StorageError
from storage.contract import Collection, Record
from storage.schema import SCHEMA

log = logging.getLogger("bot.migrate")

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Copied:
    collection: str
    source: int
    written: int
    verified: bool


def check_source(path: str) -> None:
    if not Path(path).is_dir():
        raise ConfigError(f"no embedded store at {path}")


def parse_target(text: str, scheme: str) -> str:
    prefix = f"{scheme}:"
    if not text.startswith(prefix) or len(text) == len(prefix):
        raise ConfigError(f"expected {scheme}:…, got {text!r}")
    return text[len(prefix) :]


async def migrate(
    source_path: str, dsn: str, *, pg_schema: str, say: Callable[[str], None]
) -> list[Copied]:
    from storage.postgres_store import PostgresStore
    from storage.tinydb_store import TinyDBStore

    source = TinyDBStore(Path(source_path), SCHEMA)
    await source.open()  # refuses (StoreLockedError) while a server holds the store
    try:
        target = PostgresStore(dsn, SCHEMA, namespace=pg_schema)
        await target.open()
        try:
            results = []
            for spec in SCHEMA:
                results.append(await _copy(source.collection(spec.name), target, spec.name, say))
            return results
        finally:
            await target.close()
    finally:
        await source.close()


async def _copy(
    source: Collection, target: object, name: str, say: Callable[[str], None]
) -> Copied:
    from storage.postgres_store import PostgresStore

    assert isinstance(target, PostgresStore)
    total = written = 0
    after: str | None = None
    while True:
        page = await source.scan(after=after, limit=PAGE)
        if not page:
            break
        written += await target.load(name, page)
        total += len(page)
        after = page[-1].key
    verified = await _verify(source, target.collection(name))
    mark = "ok" if verified else "MISMATCH"
    say(
        f"{name}: {total} records in the embedded store, {written} written to PostgreSQL, verified {mark}"
    )
    return Copied(name, total, written, verified)


async def _verify(source: Collection, target: Collection) -> bool:
    """Every source record is in the target with the same version and data."""
    after: str | None = None
    while True:
        page = await source.scan(after=after, limit=PAGE)
        if not page:
            return True
        for record in page:
            found: Record | None = await target.get(record.key)
            if found is None or found.version != record.version or found.data != record.data:
                log.error("%s/%s differs after the copy", source.name, record.key)
                return False
        after = page[-1].key


__all__ = ["Copied", "StorageError", "check_source", "migrate", "parse_target"]
