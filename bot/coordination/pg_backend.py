"""Coordination through PostgreSQL, when no Redis is configured.

- **Deliveries, rate windows, the token**: small tables from migration
  ``0002_coordination`` in the coordinator's namespace (schema). Each operation
  is one statement, atomic by itself: ``INSERT ... ON CONFLICT`` and
  ``UPDATE ... WHERE <condition> RETURNING`` on one row. A delivery row past its
  ``expires_at`` reads as absent; a claim reuses it, and claims sweep a bounded
  batch of expired rows now and then, so the table stays at about
  (messages per second × ttl) rows.
- **User locks and the token refresh**: session advisory locks, each on a pool
  connection held for the hold's duration and unlocked explicitly. A connection
  whose unlock failed or was interrupted is terminated instead of returned: the
  server then drops its locks, so no lock outlives its holder's intent. User locks
  draw from their own pool (``lock_pool_size``) so that busy residents can never
  starve the ledger, nor a user-lock holder wait for a token refresh that needs a
  connection the holders took.
- **Leader leases**: a session advisory lock on a dedicated connection per lease
  (never pooled), opened with ``idle_session_timeout = lease_ttl``. The server
  ends the session, and with it the lock, when the holder's process dies (at once
  for a killed process: the socket closes) or when it stops renewing for
  ``lease_ttl`` (a hung process, a lost host, a cut network). ``takeover_bound`` is
  therefore ``lease_ttl``, as with Redis. Requires PostgreSQL ≥ 14.

Advisory locks are per database, not per schema, so their 32-bit key hashes the
namespace and app id with the resource name, and the lock class (first key) says
which kind it is: two deployments in two schemas of one database never collide.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg

from bot.coordination.base import (
    CoordinationError,
    Coordinator,
    DeliveryLedger,
    DeliveryState,
    LeaderLease,
    LockTimeout,
    RateLimiter,
    SharedToken,
    TokenStore,
    UserLock,
)
from bot.coordination.local import LocalUserLock
from bot.errors import StorageError
from bot.redact import describe_error, endpoint, password_of
from storage.pg_migrations import migrate

log = logging.getLogger("bot.coordination.postgres")

# Advisory lock classes (first int4 key): "gz" followed by the kind, easy to spot in pg_locks.
USER_LOCK_CLASS = 0x677A0001
TOKEN_LOCK_CLASS = 0x677A0002
LEASE_LOCK_CLASS = 0x677A0003

_FIRST_PAUSE = 0.005
_MAX_PAUSE = 0.05
# Several processes starting together queue on the migration lock.
_MIGRATE_TIMEOUT = 30.0
_SWEEP_BATCH = 500
# InternalClientError: asyncpg's protocol state broke, e.g. a query sent just as the
# server ended the session. The connection is unusable, like any other failure here.
_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

_CLAIM = """
INSERT INTO coord_deliveries AS d (key, expires_at)
VALUES ($1, now() + make_interval(secs => $2))
ON CONFLICT (key) DO UPDATE
SET done = false, reply = NULL, owed = false, answered = false, sent_late = false,
    waiters = 0, expires_at = excluded.expires_at
WHERE d.expires_at <= now()
RETURNING true
"""
# The outer condition is re-checked on the row's latest version, so a row a claim
# just renewed is never swept.
_SWEEP = f"""
DELETE FROM coord_deliveries
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM coord_deliveries WHERE expires_at < now() LIMIT {_SWEEP_BATCH}))
  AND expires_at < now()
"""
_LIVE = "key = $1 AND expires_at > now()"
_FINISH = f"UPDATE coord_deliveries SET done = true, reply = $2 WHERE {_LIVE}"
_GET = f"SELECT done, reply, sent_late FROM coord_deliveries WHERE {_LIVE}"
_JOIN = f"UPDATE coord_deliveries SET waiters = waiters + 1 WHERE {_LIVE}"
_LEAVE = f"""
UPDATE coord_deliveries SET waiters = greatest(waiters - 1, 0), owed = owed OR $2
WHERE {_LIVE}
"""
# RETURNING reads the row version this UPDATE wrote, after any concurrent
# take_late committed: the answer and the late send exclude each other.
_ANSWER = f"""
UPDATE coord_deliveries SET answered = answered OR NOT sent_late WHERE {_LIVE}
RETURNING NOT sent_late
"""
_TAKE_LATE = f"""
UPDATE coord_deliveries SET sent_late = true
WHERE {_LIVE} AND done AND owed AND waiters = 0 AND NOT answered AND NOT sent_late
RETURNING true
"""
# One row per bucket. A request whose slot is older than the stored one (its
# statement started just before another's crossed the boundary) counts toward the
# newer window instead of resetting it.
_RATE = """
WITH w AS (SELECT floor(extract(epoch FROM now())::float8 / $2)::bigint AS slot)
INSERT INTO coord_rate AS r (bucket, slot, used, ends_at)
SELECT $1, w.slot, 1, (w.slot + 1) * $2 FROM w
ON CONFLICT (bucket) DO UPDATE
SET used = CASE WHEN r.slot >= excluded.slot THEN r.used + 1 ELSE 1 END,
    ends_at = CASE WHEN r.slot >= excluded.slot THEN r.ends_at ELSE excluded.ends_at END,
    slot = greatest(r.slot, excluded.slot)
RETURNING used, ends_at - extract(epoch FROM now())::float8
"""
_TOKEN_GET = """
SELECT token, expires_at FROM coord_tokens
WHERE app_id = $1 AND expires_at > extract(epoch FROM now())::float8
"""
_TOKEN_PUT = """
INSERT INTO coord_tokens (app_id, token, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (app_id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
"""
_TRY_LOCK = "SELECT pg_try_advisory_lock($1, $2)"
_UNLOCK = "SELECT pg_advisory_unlock($1, $2)"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _keep_session(conn: Any) -> None:
    """Pool reset: nothing. These connections run single autocommit statements that
    change no session state, and advisory locks are unlocked explicitly (or their
    connection terminated), so asyncpg's default reset (RESET ALL,
    pg_advisory_unlock_all, ...) would only add a round trip to every release."""


class _Pg:
    """The pools shared by every part of one coordinator; created by :meth:`open`."""

    def __init__(self, dsn: str, namespace: str, app_id: str, op_timeout: float) -> None:
        self.dsn = dsn
        self.namespace = namespace
        self.app_id = app_id
        self.op_timeout = op_timeout
        self.pool: Any = None
        self.lock_pool: Any = None
        self.secret = password_of(dsn)

    def ops(self) -> Any:
        if self.pool is None:
            raise CoordinationError("the PostgreSQL coordinator is not open")
        return self.pool

    def locks(self) -> Any:
        if self.lock_pool is None:
            raise CoordinationError("the PostgreSQL coordinator is not open")
        return self.lock_pool

    def lock_key(self, name: str) -> int:
        """A signed 32-bit advisory key for ``name``, distinct per namespace and app."""
        text = f"{self.namespace}\0{self.app_id}\0{name}".encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "big", signed=True)

    def fail(self, what: str, exc: BaseException) -> CoordinationError:
        # The class name only: a server message may quote a parameter (a resident id).
        return CoordinationError(f"postgres {what} failed: {type(exc).__name__}")

    async def fetchrow(self, what: str, sql: str, *args: Any) -> Any:
        pool = self.ops()
        try:
            async with asyncio.timeout(self.op_timeout):
                return await pool.fetchrow(sql, *args)
        except _ERRORS as exc:
            raise self.fail(what, exc) from exc

    async def execute(self, what: str, sql: str, *args: Any) -> None:
        pool = self.ops()
        try:
            async with asyncio.timeout(self.op_timeout):
                await pool.execute(sql, *args)
        except _ERRORS as exc:
            raise self.fail(what, exc) from exc

    async def take(self, pool: Any, lock_class: int, key: int, deadline: float) -> Any | None:
        """A connection of ``pool`` holding the advisory lock, or ``None`` at ``deadline``."""
        loop = asyncio.get_running_loop()
        try:
            conn = await pool.acquire(timeout=max(deadline - loop.time(), 0.001))
        except TimeoutError:
            log.warning("every lock connection stayed busy until the deadline")
            return None
        except _ERRORS as exc:
            raise self.fail("lock", exc) from exc
        pause = _FIRST_PAUSE
        asking = False
        try:
            while True:
                asking = True
                if await conn.fetchval(_TRY_LOCK, lock_class, key, timeout=self.op_timeout):
                    return conn
                asking = False
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, _MAX_PAUSE)
        except BaseException as exc:
            if asking:
                # Whether the lock was taken is unknown: ending the session is the
                # one sure way to drop it.
                conn.terminate()
            await pool.release(conn, timeout=self.op_timeout)
            if isinstance(exc, _ERRORS):
                raise self.fail("lock", exc) from exc
            raise
        await pool.release(conn, timeout=self.op_timeout)
        return None

    async def give(self, pool: Any, conn: Any, lock_class: int, key: int) -> None:
        """Unlock and return ``conn``; never raises a database error (see below)."""
        try:
            if not await conn.fetchval(_UNLOCK, lock_class, key, timeout=self.op_timeout):
                log.warning("an advisory lock was gone before its release")
        except BaseException as exc:
            # Terminating drops the lock server-side; raising instead would replace
            # the holder's own outcome with a clean-up failure.
            conn.terminate()
            if not isinstance(exc, _ERRORS):
                raise
            log.warning("could not unlock (connection dropped instead): %s", type(exc).__name__)
        finally:
            await pool.release(conn, timeout=self.op_timeout)


class PostgresLedger(DeliveryLedger):
    def __init__(self, pg: _Pg, sweep_interval: float) -> None:
        self._pg = pg
        self._sweep_interval = sweep_interval
        self._swept_at = time.monotonic()

    async def claim(self, key: str, ttl: float) -> bool:
        row = await self._pg.fetchrow("claim", _CLAIM, key, float(ttl))
        now = time.monotonic()
        if now - self._swept_at >= self._sweep_interval:
            self._swept_at = now
            try:
                await self._pg.execute("sweep", _SWEEP)
            except CoordinationError as exc:
                # The claim itself succeeded; a sweep missed now is done next time.
                log.warning("could not sweep expired deliveries: %s", exc)
        return row is not None

    async def finish(self, key: str, reply: str | None) -> None:
        await self._pg.execute("finish", _FINISH, key, reply)

    async def get(self, key: str) -> DeliveryState | None:
        row = await self._pg.fetchrow("get", _GET, key)
        if row is None:
            return None
        return DeliveryState(done=row["done"], reply=row["reply"], sent_late=row["sent_late"])

    async def join(self, key: str) -> None:
        await self._pg.execute("join", _JOIN, key)

    async def leave(self, key: str, *, gave_up: bool) -> None:
        await self._pg.execute("leave", _LEAVE, key, gave_up)

    async def answer(self, key: str) -> bool:
        row = await self._pg.fetchrow("answer", _ANSWER, key)
        # An unknown key has no late send to collide with.
        return row is None or bool(row[0])

    async def take_late(self, key: str) -> bool:
        return await self._pg.fetchrow("take_late", _TAKE_LATE, key) is not None


class PostgresUserLock(UserLock):
    """Tasks of one process queue in memory; only the head of each queue polls PostgreSQL."""

    def __init__(self, pg: _Pg) -> None:
        self._pg = pg
        self._local = LocalUserLock()

    @asynccontextmanager
    async def hold(self, key: str, timeout: float) -> AsyncIterator[None]:
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._local.hold(key, timeout):
            pool = self._pg.locks()
            lock_key = self._pg.lock_key(f"user:{key}")
            conn = await self._pg.take(pool, USER_LOCK_CLASS, lock_key, deadline)
            if conn is None:
                raise LockTimeout(f"lock for {key[:6]}… not free within {timeout}s")
            try:
                yield
            finally:
                await self._pg.give(pool, conn, USER_LOCK_CLASS, lock_key)


class PostgresTokenStore(TokenStore):
    def __init__(self, pg: _Pg) -> None:
        self._pg = pg
        self._local = LocalUserLock()

    async def get(self) -> SharedToken | None:
        row = await self._pg.fetchrow("token get", _TOKEN_GET, self._pg.app_id)
        if row is None:
            return None
        return SharedToken(token=row["token"], expires_at=row["expires_at"])

    async def put(self, token: SharedToken) -> None:
        await self._pg.execute(
            "token put", _TOKEN_PUT, self._pg.app_id, token.token, float(token.expires_at)
        )

    @asynccontextmanager
    async def refreshing(self, timeout: float) -> AsyncIterator[None]:
        deadline = asyncio.get_running_loop().time() + timeout
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self._local.hold("token", timeout))
            except LockTimeout as exc:
                raise CoordinationError(f"token refresh not free within {timeout}s") from exc
            # The in-memory queue above lets at most one connection per process wait
            # here, so the shared pool is never drained by refreshes.
            pool = self._pg.ops()
            lock_key = self._pg.lock_key("token")
            conn = await self._pg.take(pool, TOKEN_LOCK_CLASS, lock_key, deadline)
            if conn is None:
                raise CoordinationError(f"token refresh not free within {timeout}s")
            try:
                yield
            finally:
                await self._pg.give(pool, conn, TOKEN_LOCK_CLASS, lock_key)


class PostgresRateLimiter(RateLimiter):
    def __init__(self, pg: _Pg) -> None:
        self._pg = pg

    async def acquire(self, bucket: str, limit: int, window: float) -> float:
        row = await self._pg.fetchrow("rate", _RATE, bucket, float(window))
        if row["used"] <= limit:
            return 0.0
        return max(float(row[1]), 0.001)


class PostgresLease(LeaderLease):
    """A session advisory lock on a connection of its own.

    The holder must call :meth:`try_acquire` well within ``takeover_bound`` (a
    third of it, say): each call is a round trip that proves the session alive and
    restarts the server's idle clock. If the session ended meanwhile (killed, idle
    too long, network), the call returns ``False`` and the next one competes anew.
    """

    def __init__(self, pg: _Pg, name: str, ttl: float) -> None:
        self._pg = pg
        self._name = name
        self._ttl = ttl
        self._key = pg.lock_key(f"lease:{name}")
        self._conn: Any = None
        self._held = False
        self._busy = asyncio.Lock()

    @property
    def takeover_bound(self) -> float:
        return self._ttl

    async def try_acquire(self) -> bool:
        self._pg.ops()  # refuses once the coordinator is closed: no stray connection
        async with self._turn():
            op_timeout = self._pg.op_timeout
            if self._held:
                try:
                    if not self._conn.is_closed():
                        await self._conn.fetchval("SELECT 1", timeout=op_timeout)
                        return True
                    cause = "connection closed"
                except _ERRORS as exc:
                    cause = type(exc).__name__
                log.warning("lost the %r lease: its session ended (%s)", self._name, cause)
                self._held = False
                self._drop()
                return False
            conn = await self._connect()
            try:
                self._held = bool(
                    await conn.fetchval(_TRY_LOCK, LEASE_LOCK_CLASS, self._key, timeout=op_timeout)
                )
            except BaseException as exc:
                self._drop()
                if isinstance(exc, _ERRORS):
                    raise self._pg.fail("lease", exc) from exc
                raise
            if self._held:
                log.info("holding the %r lease", self._name)
            return self._held

    async def release(self) -> None:
        async with self._turn():
            conn, held = self._conn, self._held
            self._conn, self._held = None, False
            if conn is None:
                return
            try:
                if held and not conn.is_closed():
                    await conn.fetchval(
                        _UNLOCK, LEASE_LOCK_CLASS, self._key, timeout=self._pg.op_timeout
                    )
                await conn.close(timeout=self._pg.op_timeout)
            except BaseException as exc:
                # Ending the session releases the lock just as well.
                conn.terminate()
                if not isinstance(exc, _ERRORS):
                    raise

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        # One call at a time: a connection runs one query at a time.
        try:
            async with asyncio.timeout(self._pg.op_timeout * 3):
                await self._busy.acquire()
        except TimeoutError as exc:
            raise CoordinationError(f"the {self._name!r} lease is stuck in another call") from exc
        try:
            yield
        finally:
            self._busy.release()

    async def _connect(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._drop()
        pg = self._pg
        try:
            self._conn = await asyncpg.connect(
                pg.dsn,
                timeout=pg.op_timeout,
                server_settings={
                    "application_name": f"gongzhi-lease-{self._name}"[:63],
                    "idle_session_timeout": str(max(1, round(self._ttl * 1000))),
                },
            )
        except _ERRORS as exc:
            raise CoordinationError(
                f"cannot reach PostgreSQL at {endpoint(pg.dsn, 5432)} for the {self._name!r} lease: "
                f"{describe_error(exc, pg.secret)}"
            ) from exc
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None


class PostgresCoordinator(Coordinator):
    """Shared coordination through PostgreSQL (see the module docstring).

    It opens its own pools rather than borrowing the record store's: its
    connections carry the namespace as search_path, skip asyncpg's reset, and are
    held for whole lock holds, which must not starve the store (nor the store them).
    """

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        namespace: str = "public",
        app_id: str = "",
        pool_size: int = 4,
        op_timeout: float = 2.0,
        lock_pool_size: int = 8,
        lease_ttl: float = 10.0,
        sweep_interval: float = 30.0,
    ) -> None:
        self._pg = _Pg(dsn, namespace, app_id, op_timeout)
        self._pool_size = pool_size
        self._lock_pool_size = lock_pool_size
        self._lease_ttl = lease_ttl
        self._leases: dict[str, PostgresLease] = {}
        self.deliveries = PostgresLedger(self._pg, sweep_interval)
        self.locks = PostgresUserLock(self._pg)
        self.tokens = PostgresTokenStore(self._pg)
        self.limiter = PostgresRateLimiter(self._pg)

    async def open(self) -> None:
        pg = self._pg
        if pg.pool is not None:
            return
        where = endpoint(pg.dsn, 5432)
        settings = {
            "search_path": _quote_ident(pg.namespace),
            "application_name": "gongzhi-coordination",
        }
        pools: list[Any] = []
        try:
            for size, min_size in ((self._pool_size, 1), (self._lock_pool_size, 0)):
                pools.append(
                    await asyncpg.create_pool(
                        pg.dsn,
                        min_size=min_size,
                        max_size=size,
                        timeout=pg.op_timeout,
                        reset=_keep_session,
                        server_settings=settings,
                    )
                )
            async with asyncio.timeout(_MIGRATE_TIMEOUT), pools[0].acquire() as conn:
                await migrate(conn)
        except (*_ERRORS, StorageError) as exc:
            for pool in pools:
                await self._close_pool(pool)
            raise CoordinationError(
                f"cannot open PostgreSQL coordination at {where} "
                f"(schema {pg.namespace}): {describe_error(exc, pg.secret)}"
            ) from exc
        pg.pool, pg.lock_pool = pools
        log.info("coordination through PostgreSQL at %s, schema %s", where, pg.namespace)

    async def close(self) -> None:
        pg = self._pg
        if pg.pool is None:
            return
        for lease in self._leases.values():
            try:
                await lease.release()
            except CoordinationError as exc:
                log.warning("could not release a lease at close: %s", exc)
        pools = (pg.pool, pg.lock_pool)
        pg.pool = pg.lock_pool = None
        for pool in pools:
            await self._close_pool(pool)

    async def _close_pool(self, pool: Any) -> None:
        try:
            async with asyncio.timeout(self._pg.op_timeout):
                await pool.close()
        except TimeoutError:
            # A hold still running at shutdown: its locks go with its session.
            pool.terminate()

    def lease(self, name: str) -> LeaderLease:
        if name not in self._leases:
            self._leases[name] = PostgresLease(self._pg, name, self._lease_ttl)
        return self._leases[name]
