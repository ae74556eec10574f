"""Answering each WeChat delivery once: retry de-duplication and the 5-second deadline.

WeChat re-sends a push it got no answer to (three deliveries in total), even
while the first is still being handled, and reads only the answer to the
delivery it is still waiting on. So the first delivery of a key starts the
handler once, and every delivery of that key waits on the same result and
answers with the same reply. If nobody is waiting when the reply is ready
(every delivery gave up at the deadline and answered ``success``), the reply
goes out as a customer-service message, and later retries answer ``success``
so the resident never reads it twice.

With several server processes the retry may reach another process. The first
delivery claims its key in the shared :class:`DeliveryLedger`; a delivery of a
key claimed elsewhere waits on the ledger for the owner's reply instead of
running the handler, and the ledger decides atomically who answers
passively and who (if anyone) sends the reply late.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import assert_never

from bot.coordination.base import CoordinationError, DeliveryLedger
from bot.metrics import Metrics
from bot.tasks import TaskTracker
from bot.wechat.messages import Message
from bot.wechat.replies import Article, ArticlesReply, ImageReply, Reply, TextReply

log = logging.getLogger("bot.delivery")

HandleFn = Callable[[Message], Awaitable[Reply | None]]
SendFn = Callable[[str, Reply], Awaitable[None]]

# A finished delivery: when it expires, its reply as JSON text, whether it went out late.
_Done = tuple[float, str | None, bool]

# How often a delivery waiting on another process's handler looks at the ledger.
_POLL_FIRST, _POLL_MAX = 0.01, 0.1


def dump_reply(reply: Reply | None) -> str | None:
    """A reply as JSON text, to hand it to another process through the ledger."""
    match reply:
        case None:
            return None
        case TextReply(content=content):
            return json.dumps({"text": content}, ensure_ascii=False)
        case ArticlesReply(article=a):
            fields = {
                "title": a.title,
                "description": a.description,
                "url": a.url,
                "pic_url": a.pic_url,
            }
            return json.dumps({"article": fields}, ensure_ascii=False)
        case ImageReply(media_id=media_id):
            return json.dumps({"image": media_id})
        case _:
            assert_never(reply)


def load_reply(raw: str | None) -> Reply | None:
    if raw is None:
        return None
    data = json.loads(raw)
    if "text" in data:
        return TextReply(data["text"])
    if "article" in data:
        return ArticlesReply(Article(**data["article"]))
    return ImageReply(data["image"])


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
        ledger: DeliveryLedger,
        *,
        shared: bool,
        deadline: float,
        ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self._handle = handle
        self._send_later = send_later
        self._tasks = tasks
        self._metrics = metrics
        self._ledger = ledger
        # One process: the table below is the whole truth, the ledger is never asked.
        self._shared = shared
        self._deadline = deadline
        self._ttl = ttl
        self._clock = clock
        self._seen: OrderedDict[str, _Delivery | _Done] = OrderedDict()

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
            if self._shared and not await self._claim(key):
                self._metrics.dedup_hits.inc()
                return await self._answer_from_elsewhere(msg, key)
            spawned = self._tasks.spawn(self._run(key, msg), name=f"handle:{key[-24:]}")
            entry = _Delivery(spawned, now + self._ttl)
            self._seen[key] = entry
        elif isinstance(entry, tuple):
            self._metrics.dedup_hits.inc()
            _, raw, sent_late = entry
            return (None if sent_late else load_reply(raw)), "retry"
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
            if self._shared:
                await self._record_gave_up(key)
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
        if not isinstance(entry, _Delivery):
            return reply
        entry.reply, entry.done, entry.task = reply, True, None
        try:
            if self._shared:
                await self._publish(key, reply)
            # Waiters resume after this task completes, so `waiting` is exact here.
            if reply is None or entry.waiting > 0:
                return reply
            if entry.owed if not self._shared else await self._take_late(key):
                entry.sent_late = True
                await self._deliver_late(msg.source, key, reply)
            return reply
        finally:
            if self._seen.get(key) is entry:
                # Kept for the whole TTL: a tuple of str/float/bool is not tracked by the
                # garbage collector, so hundreds of thousands of them cost no GC time.
                self._seen[key] = (entry.expires_at, dump_reply(reply), entry.sent_late)

    async def _deliver_late(self, openid: str, key: str, reply: Reply) -> None:
        try:
            await self._send_later(openid, reply)
        except Exception:
            # The resident already got `success`; all we can do is say so loudly.
            log.exception("could not send the late reply for %s", key)

    # -- several processes ----------------------------------------------------------
    async def _claim(self, key: str) -> bool:
        try:
            return await self._ledger.claim(key, self._ttl)
        except CoordinationError as exc:
            # Better to risk running a retry twice than to drop a resident's message.
            log.warning("ledger unavailable (%s); handling %s here", exc, key)
            return True

    async def _publish(self, key: str, reply: Reply | None) -> None:
        try:
            await self._ledger.finish(key, dump_reply(reply))
        except CoordinationError as exc:
            log.warning("could not publish the reply for %s: %s", key, exc)

    async def _take_late(self, key: str) -> bool:
        try:
            return await self._ledger.take_late(key)
        except CoordinationError as exc:
            log.warning("ledger unavailable (%s); not sending %s late", exc, key)
            return False

    async def _record_gave_up(self, key: str) -> None:
        try:
            await self._ledger.join(key)
            await self._ledger.leave(key, gave_up=True)
        except CoordinationError as exc:
            log.warning("could not record the deadline fallback for %s: %s", key, exc)

    async def _answer_from_elsewhere(self, msg: Message, key: str) -> tuple[Reply | None, str]:
        """A retry of a delivery another process is handling: wait for its reply."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._deadline
        gave_up = True
        pause = _POLL_FIRST
        try:
            await self._ledger.join(key)
            try:
                while True:
                    state = await self._ledger.get(key)
                    if state is None or state.sent_late:
                        gave_up = False
                        return None, "retry"
                    if state.done:
                        gave_up = False
                        if await self._ledger.answer(key):
                            return load_reply(state.reply), "retry"
                        return None, "retry"
                    left = give_up_at - loop.time()
                    if left <= 0:
                        break
                    await asyncio.sleep(min(pause, left))
                    pause = min(pause * 2, _POLL_MAX)
            finally:
                await self._ledger.leave(key, gave_up=gave_up)
            self._metrics.deadline_fallbacks.inc()
            # The owner may have finished while we were still counted as waiting, and so
            # left the late send to us.
            state = await self._ledger.get(key)
            if state is not None and state.done and await self._ledger.take_late(key):
                reply = load_reply(state.reply)
                if reply is not None:
                    self._tasks.spawn(
                        self._deliver_late(msg.source, key, reply), name=f"late:{key[-24:]}"
                    )
        except CoordinationError as exc:
            log.warning("ledger unavailable while waiting for %s: %s", key, exc)
        return None, "deadline"

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, entry = next(iter(seen.items()))
            if isinstance(entry, tuple):
                if entry[0] > now:
                    break
            elif entry.expires_at > now or not entry.done:
                break
            del seen[key]
