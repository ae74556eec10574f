"""Answering each WeChat delivery once: retry de-duplication and the 5-second deadline.

WeChat re-sends a push it got no answer to (three deliveries in total), even
while the first is still being handled, and reads only the answer to the
delivery it is still waiting on. So the first delivery of a key starts the
handler once, and every delivery of that key waits on the same result and
answers with the same reply. If nobody is waiting when the reply is ready
(every delivery gave up at the deadline and answered ``success``), the reply
goes out as a customer-service message, and later retries answer ``success``
so the resident never reads it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.metrics import Metrics
from bot.tasks import TaskTracker
from bot.wechat.messages import Message
from bot.wechat.replies import Reply

log = logging.getLogger("bot.delivery")

HandleFn = Callable[[Message], Awaitable[Reply | None]]
SendFn = Callable[[str, Reply], Awaitable[None]]


@dataclass(slots=True)
class _Delivery:
    # Dropped once the handler is done: only the reply is kept for the whole TTL,
    # so remembering every delivery for minutes stays cheap.
    task: asyncio.Task[Reply | None] | None
    expires_at: float
    done: bool = False
    reply: Reply | None = None
    waiting: int = 0
    # Some delivery answered `success` at the deadline: the reply is owed.
    owed: bool = False
    sent_late: bool = False


class RetryGuard:
    """Runs the handler once per delivery key and routes its reply to exactly one channel."""

    def __init__(
        self,
        handle: HandleFn,
        send_later: SendFn,
        tasks: TaskTracker,
        metrics: Metrics,
        *,
        deadline: float,
        ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self._handle = handle
        self._send_later = send_later
        self._tasks = tasks
        self._metrics = metrics
        self._deadline = deadline
        self._ttl = ttl
        self._clock = clock
        self._seen: OrderedDict[str, _Delivery] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    async def answer(self, msg: Message) -> tuple[Reply | None, str]:
        """The passive reply (``None``: answer ``success``) and the outcome label."""
        now = self._clock()
        self._expire(now)
        key = msg.dedup_key
        entry = self._seen.get(key)
        retry = entry is not None
        if entry is None:
            spawned = self._tasks.spawn(self._run(key, msg), name=f"handle:{key[-24:]}")
            entry = _Delivery(spawned, now + self._ttl)
            self._seen[key] = entry
        else:
            self._metrics.dedup_hits.inc()
            if entry.sent_late:
                return None, "retry"
            if entry.done:
                return entry.reply, "retry"
        task = entry.task
        assert task is not None  # set until `done`, checked above
        entry.waiting += 1
        try:
            reply = await asyncio.wait_for(asyncio.shield(task), self._deadline)
        except TimeoutError:
            entry.owed = True
            self._metrics.deadline_fallbacks.inc()
            log.warning("handler for %s missed the deadline; the reply will follow by API", key)
            return None, "deadline"
        except asyncio.CancelledError:
            raise
        except Exception:
            # Only a task cancelled at shutdown gets here; WeChat still needs an answer.
            return None, "handler_error"
        finally:
            entry.waiting -= 1
        entry.owed = False
        if retry:
            return reply, "retry"
        return reply, "reply" if reply is not None else "success"

    async def _run(self, key: str, msg: Message) -> Reply | None:
        try:
            reply = await self._handle(msg)
        except Exception:
            # The app's handler answers errors itself; this is the last line of defence.
            log.exception("handler for %s raised", key)
            reply = None
        entry = self._seen.get(key)
        if entry is not None:
            entry.reply, entry.done, entry.task = reply, True, None
        # Waiters resume after this task completes, so `waiting` is exact here.
        if reply is not None and entry is not None and entry.owed and entry.waiting == 0:
            entry.sent_late = True
            try:
                await self._send_later(msg.source, reply)
            except Exception:
                # The resident already got `success`; all we can do is say so loudly.
                log.exception("could not send the late reply for %s", key)
        return reply

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, entry = next(iter(seen.items()))
            if entry.expires_at > now or not entry.done:
                break
            del seen[key]
