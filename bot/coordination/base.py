"""What several server processes must share, behind one small contract.

With the embedded store there is one process, and everything stays in memory
(:mod:`bot.coordination.local`). With PostgreSQL, several processes serve the
same account behind a load balancer; they share:

- the **delivery ledger**: which WeChat deliveries (retries) are running or done,
  and who answers each, so a retry sent to another process runs nothing twice;
- the **per-user lock**, taken before a resident's conversation state is read;
- the **access token**: one process refreshes it, the others wait and read it;
- **rate limits** for outbound pushes;
- the **leader lease**: exactly one process runs the scheduler.

Redis serves these when ``[redis] url`` is set; PostgreSQL serves them otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from bot.errors import BotError


class CoordinationError(BotError):
    """The shared coordination service (Redis or PostgreSQL) failed or timed out."""


class LockTimeout(BotError):
    """A resident's previous message is still being handled after the deadline."""


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What the ledger knows of one delivery key."""

    done: bool
    # The serialised reply (see bot.delivery); None when done with no reply, or not done.
    reply: str | None
    # The reply already went out as a customer-service message: answer `success`.
    sent_late: bool


class DeliveryLedger(ABC):
    """Cross-process state of WeChat deliveries, keyed by ``Message.dedup_key``.

    Every operation on one key is atomic. Keys expire ``ttl`` seconds after claim.
    """

    @abstractmethod
    async def claim(self, key: str, ttl: float) -> bool:
        """``True`` for exactly one caller per key (across processes): it runs the handler."""

    @abstractmethod
    async def finish(self, key: str, reply: str | None) -> None:
        """The handler is done; ``reply`` is the serialised reply or ``None``."""

    @abstractmethod
    async def get(self, key: str) -> DeliveryState | None:
        """The key's state, or ``None`` if unknown (never claimed, or expired)."""

    @abstractmethod
    async def join(self, key: str) -> None:
        """A delivery of ``key`` started waiting for the reply (in some process)."""

    @abstractmethod
    async def leave(self, key: str, *, gave_up: bool) -> None:
        """That delivery stopped waiting; ``gave_up``: it answered ``success`` at the deadline."""

    @abstractmethod
    async def answer(self, key: str) -> bool:
        """Claim the passive answer: ``False`` if the reply already went out late."""

    @abstractmethod
    async def take_late(self, key: str) -> bool:
        """Claim the late (customer-service) send.

        ``True`` only once, and only if the key is done, some delivery gave up, no
        delivery is waiting, and no delivery answered passively.
        """


class UserLock(ABC):
    """Per-resident mutual exclusion, across processes."""

    @abstractmethod
    def hold(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]:
        """Hold the lock for ``key``; :class:`LockTimeout` if not free within ``timeout``."""


@dataclass(frozen=True, slots=True)
class SharedToken:
    token: str
    expires_at: float  # epoch seconds


class TokenStore(ABC):
    """The account's access token, shared so only one process fetches it."""

    @abstractmethod
    async def get(self) -> SharedToken | None: ...

    @abstractmethod
    async def put(self, token: SharedToken) -> None: ...

    @abstractmethod
    def refreshing(self, timeout: float) -> AbstractAsyncContextManager[None]:
        """Held by the one process that refreshes; others wait here (up to ``timeout``),
        then re-read with :meth:`get`. :class:`CoordinationError` on timeout."""


class RateLimiter(ABC):
    """A shared fixed-window limit, e.g. template sends per second across processes."""

    @abstractmethod
    async def acquire(self, bucket: str, limit: int, window: float) -> float:
        """Take one slot; returns 0 if granted now, else seconds to wait before retrying."""


class LeaderLease(ABC):
    """Exactly one holder at a time; a dead holder's lease ends within a bounded time."""

    @abstractmethod
    async def try_acquire(self) -> bool:
        """Become (or stay) the holder; ``True`` if we hold it now."""

    @abstractmethod
    async def release(self) -> None: ...

    @property
    @abstractmethod
    def takeover_bound(self) -> float:
        """Seconds after a holder dies within which another can acquire."""


class Coordinator(ABC):
    """One per app: opened at startup, closed at shutdown."""

    name: str
    deliveries: DeliveryLedger
    locks: UserLock
    tokens: TokenStore
    limiter: RateLimiter

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def lease(self, name: str) -> LeaderLease:
        """A named leader lease (e.g. ``"scheduler"``)."""

    @property
    def shared(self) -> bool:
        """Whether state is shared with other processes (ledger calls are worth making)."""
        return True
