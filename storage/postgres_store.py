"""The shared backend: PostgreSQL through an asyncpg pool, for several server processes.

Every collection lives in one table, ``records (collection, key, version, data jsonb)``
(see ``storage/migrations/postgres/0001_records.sql``). The table's structure comes
from the versioned migrations applied at :meth:`PostgresStore.open`; the declared
indexes come from the schema in code and are created at open as partial
expression indexes, one per :class:`IndexSpec`::

    CREATE INDEX ix_items_by_owner_<hash> ON records ((data->'owner'), key)
        WHERE collection = 'items'

A partial index serves only a query that states its predicate literally, and a
prepared statement's generic plan cannot match ``collection = $1`` against it. So
each collection's SQL is built once, at construction, with the collection name as
a literal (names are validated against a strict pattern); only keys, versions,
documents and looked-up values are parameters.

Index values are compared as ``jsonb``, which gives the embedded backend's
semantics: a missing field is SQL NULL and matches nothing (and never collides in
a unique index), JSON ``null`` is a value, ``true`` is not ``1``, ``1`` is ``1.0``.
Lists and objects in an indexed field are refused in Python before any query.

Each call is one statement, on one pool connection, with a deadline. The pool's
release-time reset is a no-op (see :func:`_no_reset`): the default one costs a
round trip per call, which measured as about 40 % of a key look-up.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg

from bot.errors import ConflictError, StorageError
from bot.redact import describe_error, endpoint, password_of
from storage.contract import (
    MAX_UPDATE_ATTEMPTS,
    Collection,
    CollectionSpec,
    Doc,
    IndexSpec,
    JSONScalar,
    Record,
    Store,
)
from storage.pg_migrations import migrate
from storage.schema import SCHEMA

logger = logging.getLogger("storage.postgres")

T = TypeVar("T")

_IDENT = re.compile(r"[a-z][a-z0-9_]*")
_NAMESPACE = re.compile(r"[a-z_][a-z0-9_]*")
# Field names end up inside SQL string literals: no quotes, backslashes or control
# characters, so quoting never depends on standard_conforming_strings.
_FIELD = re.compile(r"[^\x00-\x1f\x7f'\\]+")
_MAX_IDENT = 63

# A JSON number in exponent form with a positive exponent, outside strings. jsonb
# stores numbers as numeric and prints 1e+16 back as 10000000000000000, which
# json.loads would read as an int (and 1.5e+300 as an int of another value).
_STRING_OR_BIG_EXPONENT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?[eE]\+\d+)', re.DOTALL)
# \u0000 in the JSON text that is a real escape (not an escaped backslash then "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# The temporary table of load(); it is dropped at commit.
_LOAD_TABLE = "gongzhi_load"

_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)
_encode = _encoder.encode
_decode = json.JSONDecoder().decode

_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)

# ValueError too: asyncpg's verdict on a malformed DSN.
_OPEN_ERRORS: tuple[type[BaseException], ...] = (*_DB_ERRORS, ValueError)


async def _no_reset(connection: Any) -> None:
    """The pool's release-time reset. The store never changes session state
    (no SET, LISTEN, cursors or session advisory locks; its temporary table drops
    at commit), so the default reset query is a wasted round trip per operation.
    asyncpg still rolls back a transaction left open before calling this."""


def _keep_floats(text: str) -> str:
    """Write big floats so that jsonb gives them back as floats (slow path, rare)."""

    def plain(match: re.Match[str]) -> str:
        number = match.group(1)
        if number is None:
            return match.group(0)
        digits = format(Decimal(number), "f")
        return digits if "." in digits else digits + ".0"

    return _STRING_OR_BIG_EXPONENT.sub(plain, text)


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"keys are strings, not {type(key).__name__}")
    if not key:
        raise ValueError("keys must not be empty")
    if "\x00" in key:
        raise ValueError("keys must not contain the NUL character (PostgreSQL cannot store it)")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"keys must be valid Unicode text: {exc}") from None
    return key


def _is_storable_key(key: object) -> bool:
    """Whether ``key`` could be stored at all (a cheap test for the read path)."""
    if not isinstance(key, str) or not key or "\x00" in key:
        return False
    if key.isascii():
        return True
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _literal(text: str) -> str:
    """``text`` as an SQL string literal; callers have validated it against a pattern
    that excludes backslashes and control characters."""
    return "'" + text.replace("'", "''") + "'"


def index_name(collection: str, index: IndexSpec) -> str:
    """The deterministic PostgreSQL name of a declared index.

    The hash covers the definition, so changing an index's fields or uniqueness
    creates a new index instead of silently keeping the old one under the old name.
    """
    definition = f"{collection}|{index.name}|{','.join(index.fields)}|{index.unique}"
    digest = hashlib.sha256(definition.encode("utf-8")).hexdigest()[:8]
    stem = f"{collection}_{index.name}"[: _MAX_IDENT - len("ix__") - len(digest)]
    return f"ix_{stem}_{digest}"


@dataclass(frozen=True, slots=True)
class _IndexSQL:
    spec: IndexSpec
    name: str
    create: str
    find: str
    count: str


@dataclass(frozen=True, slots=True)
class _CollectionSQL:
    """Every statement one collection issues, with its name as a literal."""

    get: str
    get_for_update: str
    upsert: str
    insert: str
    update_if: str
    delete: str
    delete_if: str
    exists: str
    scan_first: str
    scan_after: str
    size: str
    load: str
    indexes: Mapping[str, _IndexSQL]


def _collection_sql(spec: CollectionSpec) -> _CollectionSQL:
    name = _literal(spec.name)
    where = f"collection = {name}"
    indexes = {}
    for index in spec.indexes:
        expressions = [f"(data->{_literal(field)})" for field in index.fields]
        ix_name = index_name(spec.name, index)
        # Non-unique indexes end with key, so "= values ORDER BY key LIMIT n" reads
        # the index in order and stops after n entries.
        columns = ", ".join(expressions if index.unique else [*expressions, "key"])
        unique = "UNIQUE " if index.unique else ""
        matches = " AND ".join(
            f"{expression} = ${position}::jsonb"
            for position, expression in enumerate(expressions, start=1)
        )
        limit = len(expressions) + 1
        indexes[index.name] = _IndexSQL(
            spec=index,
            name=ix_name,
            create=(
                f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {ix_name} "
                f"ON records ({columns}) WHERE {where}"
            ),
            find=(
                f"SELECT key, version, data FROM records WHERE {where} AND {matches} "
                f"ORDER BY key LIMIT ${limit}"
            ),
            count=f"SELECT count(*) FROM records WHERE {where} AND {matches}",
        )
    return _CollectionSQL(
        get=f"SELECT version, data FROM records WHERE {where} AND key = $1",
        get_for_update=f"SELECT version, data FROM records WHERE {where} AND key = $1 FOR UPDATE",
        upsert=(
            "INSERT INTO records (collection, key, version, data) "
            f"VALUES ({name}, $1, 1, $2::jsonb) "
            "ON CONFLICT (collection, key) DO UPDATE "
            "SET version = records.version + 1, data = EXCLUDED.data RETURNING version"
        ),
        insert=(
            "INSERT INTO records (collection, key, version, data) "
            f"VALUES ({name}, $1, 1, $2::jsonb) "
            "ON CONFLICT (collection, key) DO NOTHING RETURNING version"
        ),
        update_if=(
            "UPDATE records SET version = version + 1, data = $3::jsonb "
            f"WHERE {where} AND key = $1 AND version = $2 RETURNING version"
        ),
        delete=f"DELETE FROM records WHERE {where} AND key = $1 RETURNING version",
        delete_if=(
            f"DELETE FROM records WHERE {where} AND key = $1 AND version = $2 RETURNING version"
        ),
        exists=f"SELECT EXISTS (SELECT FROM records WHERE {where} AND key = $1)",
        scan_first=f"SELECT key, version, data FROM records WHERE {where} ORDER BY key LIMIT $1",
        scan_after=(
            f"SELECT key, version, data FROM records WHERE {where} AND key > $1 "
            "ORDER BY key LIMIT $2"
        ),
        size=f"SELECT count(*) FROM records WHERE {where}",
        load=(
            "INSERT INTO records AS r (collection, key, version, data) "
            f"SELECT {name}, key, version, data FROM {_LOAD_TABLE} "
            "ON CONFLICT (collection, key) DO UPDATE "
            "SET version = EXCLUDED.version, data = EXCLUDED.data "
            "WHERE r.version IS DISTINCT FROM EXCLUDED.version "
            "OR r.data IS DISTINCT FROM EXCLUDED.data"
        ),
        indexes=indexes,
    )


def _check_spec(spec: CollectionSpec) -> None:
    if not _IDENT.fullmatch(spec.name) or len(spec.name) > _MAX_IDENT:
        raise ValueError(
            f"collection name {spec.name!r} must match {_IDENT.pattern} "
            "(it is written into SQL as a literal)"
        )
    names = [index.name for index in spec.indexes]
    if len(set(names)) != len(names):
        raise ValueError(f"collection {spec.name!r} declares an index name twice")
    for index in spec.indexes:
        if not _IDENT.fullmatch(index.name):
            raise ValueError(
                f"index name {index.name!r} of {spec.name!r} must match {_IDENT.pattern}"
            )
        if not index.fields:
            raise ValueError(f"collection {spec.name!r} has an index without fields")
        for field in index.fields:
            if not isinstance(field, str) or not _FIELD.fullmatch(field):
                raise ValueError(
                    f"field {field!r} of index {index.name!r} of {spec.name!r} must be "
                    "non-empty text without quotes, backslashes or control characters"
                )


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class PostgresCollection(Collection):
    """A declared collection of a :class:`PostgresStore`."""

    def __init__(self, store: PostgresStore, spec: CollectionSpec) -> None:
        self.spec = spec
        self._store = store
        self.sql = _collection_sql(spec)
        """The statements this collection issues (the EXPLAIN test reads them)."""

    async def get(self, key: str) -> Record | None:
        self._store._check_usable()
        if not _is_storable_key(key):
            return None  # no such key can exist, as on the embedded backend
        row = await self._store._fetchrow(self._what("get", key), self.sql.get, key)
        return None if row is None else Record(key, row[0], _decode(row[1]))

    async def put(self, key: str, data: Doc, *, expect_version: int | None = None) -> Record:
        self._store._check_usable()
        _check_key(key)
        text, stored = self._encode(key, data)
        what = self._what("put", key)
        store = self._store
        if expect_version is None:
            row = await store._fetchrow(what, self.sql.upsert, key, text)
        elif expect_version == 0:
            row = await store._fetchrow(what, self.sql.insert, key, text)
            if row is None:
                raise ConflictError(f"{self.name}/{key}: expected no record, found one")
        else:
            row = await store._fetchrow(what, self.sql.update_if, key, expect_version, text)
            if row is None:
                raise ConflictError(
                    f"{self.name}/{key}: expected version {expect_version}, "
                    "found another version or no record"
                )
        return Record(key, row[0], stored)

    async def update(self, key: str, change: Callable[[Record | None], Doc]) -> Record:
        """The contract's read-change-write: one optimistic try, then under a row lock.

        Concurrent updates of one hot record (a shared counter, an activity's roster)
        that lose the optimistic try queue on ``SELECT … FOR UPDATE`` instead of
        racing and retrying, as the generic compare-and-set loop does; only two first
        inserts of a new key can still race, and the loser retries.
        """
        self._store._check_usable()
        _check_key(key)
        what = self._what("update", key)
        sql = self.sql

        async def locked(conn: Any) -> Record:
            row = await conn.fetchrow(sql.get_for_update, key)
            current = None if row is None else Record(key, row[0], _decode(row[1]))
            text, stored = self._encode(key, change(current))
            if current is None:
                written = await conn.fetchrow(sql.insert, key, text)
                if written is None:
                    raise ConflictError(f"{self.name}/{key}: created meanwhile")
            else:
                written = await conn.fetchrow(sql.update_if, key, current.version, text)
            return Record(key, written[0], stored)

        # Uncontended, an optimistic read and compare-and-set is two round trips against
        # the transaction's four; only a record another writer just changed queues.
        current = await self.get(key)
        text, stored = self._encode(key, change(current))
        try:
            if current is None:
                row = await self._store._fetchrow(what, sql.insert, key, text)
            else:
                row = await self._store._fetchrow(what, sql.update_if, key, current.version, text)
        except ConflictError:
            row = None  # a unique index: decide again under the lock
        if row is not None:
            return Record(key, row[0], stored)
        for _ in range(MAX_UPDATE_ATTEMPTS):
            try:
                return await self._store._transaction(what, locked)
            except ConflictError:
                continue
        raise ConflictError(
            f"{self.name}/{key} stayed contended for {MAX_UPDATE_ATTEMPTS} attempts"
        )

    async def delete(self, key: str, *, expect_version: int | None = None) -> bool:
        self._store._check_usable()
        store = self._store
        what = self._what("delete", key)
        if not _is_storable_key(key):
            if expect_version:
                raise ConflictError(f"{self.name}/{key!r}: expected version {expect_version}")
            return False
        if expect_version is None:
            return await store._fetchrow(what, self.sql.delete, key) is not None
        if expect_version == 0:
            # "Must not exist": nothing to delete either way, only a check.
            if await store._fetchval(what, self.sql.exists, key):
                raise ConflictError(f"{self.name}/{key}: expected no record, found one")
            return False
        if await store._fetchrow(what, self.sql.delete_if, key, expect_version) is None:
            raise ConflictError(
                f"{self.name}/{key}: expected version {expect_version}, "
                "found another version or no record"
            )
        return True

    async def find(
        self, index: str, values: Sequence[JSONScalar], *, limit: int = 100
    ) -> list[Record]:
        sql, params = self._lookup(index, values)
        if limit < 0:
            raise ValueError("limit must not be negative")
        if params is None or limit == 0:
            return []
        rows = await self._store._fetch(f"{self.name}: find by {index}", sql.find, *params, limit)
        return [Record(row[0], row[1], _decode(row[2])) for row in rows]

    async def count(self, index: str, values: Sequence[JSONScalar]) -> int:
        sql, params = self._lookup(index, values)
        if params is None:
            return 0
        count: int = await self._store._fetchval(
            f"{self.name}: count by {index}", sql.count, *params
        )
        return count

    async def scan(self, *, after: str | None = None, limit: int = 1000) -> list[Record]:
        self._store._check_usable()
        if limit < 0:
            raise ValueError("limit must not be negative")
        if limit == 0:
            return []
        what = f"{self.name}: scan"
        if after is None:
            rows = await self._store._fetch(what, self.sql.scan_first, limit)
        else:
            if not isinstance(after, str):
                raise TypeError(f"after is a key (a string), not {type(after).__name__}")
            rows = await self._store._fetch(what, self.sql.scan_after, after, limit)
        return [Record(row[0], row[1], _decode(row[2])) for row in rows]

    async def size(self) -> int:
        self._store._check_usable()
        size: int = await self._store._fetchval(f"{self.name}: size", self.sql.size)
        return size

    # --- helpers ------------------------------------------------------------------------

    def _what(self, operation: str, key: str) -> str:
        return f"{self.name}/{key}: {operation}"

    def _encode(self, key: str, data: Doc) -> tuple[str, dict[str, Any]]:
        """The JSON text to store and a private decoded copy; refuses what the
        embedded backend refuses, plus what PostgreSQL cannot hold (NUL)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a JSON object (a dict), not {type(data).__name__}")
        try:
            text = _encode(data)
            text.encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            error = TypeError if isinstance(exc, TypeError) else ValueError
            raise error(f"{self.name}/{key}: data is not storable as JSON: {exc}") from exc
        if "\\u0000" in text and _NUL_ESCAPE.search(text):
            raise ValueError(
                f"{self.name}/{key}: data is not storable: PostgreSQL cannot store the "
                "NUL character (\\u0000) in text"
            )
        stored: dict[str, Any] = _decode(text)
        if "e+" in text or "E+" in text:
            text = _keep_floats(text)
        for index in self.spec.indexes:
            for field in index.fields:
                value = stored.get(field)
                if isinstance(value, list | dict):
                    raise TypeError(
                        f"{self.name}/{key}: field(s) {list(index.fields)} of index "
                        f"{index.name!r}: indexed values must be JSON scalars, "
                        f"not {type(value).__name__}"
                    )
        return text, stored

    def _lookup(
        self, index: str, values: Sequence[JSONScalar]
    ) -> tuple[_IndexSQL, list[str] | None]:
        """The index's statements and the values as jsonb text; ``None`` instead of
        the values when no stored record can match them."""
        self._store._check_usable()
        sql = self.sql.indexes.get(index)
        if sql is None:
            raise KeyError(f"collection {self.name!r} has no index {index!r}")
        fields = sql.spec.fields
        if isinstance(values, str | bytes) or len(values) != len(fields):
            raise ValueError(
                f"index {index!r} of {self.name!r} needs {len(fields)} value(s) "
                f"for {list(fields)}, got {values!r}"
            )
        params: list[str] = []
        for value in values:
            if value is not None and not isinstance(value, str | int | float):
                raise TypeError(f"indexed values must be JSON scalars, not {type(value).__name__}")
            try:
                text = _encode(value)
                text.encode("utf-8")
            except ValueError:
                return sql, None  # NaN, infinities, lone surrogates: never stored
            if "\\u0000" in text and _NUL_ESCAPE.search(text):
                return sql, None
            params.append(text)
        return sql, params


class PostgresStore(Store):
    """Collections in a PostgreSQL schema (``namespace``), shared by any number of processes.

    ``command_timeout`` bounds every query, pool wait and release; ``migrate_timeout``
    bounds the start-up work (waiting for another process's migration or index
    build, and building an index that a new schema declares).
    """

    backend = "postgres"

    CLOSE_DEADLINE = 10.0
    _LOCK_POLL = 0.1

    def __init__(
        self,
        dsn: str,
        schema: Sequence[CollectionSpec] = SCHEMA,
        *,
        pool_size: int = 10,
        namespace: str = "public",
        command_timeout: float = 5.0,
        migrate_timeout: float = 600.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if command_timeout <= 0 or migrate_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if not _NAMESPACE.fullmatch(namespace) or len(namespace) > _MAX_IDENT:
            raise ValueError(f"namespace {namespace!r} must match {_NAMESPACE.pattern}")
        self._dsn = dsn
        self._where = endpoint(dsn, 5432)
        self._password = password_of(dsn)
        self._namespace = namespace
        self._pool_size = pool_size
        self._timeout = command_timeout
        self._migrate_timeout = migrate_timeout
        self._collections: dict[str, PostgresCollection] = {}
        for spec in schema:
            _check_spec(spec)
            if spec.name in self._collections:
                raise ValueError(f"collection {spec.name!r} is declared twice")
            self._collections[spec.name] = PostgresCollection(self, spec)
        self._index_owner: dict[str, tuple[str, str]] = {
            sql.name: (collection.name, sql.spec.name)
            for collection in self._collections.values()
            for sql in collection.sql.indexes.values()
        }
        self._state = _State.NEW
        self._unusable: str | None = "the store is not open yet"
        self._pool: Any = None

    @property
    def namespace(self) -> str:
        return self._namespace

    def _server_settings(self) -> dict[str, str]:
        return {"search_path": f'"{self._namespace}"', "application_name": "gongzhi"}

    # --- lifetime -------------------------------------------------------------------

    async def open(self) -> None:
        if self._state is not _State.NEW:
            raise StorageError("a PostgresStore opens once; create a new one to connect again")
        self._state = _State.CLOSED
        self._unusable = "the store failed to open"
        started = time.perf_counter()
        try:
            await self._prepare_database()
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._timeout,
                command_timeout=self._timeout,
                server_settings=self._server_settings(),
                reset=_no_reset,
            )
        except StorageError:
            raise
        except _OPEN_ERRORS as exc:
            raise StorageError(self._connect_message(exc)) from exc
        self._state = _State.OPEN
        self._unusable = None
        logger.info(
            "opened PostgreSQL store %s schema %s (pool of up to %s) in %.0f ms",
            self._where,
            self._namespace,
            self._pool_size,
            (time.perf_counter() - started) * 1000,
        )

    def _connect_message(self, exc: BaseException) -> str:
        detail = describe_error(exc, self._password)
        if isinstance(exc, TimeoutError):
            detail = f"no answer within {self._timeout:g} s"
        return f"cannot open the PostgreSQL store at {self._where} (schema {self._namespace}): {detail}"

    async def _prepare_database(self) -> None:
        """Apply migrations and create the declared indexes, on a connection of its own
        (it holds a session advisory lock, which must not reach the pool)."""
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            command_timeout=self._migrate_timeout,
            server_settings=self._server_settings(),
        )
        try:
            async with asyncio.timeout(self._migrate_timeout):
                if await conn.fetchval("SELECT current_schema()") is None:
                    raise StorageError(
                        f"the PostgreSQL store at {self._where}: schema {self._namespace!r} "
                        "does not exist; create it (CREATE SCHEMA) or configure another one"
                    )
                version = await migrate(conn)
                await self._ensure_indexes(conn)
        except TimeoutError as exc:
            raise StorageError(
                f"the PostgreSQL store at {self._where}: migrations and indexes were not "
                f"ready within {self._migrate_timeout:g} s (another process holding the "
                "migration lock, or a long index build?)"
            ) from exc
        finally:
            try:
                await conn.close(timeout=self._timeout)
            except _DB_ERRORS:
                conn.terminate()  # a broken connection must not hide the first error
        logger.debug("schema %s is at migration %s", self._namespace, version)

    async def _existing_indexes(self, conn: Any) -> dict[str, bool]:
        rows = await conn.fetch(
            "SELECT c.relname, x.indisvalid FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid "
            "WHERE x.indrelid = 'records'::regclass"
        )
        return {row[0]: row[1] for row in rows}

    async def _ensure_indexes(self, conn: Any) -> None:
        declared = {
            sql.name: sql
            for collection in self._collections.values()
            for sql in collection.sql.indexes.values()
        }
        existing = await self._existing_indexes(conn)
        undeclared = sorted(
            name for name in existing if name.startswith("ix_") and name not in declared
        )
        if undeclared:
            # Another process may run older or newer code against this database, so
            # dropping is an operator's decision; a stale unique index still enforces.
            logger.warning(
                "records has indexes this code does not declare (drop them once no "
                "process uses them): %s",
                ", ".join(undeclared),
            )
        if all(existing.get(name) for name in declared):
            return
        # CREATE INDEX CONCURRENTLY keeps other processes writing while it builds, but
        # it waits for every transaction holding a snapshot; a process blocked in
        # pg_advisory_lock would hold one and deadlock with it, so poll a try-lock.
        lock = self._index_lock()
        while True:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock):
                break
            await asyncio.sleep(self._LOCK_POLL)
        try:
            existing = await self._existing_indexes(conn)
            for name, sql in declared.items():
                if existing.get(name):
                    continue
                if name in existing:
                    # Invalid: left by a build that failed (every builder holds the lock).
                    logger.warning("dropping the invalid index %s left by a failed build", name)
                    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                logger.info("creating index %s", name)
                try:
                    await conn.execute(sql.create)
                except asyncpg.UniqueViolationError as exc:
                    collection, index = self._index_owner[name]
                    raise StorageError(
                        f"collection {collection!r}: unique index {index!r} cannot be "
                        f"built, two records share a value: {exc}; fix the data or the "
                        "schema before starting"
                    ) from exc
        finally:
            await conn.fetchval("SELECT pg_advisory_unlock($1)", lock)

    def _index_lock(self) -> int:
        """The index-build lock of this schema (an advisory lock is database-wide)."""
        digest = hashlib.sha256(f"gongzhi-indexes:{self._namespace}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    async def close(self) -> None:
        if self._state is not _State.OPEN:
            if self._state is _State.NEW:
                self._unusable = "the store is closed"
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        self._unusable = "the store is closed"
        pool, self._pool = self._pool, None
        try:
            async with asyncio.timeout(self.CLOSE_DEADLINE):
                await pool.close()
        except TimeoutError:
            logger.error(
                "closing the PostgreSQL pool took longer than %.0f s; terminating it",
                self.CLOSE_DEADLINE,
            )
            pool.terminate()
        except _DB_ERRORS as exc:
            logger.warning("closing the PostgreSQL pool: %s", exc)
            pool.terminate()

    def collection(self, name: str) -> PostgresCollection:
        try:
            return self._collections[name]
        except KeyError:
            raise KeyError(
                f"collection {name!r} is not declared in the schema "
                f"(declared: {', '.join(self._collections)})"
            ) from None

    async def ping(self) -> None:
        self._check_usable()
        writable = await self._fetchval(
            "ping", "SELECT current_setting('transaction_read_only') = 'off'"
        )
        if not writable:
            raise StorageError(f"the PostgreSQL store at {self._where} is read-only")

    # --- for `python -m bot migrate` (not part of the contract) ---------------------------

    async def load(
        self, collection: str, records: Sequence[Record], *, timeout: float = 300.0
    ) -> int:
        """Write ``records`` into ``collection`` keeping each one's version and data.

        Idempotent: a record already stored as given is left alone. Returns how many
        rows were inserted or changed. One transaction, one COPY, one statement.
        """
        self._check_usable()
        target = self.collection(collection)
        rows: list[tuple[str, int, str]] = []
        seen: set[str] = set()
        for record in records:
            key = _check_key(record.key)
            if key in seen:
                raise ValueError(f"{collection}/{key}: the key appears twice in one load")
            seen.add(key)
            version = record.version
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise ValueError(f"{collection}/{key}: version must be an int >= 1")
            text, _ = target._encode(key, record.data)
            rows.append((key, version, text))
        if not rows:
            return 0
        what = f"{collection}: load of {len(rows)} records"
        pool = self._pool
        try:
            async with pool.acquire(timeout=self._timeout) as conn, conn.transaction():
                await conn.execute(
                    f'CREATE TEMP TABLE {_LOAD_TABLE} (key text COLLATE "C", '
                    "version integer, data jsonb) ON COMMIT DROP",
                    timeout=timeout,
                )
                await conn.copy_records_to_table(_LOAD_TABLE, records=rows, timeout=timeout)
                status: str = await conn.execute(target.sql.load, timeout=timeout)
        except asyncpg.UniqueViolationError as exc:
            raise self._conflict(what, exc) from exc
        except _DB_ERRORS as exc:
            raise self._error(what, exc, timeout) from exc
        return int(status.rsplit(" ", 1)[1])

    async def count_all(self, collection: str) -> int:
        """How many records ``collection`` holds (the migration's check)."""
        return await self.collection(collection).size()

    # --- one statement on one pooled connection ----------------------------------------

    def _check_usable(self) -> None:
        if self._unusable is not None:
            raise StorageError(self._unusable)

    async def _fetchrow(self, what: str, sql: str, *args: Any) -> Any:
        pool = self._pool
        if pool is None:
            raise StorageError(self._unusable or "the store is closed")
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                return await conn.fetchrow(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            raise self._conflict(what, exc) from exc
        except asyncpg.ProgramLimitExceededError as exc:
            # An indexed value too long for a btree entry (about 2.7 kB): the caller's
            # input, refused whole, like any other unstorable write.
            raise ValueError(f"{what}: refused by PostgreSQL: {exc}") from exc
        except _DB_ERRORS as exc:
            raise self._error(what, exc, self._timeout) from exc

    async def _transaction(self, what: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work(conn)`` in one transaction; whatever ``work`` raises rolls it back
        and passes through unchanged (a domain rule refusing, a conflict)."""
        pool = self._pool
        if pool is None:
            raise StorageError(self._unusable or "the store is closed")
        try:
            async with pool.acquire(timeout=self._timeout) as conn, conn.transaction():
                return await work(conn)
        except asyncpg.UniqueViolationError as exc:
            raise self._conflict(what, exc) from exc
        except asyncpg.ProgramLimitExceededError as exc:
            raise ValueError(f"{what}: refused by PostgreSQL: {exc}") from exc
        except _DB_ERRORS as exc:
            raise self._error(what, exc, self._timeout) from exc

    async def _fetchval(self, what: str, sql: str, *args: Any) -> Any:
        pool = self._pool
        if pool is None:
            raise StorageError(self._unusable or "the store is closed")
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                return await conn.fetchval(sql, *args)
        except _DB_ERRORS as exc:
            raise self._error(what, exc, self._timeout) from exc

    async def _fetch(self, what: str, sql: str, *args: Any) -> list[Any]:
        pool = self._pool
        if pool is None:
            raise StorageError(self._unusable or "the store is closed")
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                rows: list[Any] = await conn.fetch(sql, *args)
                return rows
        except _DB_ERRORS as exc:
            raise self._error(what, exc, self._timeout) from exc

    def _conflict(self, what: str, exc: Any) -> ConflictError:
        owner = self._index_owner.get(getattr(exc, "constraint_name", None) or "")
        index = f"unique index {owner[1]!r}" if owner else "a unique index"
        return ConflictError(f"{what}: {index} already holds this value")

    def _error(self, what: str, exc: BaseException, timeout: float) -> StorageError:
        if self._pool is None and self._state is _State.CLOSED:
            return StorageError(f"{what}: the store is closed")
        if isinstance(exc, TimeoutError):
            detail = f"no answer within {timeout:g} s"
        else:
            detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        return StorageError(f"PostgreSQL at {self._where}: {what} failed: {detail}")
