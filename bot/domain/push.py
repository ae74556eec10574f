"""The push engine: one message to many residents, each exactly once, whatever crashes.

A push is claimed by inserting its campaign record (``<campaign>:<period>``), so a
second scheduler, a restart or "run now" twice sends nothing. The recipients are
stored with the claim; one delivery record per recipient is then written
(idempotently: a crash halfway is finished by :meth:`PushEngine.resume`), and the
deliveries are sent at the configured rate, shared by every process.

Each delivery is claimed before its request goes out (``pending → sending`` with
a lease, one compare-and-set), so two processes never send it twice. Its answer
is then recorded: ``sent`` (with WeChat's msgid), ``failed`` (with the errcode;
at once for a resident who does not follow, a bad openid, a closed 48-hour
window), or ``unknown`` when the answer was lost and the message may have
arrived: a timeout, a broken connection, or a holder that died mid-send (its
lease runs out with the delivery still ``sending``). Unknown deliveries are
never retried automatically; staff see them and may retry them
(:meth:`PushEngine.retry_unknown`, audited). WeChat answering -1 (busy) or 45009
(rate or daily quota) pauses the whole campaign, every process, for a backoff
that doubles while it lasts, and the delivery is sent again afterwards.

Mass sends go in jobs of up to ``mass_batch`` openids, one batch at a time per
campaign, each with a ``clientmsgid`` derived from the campaign and the batch
number. A batch's members are fixed (marked ``sending`` with the batch number)
before its first request, so a batch retried after a lost answer or a crash is
the same job, which WeChat refuses with 45065: its members are then marked sent,
not sent again. Each follower may receive 4 mass messages a calendar month: the
engine counts them per follower, and a recipient at the limit is marked failed
(reason ``monthly_limit``) instead of being sent a fifth.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from bot.config import PushConfig
from bot.coordination.base import CoordinationError, RateLimiter
from bot.domain.errors import Invalid, NotFound
from bot.errors import StorageError, WeChatAPIError
from bot.redact import mask
from bot.wechat.api_errors import (
    AccessTokenInvalid,
    APITransportError,
    MassAlreadySent,
    QuotaExceeded,
    SystemBusy,
)
from bot.wechat.client import CLIENTMSGID_MAX_BYTES, MASS_SEND_MAX_OPENIDS, WeChatClient
from storage.push import (
    CHANNELS,
    CLAIMED,
    DELIVERY_STATES,
    DONE,
    FAILED,
    OPEN_STATES,
    PENDING,
    RETRY,
    RUNNING,
    SENDING,
    SENT,
    UNKNOWN,
    Campaign,
    Delivery,
    PushRepo,
    Unchanged,
    campaign_key,
    delivery_key,
)
from storage.repos import AuditRepo

log = logging.getLogger("bot.domain.push")

T = TypeVar("T")
Spawn = Callable[[Awaitable[object], str], None]

# Errors no retry can cure for this recipient: a bad openid, not a follower, the 48-hour
# window closed or its message count used up, a bad template, a refused message.
PERMANENT = frozenset({40003, 40008, 40037, 43004, 44004, 45015, 45047, 47001})
MONTHLY_LIMIT = "monthly_limit"
MASS_NEEDS_TWO = "mass_needs_two"
INTERRUPTED = "interrupted"
# WeChat refuses a repeated clientmsgid for 24 hours; a batch first tried longer ago than
# this is not tried again (it might go out twice): its members are marked unknown.
MASS_DEDUP_SAFE = 23 * 3600.0
PAGE = 200  # deliveries read per look-up
WRITES_AT_ONCE = 64  # concurrent store writes when writing or marking many deliveries
POLL = 0.5  # seconds between looks while other processes hold the remaining work
LONGEST_SLEEP = 5.0
SEND_APIS = {"template": "template_send", "custom": "custom_send", "mass": "mass_send"}


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a push stands; ``pending`` includes deliveries waiting for a retry."""

    key: str
    state: str
    channel: str
    total: int
    pending: int
    sending: int
    sent: int
    failed: int
    unknown: int
    over_limit: int
    paused_until: float

    @property
    def done(self) -> bool:
        return self.state == DONE

    def to_doc(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "state": self.state,
            "channel": self.channel,
            "total": self.total,
            "pending": self.pending,
            "sending": self.sending,
            "sent": self.sent,
            "failed": self.failed,
            "unknown": self.unknown,
            "over_limit": self.over_limit,
            "paused_until": self.paused_until,
        }


@dataclass(frozen=True, slots=True)
class _Outcome:
    state: str
    errcode: int | None = None
    reason: str = ""
    msgid: int | None = None
    next_at: float = 0.0
    pause: bool = False  # WeChat is busy or over its rate: pause the campaign


def clientmsgid(key: str, batch: int) -> str:
    """The mass-send job id of a campaign's batch: the same on every retry, ≤ 64 bytes."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    value = f"gz-{digest}-{batch}"
    assert len(value.encode("ascii")) <= CLIENTMSGID_MAX_BYTES
    return value


def batch_size(total: int, most: int) -> int:
    """Openids per mass job: as even as possible, so no batch is left with one openid."""
    if total <= 0:
        return 0
    batches = -(-total // most)
    return -(-total // batches)


class PushEngine:
    def __init__(
        self,
        repo: PushRepo,
        wechat: WeChatClient,
        limiter: RateLimiter,
        audit: AuditRepo,
        config: PushConfig,
        *,
        timezone: ZoneInfo | None = None,
        clock: Callable[[], float] = time.time,
        spawn: Spawn | None = None,
        owner: str = "",
    ) -> None:
        """``clock`` is wall time (leases are compared across processes); ``spawn`` runs
        sending in the background (the app's task tracker); without it, :meth:`start`,
        :meth:`resume` and :meth:`retry_unknown` send before they return."""
        self._repo = repo
        self._wechat = wechat
        self._limiter = limiter
        self._audit = audit
        self._config = config
        self._tz = timezone or ZoneInfo("Asia/Shanghai")
        self._clock = clock
        self._spawn = spawn
        self.owner = owner or f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(3)}"
        self._active: set[str] = set()
        self._pause: dict[str, float] = {}
        self._streak: dict[str, int] = {}
        self._stopping = asyncio.Event()
        self._send_deadline = config.lease_seconds / 2
        self._poll = min(POLL, max(0.01, config.backoff_seconds))

    # -- the public API --------------------------------------------------------
    async def start(
        self,
        campaign: str,
        period: str,
        *,
        channel: str,
        text: str,
        recipients: Sequence[str],
        template_id: str = "",
        template_data: Mapping[str, str] | None = None,
        by: str,
        url: str = "",
        audience: str = "",
    ) -> Campaign | None:
        """Claim ``(campaign, period)`` and send ``text`` to each recipient once.

        ``None`` if that push was claimed before (here or in another process, now or
        ever): nothing is sent. Otherwise the deliveries are written before this
        returns, and sending runs in the background (or before it returns, without
        ``spawn``). ``audience`` describes who the recipients are, for staff.
        """
        _check(campaign, period, channel, text, template_id)
        key = campaign_key(campaign, period)
        unique = list(dict.fromkeys(r for r in recipients if r))
        now = self._clock()
        doc: dict[str, Any] = {
            "campaign": campaign,
            "period": period,
            "channel": channel,
            "text": text,
            "template_id": template_id,
            "template_data": dict(
                template_data
                if template_data is not None
                else {"first": text.split("\n", 1)[0], "remark": text}
            ),
            "url": url,
            "audience": audience,
            "state": CLAIMED,
            "total": len(unique),
            "created_at": now,
            "by": by,
            "batch_size": batch_size(len(unique), self._config.mass_batch),
            "recipients": unique,
        }
        if await self._repo.claim(key, doc) is None:
            log.info("push %s was claimed before: not sent again", key)
            return None
        log.info("push %s claimed by %s: %s recipients by %s", key, by, len(unique), channel)
        claimed = await self._prepare(key, unique)
        if claimed.state == RUNNING:
            await self._go(key)
        return claimed

    async def run(self, key: str) -> Progress:
        """Send what is left of push ``key`` (joining other processes on it) until done.

        Returns early, leaving the rest to :meth:`resume`, only when :meth:`stop` is called.
        """
        camp = await self._need(key)
        if camp.state == CLAIMED:
            camp = await self._prepare(key, await self._repo.recipients(key))
        failures = 0
        while camp.state == RUNNING and not self._stopping.is_set():
            try:
                if camp.channel == "mass":
                    worked = await self._mass_pass(camp)
                else:
                    await self._reap(camp)
                    worked = await self._single_pass(camp)
                camp = await self._need(key)
                if camp.state == RUNNING and await self._finish_if_done(camp):
                    break
                failures = 0
            except (StorageError, CoordinationError) as exc:
                # The store or Redis hiccuped: try again shortly, give up after a few.
                failures += 1
                if failures >= 5:
                    raise
                log.warning("push %s: %s; trying again", key, exc)
                worked = False
            if not worked:
                await self._idle(camp)
            camp = await self._need(key)
        return await self.progress(key)

    async def resume(self) -> int:
        """Continue every push left running (after a crash or a restart); returns how many.

        A push still being written (claimed) is taken over once its writer has had a
        lease's time: writing its deliveries twice is harmless, each is written once.
        """
        now = self._clock()
        keys = [c.key for c in await self._repo.campaigns_in(RUNNING)]
        keys += [
            c.key
            for c in await self._repo.campaigns_in(CLAIMED)
            if c.created_at + self._config.lease_seconds <= now
        ]
        started = 0
        for key in keys:
            if key not in self._active:
                started += 1
                await self._go(key)
        if started:
            log.info("resumed %s push(es)", started)
        return started

    async def progress(self, key: str) -> Progress:
        camp = await self._need(key)
        counts = {state: await self._repo.count(key, state) for state in DELIVERY_STATES}
        return Progress(
            key=key,
            state=camp.state,
            channel=camp.channel,
            total=camp.total,
            pending=counts[PENDING] + counts[RETRY],
            sending=counts[SENDING],
            sent=counts[SENT],
            failed=counts[FAILED],
            unknown=counts[UNKNOWN],
            over_limit=camp.over_limit,
            paused_until=camp.paused_until,
        )

    async def campaign(self, key: str) -> Campaign | None:
        return await self._repo.campaign(key)

    async def deliveries(self, key: str, state: str, *, limit: int = 100) -> list[Delivery]:
        """Deliveries of push ``key`` in ``state`` (e.g. the unknown ones staff look at)."""
        if state not in DELIVERY_STATES:
            raise Invalid(f"未知的投递状态 {state!r}")
        return await self._repo.in_state(key, state, limit=limit)

    async def retry_unknown(self, key: str, *, by: str) -> int:
        """Staff decided: send the unknown deliveries again (some may arrive twice).

        Returns how many went back to pending; audited; the push runs again.
        """
        camp = await self._need(key)
        now = self._clock()

        def again(current: Delivery) -> Delivery:
            if current.state != UNKNOWN:
                raise Unchanged
            return replace(
                current,
                state=PENDING,
                errcode=None,
                reason="",
                owner="",
                lease_until=0.0,
                next_at=0.0,
                updated_at=now,
            )

        moved = 0
        for _ in range(camp.total // PAGE + 2):
            found = await self._repo.in_state(key, UNKNOWN, limit=PAGE)
            if not found:
                break
            for delivery in found:
                if await self._repo.change(delivery.key, again) is not None:
                    moved += 1
        if not moved:
            return 0

        def reopen(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["state"] != DONE:
                raise Unchanged
            doc.update(state=RUNNING, finished_at=None, counts={})
            return doc

        with contextlib.suppress(Unchanged):
            await self._repo.change_campaign(key, reopen)
        await self._audit.add(by, "push.retry_unknown", f"push/{key}", {"deliveries": moved}, now)
        log.warning("push %s: %s unknown deliveries sent again, by %s", key, moved, by)
        await self._go(key)
        return moved

    def stop(self) -> None:
        """Finish the sends in flight and claim no more (shutdown); :meth:`resume` continues."""
        self._stopping.set()

    # -- writing the deliveries ------------------------------------------------
    async def _prepare(self, key: str, recipients: Sequence[str]) -> Campaign:
        """Write one pending delivery per recipient (again after a crash), then run."""
        now = self._clock()
        await _gather_chunks(
            self._repo.add(Delivery(delivery_key(key, r), key, r, PENDING, updated_at=now))
            for r in recipients
        )
        total = len(recipients)

        def ready(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["state"] != CLAIMED:
                raise Unchanged
            doc.pop("recipients", None)
            doc["prepared_at"] = now
            if total:
                doc["state"] = RUNNING
            else:
                doc.update(state=DONE, finished_at=now, counts={})
            return doc

        try:
            return await self._repo.change_campaign(key, ready)
        except Unchanged:
            return await self._need(key)

    # -- one message per recipient (template, custom) -------------------------
    async def _single_pass(self, camp: Campaign) -> bool:
        """Send pending deliveries with ``concurrency`` workers until none is left."""
        key = camp.key
        queue: list[Delivery] = []
        in_hand: set[str] = set()
        refill = asyncio.Lock()
        exhausted = False
        worked = False

        async def next_delivery() -> Delivery | None:
            nonlocal exhausted
            async with refill:
                if not queue and not exhausted:
                    await self._refresh_pause(key)
                    found = await self._repo.in_state(key, PENDING, limit=PAGE)
                    fresh = [d for d in found if d.key not in in_hand]
                    # Another process reads the same page: start at different places.
                    random.shuffle(fresh)
                    queue.extend(fresh)
                    exhausted = not fresh
                if not queue:
                    return None
                delivery = queue.pop()
                in_hand.add(delivery.key)
                return delivery

        async def worker() -> None:
            nonlocal worked
            while await self._wait_pause(key):
                delivery = await next_delivery()
                if delivery is None:
                    return
                try:
                    if not await self._slot(camp.channel):
                        return
                    claimed = await self._claim(delivery)
                    if claimed is not None:
                        worked = True
                        await self._send_one(camp, claimed)
                finally:
                    in_hand.discard(delivery.key)

        results = await asyncio.gather(
            *(worker() for _ in range(self._config.concurrency)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return worked

    async def _claim(self, delivery: Delivery) -> Delivery | None:
        """``pending → sending`` under our lease; ``None`` if someone else changed it first."""
        now = self._clock()
        held = replace(
            delivery,
            state=SENDING,
            owner=self.owner,
            lease_until=now + self._config.lease_seconds,
            attempts=delivery.attempts + 1,
            updated_at=now,
        )
        return await self._repo.swap(delivery, held)

    async def _send_one(self, camp: Campaign, delivery: Delivery) -> None:
        msgid: int | None = None
        failure: Exception | None = None
        try:
            async with asyncio.timeout(self._send_deadline):
                if camp.channel == "template":
                    msgid = await self._wechat.send_template(
                        delivery.recipient,
                        camp.template_id,
                        camp.template_data,
                        url=camp.url or None,
                    )
                else:
                    await self._wechat.send_text(delivery.recipient, camp.text)
        except (WeChatAPIError, CoordinationError, TimeoutError, ValueError) as exc:
            failure = exc
        now = self._clock()
        outcome = (
            _Outcome(SENT, msgid=msgid)
            if failure is None
            else self._judge(failure, delivery.attempts, SEND_APIS[camp.channel], now)
        )
        saved = await self._record(delivery, outcome, now)
        if outcome.pause:
            await self._pause_campaign(camp.key, outcome.errcode)
        elif outcome.state == SENT:
            await self._calm(camp.key)
        who = mask(delivery.recipient)
        if saved is None:
            log.warning("push %s: the result for %s came after its lease ended", camp.key, who)
        elif outcome.state in (FAILED, UNKNOWN):
            log.warning(
                "push %s to %s %s: errcode=%s %s",
                camp.key,
                who,
                outcome.state,
                outcome.errcode,
                outcome.reason,
            )

    def _judge(self, exc: Exception, attempts: int, api: str, now: float) -> _Outcome:
        """What a failed send means for its delivery."""
        config = self._config
        if isinstance(exc, TimeoutError):
            return _Outcome(UNKNOWN, -2, f"no answer within {self._send_deadline:.0f} s")
        if isinstance(exc, ValueError):
            return _Outcome(FAILED, None, str(exc)[:200])
        if isinstance(exc, CoordinationError):
            # The shared access token could not be had: the message never left.
            return _Outcome(PENDING, None, str(exc)[:200], pause=True)
        assert isinstance(exc, WeChatAPIError)
        reason = f"{exc.errcode}: {exc.errmsg}"[:200]
        if isinstance(exc, APITransportError):
            if exc.api == api:
                # The request may have reached WeChat: never sent again without staff.
                return _Outcome(UNKNOWN, exc.errcode, reason)
            # The token fetch failed: the message itself never left.
            return _Outcome(PENDING, exc.errcode, reason, pause=True)
        if exc.errcode in PERMANENT:
            return _Outcome(FAILED, exc.errcode, reason)
        if isinstance(exc, QuotaExceeded):
            # Over the rate or the daily quota: it resets, so never give up on it.
            return _Outcome(PENDING, exc.errcode, reason, pause=True)
        if isinstance(exc, SystemBusy | AccessTokenInvalid):
            if attempts >= config.max_attempts:
                return _Outcome(FAILED, exc.errcode, reason)
            return _Outcome(PENDING, exc.errcode, reason, pause=True)
        if attempts >= config.max_attempts:
            return _Outcome(FAILED, exc.errcode, reason)
        wait = min(config.backoff_seconds * 2 ** (attempts - 1), config.backoff_max_seconds)
        return _Outcome(RETRY, exc.errcode, reason, next_at=now + wait)

    async def _record(self, delivery: Delivery, outcome: _Outcome, now: float) -> Delivery | None:
        """Write the outcome if the delivery is still ours (or was marked unknown meanwhile)."""

        def result(current: Delivery) -> Delivery:
            return replace(
                current,
                state=outcome.state,
                errcode=outcome.errcode,
                reason=outcome.reason,
                msgid=outcome.msgid,
                sent_at=now if outcome.state == SENT else None,
                next_at=outcome.next_at,
                lease_until=0.0,
                updated_at=now,
            )

        saved = await self._repo.swap(delivery, result(delivery))
        if saved is not None:
            return saved

        def late(current: Delivery) -> Delivery:
            ours = current.owner == self.owner and current.attempts == delivery.attempts
            if not ours or current.state not in (SENDING, UNKNOWN):
                raise Unchanged
            return result(current)

        return await self._repo.change(delivery.key, late)

    async def _reap(self, camp: Campaign) -> None:
        """Deliveries whose holder died mid-send become unknown; due retries pending again."""
        now = self._clock()

        def lost(current: Delivery) -> Delivery:
            if current.state != SENDING or current.lease_until > now:
                raise Unchanged
            return replace(
                current,
                state=UNKNOWN,
                errcode=None,
                reason=f"{INTERRUPTED}: its sender stopped before WeChat's answer was recorded",
                lease_until=0.0,
                updated_at=now,
            )

        for delivery in await self._repo.in_state(camp.key, SENDING, limit=1000):
            if delivery.lease_until <= now and await self._repo.change(delivery.key, lost):
                log.warning(
                    "push %s: the send to %s was in flight when its sender stopped: unknown",
                    camp.key,
                    mask(delivery.recipient),
                )

        def due(current: Delivery) -> Delivery:
            if current.state != RETRY or current.next_at > now:
                raise Unchanged
            return replace(current, state=PENDING, updated_at=now)

        for delivery in await self._repo.in_state(camp.key, RETRY, limit=1000):
            if delivery.next_at <= now:
                await self._repo.change(delivery.key, due)

    # -- mass send ---------------------------------------------------------------
    async def _mass_pass(self, camp: Campaign) -> bool:
        """Send the campaign's next batch if no other process is; False if nothing was done."""
        now = self._clock()

        def take(doc: dict[str, Any]) -> dict[str, Any]:
            mass = dict(doc.get("mass") or {})
            held = mass.get("owner") and mass["owner"] != self.owner
            if doc["state"] != RUNNING or (held and mass.get("lease_until", 0.0) > now):
                raise Unchanged
            if doc.get("paused_until", 0.0) > now or mass.get("next_at", 0.0) > now:
                raise Unchanged
            mass.setdefault("batch", 0)
            mass["owner"] = self.owner
            mass["lease_until"] = now + self._config.lease_seconds
            doc["mass"] = mass
            return doc

        try:
            camp = await self._repo.change_campaign(camp.key, take)
        except Unchanged:
            return False
        try:
            return await self._mass_batch(camp)
        finally:
            await self._let_go(camp.key)

    async def _let_go(self, key: str) -> None:
        def release(doc: dict[str, Any]) -> dict[str, Any]:
            mass = dict(doc.get("mass") or {})
            if mass.get("owner") != self.owner:
                raise Unchanged
            mass.update(owner="", lease_until=0.0)
            doc["mass"] = mass
            return doc

        try:
            await self._repo.change_campaign(key, release)
        except Unchanged:
            pass
        except (StorageError, KeyError) as exc:
            log.warning("push %s: could not release the mass batch (its lease ends): %s", key, exc)

    async def _mass_batch(self, camp: Campaign) -> bool:
        key, mass = camp.key, camp.mass
        number = int(mass["batch"])
        members = await self._repo.in_state(key, SENDING, limit=MASS_SEND_MAX_OPENIDS)
        if mass.get("outcome"):
            # WeChat's answer was recorded before a crash: finish marking the batch.
            await self._close_batch(camp, members, _outcome_from(mass["outcome"]))
            return True
        if "first_sent_at" not in mass:
            # Members are fixed once the job was first asked for: a retry must be the same
            # job, or WeChat's 45065 would stand for openids the first job never had.
            need = camp.batch_size - len(members)
            members += await self._collect(camp, number, need, len(members))
        if not members:
            return False
        month = mass.get("month") or self._month(self._clock())
        eligible = await self._within_limit(camp, members, month)
        if len(eligible) == 1:
            # WeChat's mass send takes at least two openids.
            await self._mark(key, eligible, _Outcome(FAILED, None, MASS_NEEDS_TWO))
            await self._repo.release_mass(eligible[0].recipient, month, key)
            eligible = []
        if not eligible:
            await self._next_batch(key, number, {"batch": number, "size": 0, "state": "skipped"})
            return True
        now = self._clock()
        first = mass.get("first_sent_at")
        if first is not None and now - float(first) > MASS_DEDUP_SAFE:
            reason = "first tried over 23 h ago: WeChat no longer de-duplicates it, not resent"
            await self._conclude(camp, eligible, _Outcome(UNKNOWN, None, reason), month)
            return True

        def note(doc: dict[str, Any]) -> dict[str, Any]:
            m = dict(doc.get("mass") or {})
            if m.get("owner") != self.owner or m.get("batch") != number:
                raise Unchanged
            m.setdefault("first_sent_at", now)
            m["month"] = month
            m["lease_until"] = now + self._config.lease_seconds
            doc["mass"] = m
            return doc

        try:
            camp = await self._repo.change_campaign(key, note)
        except Unchanged:
            return False  # our hold ended: whoever holds it now sends this batch
        if not await self._slot("mass"):
            return False
        openids = [d.recipient for d in eligible]
        failure: Exception | None = None
        msg_id: int | None = None
        try:
            async with asyncio.timeout(self._send_deadline):
                msg_id = await self._wechat.mass_send_text(
                    openids, camp.text, clientmsgid=clientmsgid(key, number)
                )
        except MassAlreadySent as exc:
            log.info("push %s batch %s had been sent already (45065)", key, number)
            msg_id = exc.msg_id
        except (WeChatAPIError, CoordinationError, TimeoutError, ValueError) as exc:
            failure = exc
        if failure is None:
            await self._calm(key)
            await self._conclude(camp, eligible, _Outcome(SENT, msgid=msg_id), month)
            return True
        return await self._mass_failed(camp, number, eligible, failure, month)

    async def _collect(self, camp: Campaign, number: int, need: int, have: int) -> list[Delivery]:
        """Fix the next ``need`` pending deliveries as members of batch ``number``."""
        if need <= 0:
            return []
        left = await self._repo.count(camp.key, PENDING)
        take = min(need, left)
        if left - take == 1 and have + take + 1 <= MASS_SEND_MAX_OPENIDS:
            take += 1  # never leave one openid for a batch of its own
        if take <= 0:
            return []
        now = self._clock()
        found = await self._repo.in_state(camp.key, PENDING, limit=take)
        claimed = await _gather_chunks(
            self._repo.swap(
                d,
                replace(
                    d,
                    state=SENDING,
                    batch=number,
                    owner=self.owner,
                    attempts=d.attempts + 1,
                    updated_at=now,
                ),
            )
            for d in found
        )
        return [d for d in claimed if d is not None]

    async def _within_limit(
        self, camp: Campaign, members: list[Delivery], month: str
    ) -> list[Delivery]:
        """Count the batch against each member's monthly mass messages; fail those at the limit."""
        limit = self._config.mass_monthly_limit
        allowed = await _gather_chunks(
            self._repo.reserve_mass(d.recipient, month, camp.key, limit) for d in members
        )
        over = [d for d, ok in zip(members, allowed, strict=True) if not ok]
        if over:
            reason = f"{MONTHLY_LIMIT}: {limit} mass messages in {month} already"
            marked = await self._mark(camp.key, over, _Outcome(FAILED, None, reason))

            def add(doc: dict[str, Any]) -> dict[str, Any]:
                doc["over_limit"] = int(doc.get("over_limit", 0)) + marked
                return doc

            await self._repo.change_campaign(camp.key, add)
            log.warning(
                "push %s: %s recipients already had %s mass messages in %s: not sent",
                camp.key,
                len(over),
                limit,
                month,
            )
        return [d for d, ok in zip(members, allowed, strict=True) if ok]

    async def _mass_failed(
        self,
        camp: Campaign,
        number: int,
        members: list[Delivery],
        failure: Exception,
        month: str,
    ) -> bool:
        config = self._config
        attempts = int(camp.mass.get("attempts", 0)) + 1
        outcome = self._judge(failure, attempts, "mass_send", self._clock())
        if outcome.state == UNKNOWN and attempts < config.max_attempts:
            # Unlike one message, a mass job can be asked again: the same clientmsgid
            # makes WeChat refuse it (45065) if the lost request did arrive.
            wait = min(config.backoff_seconds * 2 ** (attempts - 1), config.backoff_max_seconds)
            outcome = _Outcome(RETRY, outcome.errcode, outcome.reason, next_at=self._clock() + wait)
        log.warning(
            "push %s batch %s (%s openids) not sent, attempt %s: errcode=%s %s",
            camp.key,
            number,
            len(members),
            attempts,
            outcome.errcode,
            outcome.reason,
        )
        if outcome.state in (FAILED, UNKNOWN):
            await self._conclude(camp, members, outcome, month)
            return True
        if outcome.pause:
            await self._pause_campaign(camp.key, outcome.errcode)

        def again(doc: dict[str, Any]) -> dict[str, Any]:
            m = dict(doc.get("mass") or {})
            if m.get("batch") != number:
                raise Unchanged
            m["attempts"] = attempts
            m["next_at"] = outcome.next_at
            doc["mass"] = m
            return doc

        with contextlib.suppress(Unchanged):
            await self._repo.change_campaign(camp.key, again)
        return True

    async def _conclude(
        self, camp: Campaign, members: list[Delivery], outcome: _Outcome, month: str
    ) -> None:
        """Record the batch's outcome first, then mark its members, then move on."""
        number = int(camp.mass["batch"])

        def decided(doc: dict[str, Any]) -> dict[str, Any]:
            m = dict(doc.get("mass") or {})
            if m.get("batch") != number:
                raise Unchanged
            m["outcome"] = {
                "state": outcome.state,
                "errcode": outcome.errcode,
                "reason": outcome.reason,
                "msgid": outcome.msgid,
            }
            m["month"] = month
            doc["mass"] = m
            return doc

        try:
            camp = await self._repo.change_campaign(camp.key, decided)
        except Unchanged:
            return
        await self._close_batch(camp, members, outcome)

    async def _close_batch(
        self, camp: Campaign, members: list[Delivery], outcome: _Outcome
    ) -> None:
        number = int(camp.mass["batch"])
        await self._mark(camp.key, members, outcome)
        if outcome.state == FAILED:
            # WeChat refused the job: nobody received it, so it does not count.
            month = str(camp.mass.get("month") or self._month(self._clock()))
            await _gather_chunks(
                self._repo.release_mass(d.recipient, month, camp.key) for d in members
            )
        level = logging.INFO if outcome.state == SENT else logging.WARNING
        log.log(
            level,
            "push %s batch %s: %s openids %s (msg_id %s)",
            camp.key,
            number,
            len(members),
            outcome.state,
            outcome.msgid,
        )
        entry = {
            "batch": number,
            "size": len(members),
            "state": outcome.state,
            "msg_id": outcome.msgid,
            "errcode": outcome.errcode,
        }
        await self._next_batch(camp.key, number, entry)

    async def _next_batch(self, key: str, number: int, entry: Mapping[str, Any]) -> None:
        def advance(doc: dict[str, Any]) -> dict[str, Any]:
            m = dict(doc.get("mass") or {})
            if m.get("batch") != number:
                raise Unchanged
            doc["mass"] = {"batch": number + 1, "owner": m.get("owner", ""), "lease_until": 0.0}
            doc["batches"] = [*doc.get("batches", []), dict(entry)]
            return doc

        with contextlib.suppress(Unchanged):
            await self._repo.change_campaign(key, advance)

    async def _mark(self, key: str, members: Sequence[Delivery], outcome: _Outcome) -> int:
        """Give each member (still ``sending``) the batch's outcome; returns how many changed."""
        now = self._clock()

        def result(current: Delivery) -> Delivery:
            return replace(
                current,
                state=outcome.state,
                errcode=outcome.errcode,
                reason=outcome.reason,
                msgid=outcome.msgid,
                sent_at=now if outcome.state == SENT else None,
                owner="",
                lease_until=0.0,
                updated_at=now,
            )

        def checked(current: Delivery) -> Delivery:
            if current.state != SENDING:
                raise Unchanged
            return result(current)

        async def one(delivery: Delivery) -> bool:
            fast = delivery.state == SENDING
            if fast and await self._repo.swap(delivery, result(delivery)) is not None:
                return True
            return await self._repo.change(delivery.key, checked) is not None

        return sum(await _gather_chunks(one(d) for d in members))

    def _month(self, now: float) -> str:
        return datetime.fromtimestamp(now, self._tz).strftime("%Y-%m")

    # -- pacing ----------------------------------------------------------------
    async def _slot(self, channel: str) -> bool:
        """Wait for a send slot under the shared rate limit; False if stopping meanwhile."""
        while not self._stopping.is_set():
            wait = await self._limiter.acquire(f"push:{channel}", self._config.rate_per_second, 1.0)
            if wait <= 0:
                return True
            if await self._sleep(min(wait, 1.0)):
                return False
        return False

    async def _pause_campaign(self, key: str, errcode: int | None) -> None:
        """WeChat is busy or over its rate: nobody sends this push for a while (doubling)."""
        now = self._clock()
        config = self._config

        def pause(doc: dict[str, Any]) -> dict[str, Any]:
            if float(doc.get("paused_until", 0.0)) > now:
                raise Unchanged  # paused already by a send that failed alongside
            streak = int(doc.get("busy_streak", 0))
            wait = min(config.backoff_seconds * 2**streak, config.backoff_max_seconds)
            doc["paused_until"] = now + wait
            doc["busy_streak"] = streak + 1
            return doc

        try:
            camp = await self._repo.change_campaign(key, pause)
        except Unchanged:
            await self._refresh_pause(key)
            return
        self._pause[key] = camp.paused_until
        self._streak[key] = camp.busy_streak
        log.warning(
            "push %s paused for %.1f s: WeChat answered %s",
            key,
            camp.paused_until - now,
            errcode,
        )

    async def _calm(self, key: str) -> None:
        """A send went through: the next busy answer pauses for the shortest time again."""
        if not self._streak.get(key):
            return
        self._streak[key] = 0
        now = self._clock()

        def reset(doc: dict[str, Any]) -> dict[str, Any]:
            if not doc.get("busy_streak") or float(doc.get("paused_until", 0.0)) > now:
                raise Unchanged
            doc["busy_streak"] = 0
            return doc

        with contextlib.suppress(Unchanged):
            await self._repo.change_campaign(key, reset)

    async def _refresh_pause(self, key: str) -> None:
        camp = await self._repo.campaign(key)
        if camp is not None:
            self._pause[key] = max(self._pause.get(key, 0.0), camp.paused_until)
            self._streak[key] = camp.busy_streak

    async def _wait_pause(self, key: str) -> bool:
        """Sleep out the campaign's pause; False if the engine is stopping."""
        while not self._stopping.is_set():
            left = self._pause.get(key, 0.0) - self._clock()
            if left <= 0:
                return True
            await self._sleep(min(left, self._config.backoff_max_seconds))
        return False

    async def _idle(self, camp: Campaign) -> None:
        wait = self._poll
        left = camp.paused_until - self._clock()
        if left > wait:
            wait = min(left, LONGEST_SLEEP)
        await self._sleep(wait)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at :meth:`stop`; True if stopping."""
        if seconds > 0 and not self._stopping.is_set():
            try:
                async with asyncio.timeout(seconds):
                    await self._stopping.wait()
            except TimeoutError:
                return False
        return self._stopping.is_set()

    # -- bookkeeping -----------------------------------------------------------
    async def _finish_if_done(self, camp: Campaign) -> bool:
        for state in OPEN_STATES:
            if await self._repo.count(camp.key, state):
                return False
        counts = {
            state: await self._repo.count(camp.key, state) for state in (SENT, FAILED, UNKNOWN)
        }
        now = self._clock()

        def finish(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["state"] != RUNNING:
                raise Unchanged
            doc.update(state=DONE, finished_at=now, counts=counts)
            return doc

        try:
            await self._repo.change_campaign(camp.key, finish)
        except Unchanged:
            return True
        log.info(
            "push %s done: %s sent, %s failed, %s unknown",
            camp.key,
            counts[SENT],
            counts[FAILED],
            counts[UNKNOWN],
        )
        return True

    async def _need(self, key: str) -> Campaign:
        camp = await self._repo.campaign(key)
        if camp is None:
            raise NotFound(f"没有推送 {key}")
        return camp

    async def _go(self, key: str) -> None:
        if self._spawn is None:
            await self.run(key)
        elif key not in self._active:
            self._active.add(key)
            self._spawn(self._background(key), f"push:{key}")

    async def _background(self, key: str) -> None:
        try:
            await self.run(key)
        finally:
            self._active.discard(key)


def _check(campaign: str, period: str, channel: str, text: str, template_id: str) -> None:
    if not campaign or not period or "|" in campaign or "|" in period:
        raise Invalid("推送的 campaign 和 period 不能为空，也不能含有 |")
    if channel not in CHANNELS:
        raise Invalid(f"未知的推送渠道 {channel!r}（可用：{'、'.join(CHANNELS)}）")
    if channel == "template" and not template_id:
        raise Invalid("模板消息推送需要 template_id")
    if not text.strip():
        raise Invalid("推送内容不能为空")


def _outcome_from(doc: Mapping[str, Any]) -> _Outcome:
    return _Outcome(doc["state"], doc.get("errcode"), doc.get("reason", ""), doc.get("msgid"))


async def _gather_chunks(jobs: Iterable[Awaitable[T]]) -> list[T]:
    """Await ``jobs`` at most :data:`WRITES_AT_ONCE` at a time, in order."""
    results: list[T] = []
    batch: list[Awaitable[T]] = []
    for job in jobs:
        batch.append(job)
        if len(batch) >= WRITES_AT_ONCE:
            results += await _all(batch)
            batch = []
    if batch:
        results += await _all(batch)
    return results


async def _all(jobs: Sequence[Awaitable[T]]) -> list[T]:
    """Every job's result; the first failure is raised once all have ended (none left running)."""
    results: list[T] = []
    for result in await asyncio.gather(*jobs, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result
        results.append(result)
    return results
