"""One process, nothing to share: every coordination need served from memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

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


class LocalLedger(DeliveryLedger):
    """In one process the retry guard's own table is the ledger: every call is a no-op."""

    async def claim(self, key: str, ttl: float) -> bool:
        return True

    async def finish(self, key: str, reply: str | None) -> None:
        return None

    async def get(self, key: str) -> DeliveryState | None:
        return None

    async def join(self, key: str) -> None:
        return None

    async def leave(self, key: str, *, gave_up: bool) -> None:
        return None

    async def answer(self, key: str) -> bool:
        return True

    async def take_late(self, key: str) -> bool:
        return True


class LocalUserLock(UserLock):
    """Keyed asyncio locks, dropped as soon as nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str, timeout: float) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            try:
                async with asyncio.timeout(timeout):
                    await lock.acquire()
            except TimeoutError as exc:
                raise LockTimeout(f"lock for {key[:6]}… not free within {timeout}s") from exc
            try:
                yield
            finally:
                lock.release()
        finally:
            lock_now, users_now = self._locks[key]
            if users_now <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock_now, users_now - 1)


class LocalTokenStore(TokenStore):
    def __init__(self) -> None:
        self._token: SharedToken | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> SharedToken | None:
        return self._token

    async def put(self, token: SharedToken) -> None:
        self._token = token

    @asynccontextmanager
    async def refreshing(self, timeout: float) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(timeout):
                await self._lock.acquire()
        except TimeoutError as exc:
            raise CoordinationError(f"token refresh lock not free within {timeout}s") from exc
        try:
            yield
        finally:
            self._lock.release()


class LocalRateLimiter(RateLimiter):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    async def acquire(self, bucket: str, limit: int, window: float) -> float:
        now = self._clock()
        slot = int(now // window)
        current, used = self._windows.get(bucket, (slot, 0))
        if current != slot:
            used = 0
        if used < limit:
            self._windows[bucket] = (slot, used + 1)
            return 0.0
        return (slot + 1) * window - now


class LocalLease(LeaderLease):
    """The only process is always the leader."""

    async def try_acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None

    @property
    def takeover_bound(self) -> float:
        return 0.0


class LocalCoordinator(Coordinator):
    name = "local"

    def __init__(self) -> None:
        self.deliveries = LocalLedger()
        self.locks = LocalUserLock()
        self.tokens = LocalTokenStore()
        self.limiter = LocalRateLimiter()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def lease(self, name: str) -> LeaderLease:
        return LocalLease()

    @property
    def shared(self) -> bool:
        return False
