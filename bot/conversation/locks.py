"""Per-user locks: one message of a user is handled at a time, in order.

The lock is taken before the user's state is read (the aiogram #1317 lesson):
two quick messages must not both read the same old state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.errors import BotError


class LockTimeout(BotError):
    """The user's previous message is still being handled after the deadline."""


class UserLocks:
    """In-process keyed locks that are dropped as soon as nobody holds or waits."""

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
