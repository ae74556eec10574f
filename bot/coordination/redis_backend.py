"""Coordination through Redis, when ``[redis] url`` is configured.

Every operation is one round trip: a plain command, or a Lua script when it must
read and write one key atomically (scripts are loaded once at :meth:`open` and
called by SHA). Keys live under ``{prefix}{app_id}:`` so several deployments can
share one Redis. What each structure is:

- ``d:<delivery key>``: a hash (``done``, ``reply``, ``owed``, ``answered``,
  ``late``, ``waiters``) that expires ``ttl`` after its claim;
- ``lock:<resident>`` and ``token:refresh``: ``SET NX PX`` mutexes holding a random
  token, released by compare-and-delete. Their lease (``lock_lease``, 30 s by
  default) frees a mutex whose holder crashed; a holder that keeps it longer than
  the lease loses it silently, so the lease must stay far above any handler's run;
- ``token``: the access token as JSON, expiring with the token;
- ``rate:<bucket>``: a hash of the current window (slot number, count), using the
  Redis server's clock so processes with skewed clocks still share one window;
- ``lease:<name>``: ``SET NX PX`` holding the holder's id, renewed by its
  ``try_acquire``; a dead holder's lease ends ``lease_ttl`` after its last renewal.

Commands are never retried by the client: a retried script could apply twice
(a claim answering "taken" to the process that took it). A failure is a
:class:`CoordinationError` and the caller decides.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

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
from bot.redact import describe_error, endpoint, password_of

log = logging.getLogger("bot.coordination.redis")

# A waiter polls a busy mutex with a growing pause: quick hand-over when the
# holder is fast, bounded load on Redis when it is not.
_FIRST_PAUSE = 0.005
_MAX_PAUSE = 0.05
_ERRORS = (RedisError, OSError, TimeoutError)

# KEYS[1] delivery; ARGV[1] ttl ms. Absent fields read as 0.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'done', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
# ARGV[1] '1' if there is a reply, ARGV[2] the reply. Never recreates an expired key,
# which would then live without a TTL.
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'done', '1', 'reply', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'done', '1')
  redis.call('HDEL', KEYS[1], 'reply')
end
return 1
"""
_JOIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'waiters', 1)
"""
# ARGV[1] '1' if the delivery gave up (answered `success` at its deadline).
_LEAVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[1], 'waiters', -1) < 0 then
  redis.call('HSET', KEYS[1], 'waiters', '0')
end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'owed', '1') end
return 1
"""
# An unknown key has no late send to collide with: answering passively is fine.
_ANSWER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
if redis.call('HGET', KEYS[1], 'late') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'answered', '1')
return 1
"""
_TAKE_LATE = """
local f = redis.call('HMGET', KEYS[1], 'done', 'owed', 'waiters', 'answered', 'late')
if f[1] == '1' and f[2] == '1' and (tonumber(f[3]) or 0) <= 0
   and f[4] ~= '1' and f[5] ~= '1' then
  redis.call('HSET', KEYS[1], 'late', '1')
  return 1
end
return 0
"""
# ARGV[1] the holder's token: only its holder can free a mutex or a lease.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# ARGV[1] our id, ARGV[2] ttl ms: renew if ours, take if free.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# ARGV[1] limit, ARGV[2] window µs. Returns 0 if granted, else µs to the next window.
# A request whose slot is older than the stored one (a clock step back) counts
# toward the stored window rather than resetting it.
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local win = tonumber(ARGV[2])
local slot = math.floor(now / win)
local stored = tonumber(redis.call('HGET', KEYS[1], 'slot'))
local used
if stored and stored >= slot then
  slot = stored
  used = redis.call('HINCRBY', KEYS[1], 'used', 1)
else
  used = 1
  redis.call('HSET', KEYS[1], 'slot', string.format('%d', slot), 'used', '1')
  redis.call('PEXPIRE', KEYS[1], math.ceil(2 * win / 1000))
end
if used <= tonumber(ARGV[1]) then return 0 end
return (slot + 1) * win - now
"""
_SCRIPTS = (
    ("claim", _CLAIM),
    ("finish", _FINISH),
    ("join", _JOIN),
    ("leave", _LEAVE),
    ("answer", _ANSWER),
    ("take_late", _TAKE_LATE),
    ("unlock", _UNLOCK),
    ("lease", _LEASE),
    ("rate", _RATE),
)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class _Link:
    """The client, scripts and clean-up tasks shared by every part of one coordinator."""

    def __init__(self, url: str, op_timeout: float) -> None:
        self.url = url
        self.op_timeout = op_timeout
        self.client: aioredis.Redis | None = None
        self.scripts: dict[str, AsyncScript] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.secret = password_of(url)

    def connected(self) -> aioredis.Redis:
        if self.client is None:
            raise CoordinationError("the Redis coordinator is not open")
        return self.client

    async def run(self, what: str, op: Awaitable[Any]) -> Any:
        """Await one command within the deadline; Redis trouble becomes CoordinationError."""
        try:
            async with asyncio.timeout(self.op_timeout):
                return await op
        except _ERRORS as exc:
            raise CoordinationError(
                f"redis {what} failed: {describe_error(exc, self.secret)}"
            ) from exc

    async def script(self, name: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        self.connected()
        return await self.run(name, self.scripts[name](keys=keys, args=args))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in the background; :meth:`RedisCoordinator.close` awaits it."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class _Mutex:
    """``SET NX PX`` mutexes with a random token per hold and compare-and-delete release."""

    def __init__(self, link: _Link, lease: float) -> None:
        self._link = link
        self._lease_ms = _ms(lease)
        self.lease = lease

    async def take(self, key: str, deadline: float) -> str | None:
        """Our token once ``key`` is ours, or ``None`` if still taken at ``deadline``."""
        client = self._link.connected()
        loop = asyncio.get_running_loop()
        token = secrets.token_hex(16)
        pause = _FIRST_PAUSE
        while True:
            try:
                got = await self._link.run(
                    "lock", client.set(key, token, nx=True, px=self._lease_ms)
                )
            except BaseException:
                # The SET may have landed before the failure or cancellation; the
                # token is unique, so freeing it can only free our own hold.
                self._link.spawn(self._free(key, token))
                raise
            if got:
                return token
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, _MAX_PAUSE)

    async def give(self, key: str, token: str) -> None:
        """Free our hold; completes even if the holder is cancelled meanwhile."""
        await asyncio.shield(self._link.spawn(self._free(key, token)))

    async def _free(self, key: str, token: str) -> None:
        # Never raises: a hold we could not free ends with its lease anyway, and the
        # holder's own outcome must not be replaced by a clean-up failure.
        try:
            freed = await self._link.script("unlock", [key], [token])
        except CoordinationError as exc:
            log.warning("could not free %s (it frees itself within %ss): %s", key, self.lease, exc)
            return
        if not freed:
            log.debug("%s was no longer ours when freed", key)


class RedisLedger(DeliveryLedger):
    def __init__(self, link: _Link, base: str) -> None:
        self._link = link
        self._base = base

    def _key(self, key: str) -> str:
        return f"{self._base}d:{key}"

    async def claim(self, key: str, ttl: float) -> bool:
        return bool(await self._link.script("claim", [self._key(key)], [_ms(ttl)]))

    async def finish(self, key: str, reply: str | None) -> None:
        args = ["0", ""] if reply is None else ["1", reply]
        await self._link.script("finish", [self._key(key)], args)

    async def get(self, key: str) -> DeliveryState | None:
        client = self._link.connected()
        done, reply, late = await self._link.run(
            "get", client.hmget(self._key(key), ["done", "reply", "late"])
        )
        if done is None:
            return None
        return DeliveryState(done=done == "1", reply=reply, sent_late=late == "1")

    async def join(self, key: str) -> None:
        await self._link.script("join", [self._key(key)], [])

    async def leave(self, key: str, *, gave_up: bool) -> None:
        await self._link.script("leave", [self._key(key)], ["1" if gave_up else "0"])

    async def answer(self, key: str) -> bool:
        return bool(await self._link.script("answer", [self._key(key)], []))

    async def take_late(self, key: str) -> bool:
        return bool(await self._link.script("take_late", [self._key(key)], []))


class RedisUserLock(UserLock):
    """Tasks of one process queue in memory; only the head of each queue polls Redis."""

    def __init__(self, mutex: _Mutex, base: str) -> None:
        self._mutex = mutex
        self._base = base
        self._local = LocalUserLock()

    @asynccontextmanager
    async def hold(self, key: str, timeout: float) -> AsyncIterator[None]:
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._local.hold(key, timeout):
            name = f"{self._base}lock:{key}"
            token = await self._mutex.take(name, deadline)
            if token is None:
                raise LockTimeout(f"lock for {key[:6]}… not free within {timeout}s")
            try:
                yield
            finally:
                await self._mutex.give(name, token)


class RedisTokenStore(TokenStore):
    def __init__(self, link: _Link, mutex: _Mutex, base: str) -> None:
        self._link = link
        self._mutex = mutex
        self._key = f"{base}token"
        self._local = LocalUserLock()

    async def get(self) -> SharedToken | None:
        raw = await self._link.run("token get", self._link.connected().get(self._key))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return SharedToken(token=str(data["token"]), expires_at=float(data["expires_at"]))
        except (ValueError, KeyError, TypeError) as exc:
            # The value is never quoted: it would be the token.
            raise CoordinationError(f"the shared token at {self._key} is unreadable") from exc

    async def put(self, token: SharedToken) -> None:
        client = self._link.connected()
        ttl = token.expires_at - time.time()
        if ttl <= 0:
            # An expired token is worth nothing to the other processes.
            await self._link.run("token put", client.delete(self._key))
            return
        value = json.dumps({"token": token.token, "expires_at": token.expires_at})
        await self._link.run("token put", client.set(self._key, value, px=_ms(ttl)))

    @asynccontextmanager
    async def refreshing(self, timeout: float) -> AsyncIterator[None]:
        deadline = asyncio.get_running_loop().time() + timeout
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self._local.hold("token", timeout))
            except LockTimeout as exc:
                raise CoordinationError(f"token refresh not free within {timeout}s") from exc
            name = f"{self._key}:refresh"
            token = await self._mutex.take(name, deadline)
            if token is None:
                raise CoordinationError(f"token refresh not free within {timeout}s")
            try:
                yield
            finally:
                await self._mutex.give(name, token)


class RedisRateLimiter(RateLimiter):
    def __init__(self, link: _Link, base: str) -> None:
        self._link = link
        self._base = base

    async def acquire(self, bucket: str, limit: int, window: float) -> float:
        window_us = max(1, round(window * 1_000_000))
        wait_us = await self._link.script(
            "rate", [f"{self._base}rate:{bucket}"], [limit, window_us]
        )
        return int(wait_us) / 1_000_000


class RedisLease(LeaderLease):
    """Held while our id is in ``lease:<name>``.

    The holder must call :meth:`try_acquire` well within ``takeover_bound`` (a
    third of it, say): each call renews the lease for ``takeover_bound`` seconds.
    """

    def __init__(self, link: _Link, key: str, ttl: float) -> None:
        self._link = link
        self._key = key
        self._ttl = ttl
        self._id = secrets.token_hex(16)

    async def try_acquire(self) -> bool:
        return bool(await self._link.script("lease", [self._key], [self._id, _ms(self._ttl)]))

    async def release(self) -> None:
        await self._link.script("unlock", [self._key], [self._id])

    @property
    def takeover_bound(self) -> float:
        return self._ttl


class RedisCoordinator(Coordinator):
    """Shared coordination through one Redis (see the module docstring for the keys)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "gongzhi:",
        app_id: str = "",
        op_timeout: float = 2.0,
        lock_lease: float = 30.0,
        lease_ttl: float = 10.0,
    ) -> None:
        self._base = prefix + (f"{app_id}:" if app_id else "")
        self._link = _Link(url, op_timeout)
        self._lease_ttl = lease_ttl
        self._leases: dict[str, RedisLease] = {}
        mutex = _Mutex(self._link, lock_lease)
        self.deliveries = RedisLedger(self._link, self._base)
        self.locks = RedisUserLock(mutex, self._base)
        self.tokens = RedisTokenStore(self._link, mutex, self._base)
        self.limiter = RedisRateLimiter(self._link, self._base)

    async def open(self) -> None:
        if self._link.client is not None:
            return
        link = self._link
        where = endpoint(link.url, 6379)
        try:
            client = aioredis.from_url(
                link.url,
                decode_responses=True,
                socket_timeout=link.op_timeout,
                socket_connect_timeout=link.op_timeout,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise CoordinationError(
                f"bad Redis URL for {where}: {describe_error(exc, link.secret)}"
            ) from None
        try:
            async with asyncio.timeout(link.op_timeout):
                await client.ping()
                async with client.pipeline(transaction=False) as pipe:
                    for _, source in _SCRIPTS:
                        pipe.script_load(source)
                    await pipe.execute()
        except _ERRORS as exc:
            await client.aclose()
            raise CoordinationError(
                f"cannot reach Redis at {where}: {describe_error(exc, link.secret)}"
            ) from exc
        link.scripts = {name: client.register_script(src) for name, src in _SCRIPTS}
        link.client = client
        log.info("coordination through Redis at %s, keys under %s", where, self._base)

    async def close(self) -> None:
        link = self._link
        if link.client is None:
            return
        for lease in self._leases.values():
            try:
                await lease.release()
            except CoordinationError as exc:
                log.warning("could not release a lease at close: %s", exc)
        if link.tasks:
            # Clean-up tasks are bounded by op_timeout each; wait a little beyond.
            _, pending = await asyncio.wait(set(link.tasks), timeout=link.op_timeout * 2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        client, link.client = link.client, None
        await client.aclose()

    def lease(self, name: str) -> LeaderLease:
        if name not in self._leases:
            self._leases[name] = RedisLease(
                self._link, f"{self._base}lease:{name}", self._lease_ttl
            )
        return self._leases[name]
