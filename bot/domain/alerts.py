"""The alert outbox: grid workers' alerts are recorded, sent, retried with backoff, never dropped.

An alert is written before it is sent, keyed by what caused it and who gets
it, so a retried transition queues it once. Sending is tried at once; a failure
that may pass (WeChat busy, rate limits, the network) is retried by the
scheduler after 1, 2, 4... minutes (at most an hour apart, 8 attempts), and one
that cannot pass (not a follower, a bad robot key) fails at once. Every failure
is logged with its error code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from bot.errors import BotError, WeChatAPIError
from bot.redact import mask
from bot.wechat.client import WeChatClient
from storage.reports import FAILED, PENDING, SENT, Alert, AlertRepo, Unchanged

log = logging.getLogger("bot.domain.alerts")

MAX_ATTEMPTS = 8
SENDING_LEASE = 120.0
FIRST_RETRY = 60.0
LONGEST_WAIT = 3600.0
# Errors no retry can cure: not a follower, a bad openid, an invalid robot key.
PERMANENT = frozenset({40003, 43004, 93000})

RobotSend = Callable[[str, str], Awaitable[None]]
Spawn = Callable[[Awaitable[object], str], None]


class AlertDesk:
    def __init__(
        self,
        alerts: AlertRepo,
        wechat: WeChatClient,
        robot: RobotSend,
        clock: Callable[[], float],
        *,
        template_id: str = "",
        spawn: Spawn | None = None,
    ) -> None:
        self._alerts = alerts
        self._wechat = wechat
        self._robot = robot
        self._clock = clock
        self._template_id = template_id
        self._spawn = spawn

    async def queue(
        self,
        report: int,
        event: str,
        text: str,
        *,
        openids: Sequence[str] = (),
        robot_url: str = "",
        fields: Mapping[str, str] | None = None,
    ) -> list[Alert]:
        """Record one alert per recipient and start sending them; returns those newly queued."""
        now = self._clock()
        queued: list[Alert] = []
        targets = [("wechat", o) for o in dict.fromkeys(openids) if o]
        if robot_url:
            targets.append(("wecom", robot_url))
        for channel, target in targets:
            alert = Alert(
                key=f"{report:010d}:{event}:{channel}:{target}"[:250],
                report=report,
                channel=channel,
                target=target,
                text=text,
                fields=dict(fields or {}),
                state=PENDING,
                attempts=0,
                next_at=now,
                created_at=now,
            )
            if await self._alerts.add(alert):
                queued.append(alert)
        if queued:
            if self._spawn is not None:
                self._spawn(self._send_all(queued), f"alerts-{report}-{event}")
            else:
                await self._send_all(queued)
        return queued

    async def deliver_due(self) -> int:
        """Send every pending alert whose time has come; returns how many were sent."""
        now = self._clock()
        due = [a for a in await self._alerts.by_state(PENDING) if a.next_at <= now]
        return await self._send_all(due)

    async def _send_all(self, alerts: Sequence[Alert]) -> int:
        sent = 0
        for alert in alerts:
            sent += await self._send(alert)
        return sent

    async def _send(self, alert: Alert) -> bool:
        claimed_at = self._clock()

        def claim(current: Alert) -> Alert:
            if current.state != PENDING or current.next_at > claimed_at:
                raise Unchanged
            # Held for a while: the scheduler's retry pass must not send it a second
            # time while this send is in flight (after a crash it is retried).
            return replace(current, next_at=claimed_at + SENDING_LEASE)

        try:
            alert = await self._alerts.change(alert.key, claim)
        except Unchanged:
            return False
        error: BotError | ValueError | None = None
        try:
            if alert.channel == "wecom":
                await self._robot(alert.target, alert.text)
            elif self._template_id:
                data = {"first": alert.text.split("\n", 1)[0], **alert.fields, "remark": alert.text}
                await self._wechat.send_template(alert.target, self._template_id, data)
            else:
                await self._wechat.send_text(alert.target, alert.text)
        except (BotError, ValueError) as exc:  # ValueError: a malformed robot URL
            error = exc
        now = self._clock()

        def record(current: Alert) -> Alert:
            if current.state != PENDING:
                return current
            attempts = current.attempts + 1
            if error is None:
                return replace(current, state=SENT, attempts=attempts, sent_at=now, last_error="")
            code = error.errcode if isinstance(error, WeChatAPIError) else -2
            final = code in PERMANENT or isinstance(error, ValueError) or attempts >= MAX_ATTEMPTS
            wait = min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_WAIT)
            return replace(
                current,
                state=FAILED if final else PENDING,
                attempts=attempts,
                next_at=now + wait,
                last_error=f"{code}: {error}"[:200],
            )

        saved = await self._alerts.change(alert.key, record)
        who = "a WeCom robot" if alert.channel == "wecom" else mask(alert.target)
        if saved.state == SENT:
            log.info("alert for report %s sent to %s", alert.report, who)
            return True
        if saved.state == FAILED:
            log.error(
                "alert for report %s to %s FAILED for good after %s attempts: %s",
                alert.report,
                who,
                saved.attempts,
                saved.last_error,
            )
        else:
            log.warning(
                "alert for report %s to %s not delivered (attempt %s, retry in %.0f s): %s",
                alert.report,
                who,
                saved.attempts,
                saved.next_at - now,
                saved.last_error,
            )
        return False
