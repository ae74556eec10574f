"""Versioned PostgreSQL schema migrations: plain SQL files applied in order at start-up.

Files are ``storage/migrations/postgres/NNNN_name.sql``. Each runs once, in its own
transaction, recorded in ``schema_migrations``. Several processes starting together
serialise on an advisory lock, so each file is applied exactly once. A database
that has a version this code does not know refuses to start: running old code on
a newer schema could corrupt it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bot.errors import StorageError

log = logging.getLogger("storage.migrations")

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# An arbitrary constant shared by every process of this product: "gongzhi" in ASCII.
MIGRATION_LOCK = 0x676F6E677A6869


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with this code, in version order."""
    found = []
    for entry in resources.files("storage.migrations").joinpath("postgres").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StorageError(f"migration files must be numbered 1..N without gaps, found {versions}")
    return found


async def migrate(conn: Any) -> int:
    """Bring the schema in the connection's search_path up to date; returns its version.

    ``conn`` is an ``asyncpg.Connection``.
    """
    migrations = available()
    latest = migrations[-1].version if migrations else 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        if current > latest:
            raise StorageError(
                f"the database schema is at version {current}, newer than this code knows "
                f"({latest}): upgrade the code before starting it against this database"
            )
        for migration in migrations[current:]:
            log.info("applying migration %04d_%s", migration.version, migration.name)
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
    return latest
