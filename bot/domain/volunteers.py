"""Volunteer activities: create, sign up, waitlist and promote, check in, remind, cancel.

Every seat decision is one compare-and-set on the activity's record (see
:mod:`storage.activities`), so capacity holds under any concurrency. Points for a
check-in are posted with the idempotency key ``checkin:<activity>:<openid>``, so a
second scan, a WeChat retry, or a crash between the check-in and the posting
never posts twice and never loses the points (the next scan posts them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain import timefmt
from bot.domain.errors import Invalid, NotFound, Refused
from bot.domain.notify import Notifier
from bot.domain.points import PointsDesk
from bot.domain.schedules import Pusher
from bot.redact import mask
from bot.wechat.client import QR_MAX_EXPIRE_SECONDS, WeChatClient
from storage.activities import (
    CANCELLED,
    DONE,
    OPEN,
    Activity,
    ActivityRepo,
    QRCode,
    SignUp,
    SignUpRepo,
)
from storage.ledger import Entry
from storage.repos import AuditRepo, Sequences

log = logging.getLogger("bot.domain.volunteers")

SCENE_PREFIX = "act:"
DEFAULT_REMIND_BEFORE = 24 * 3600.0
CHECKIN_OPENS_BEFORE = 3600.0  # volunteers arrive early
CHECKIN_CLOSES_AFTER = 3600.0  # and some scan on the way out
MAX_TITLE = 40
MAX_PLACE = 60
MAX_DESCRIPTION = 500
MAX_CAPACITY = 2000
MAX_POINTS = 1000
ACTIVE = ("confirmed", "waitlisted")

PROMOTED = "好消息：您候补的志愿活动《{title}》有空位了，已为您报上名。\n时间：{time}\n地点：{place}\n如不能参加，请回复“我的报名”取消。"
CANCELLED_NOTICE = "抱歉，志愿活动《{title}》（{time}）已取消。{reason}"
REMINDER = (
    "提醒：您报名的志愿活动《{title}》将于{time}开始。\n地点：{place}\n到场后请扫描活动签到码签到。"
)
NOT_PROMOTED = "很抱歉，志愿活动《{title}》（{time}）名额已满，您的候补未能递补。欢迎报名其他活动。"


class Outcome(Enum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    ALREADY_CONFIRMED = "already_confirmed"
    ALREADY_WAITLISTED = "already_waitlisted"


@dataclass(frozen=True, slots=True)
class SignUpResult:
    outcome: Outcome
    activity: Activity
    position: int = 0  # place on the waitlist, from 1


@dataclass(frozen=True, slots=True)
class CheckInResult:
    activity: Activity
    first: bool  # False: they had checked in already
    entry: Entry | None  # the points posted for this check-in (None if the activity has none)


class Clash(Refused):
    def __init__(self, other: SignUp, tz: ZoneInfo) -> None:
        super().__init__(
            f"时间冲突：您已报名《{other.title}》（{timefmt.span(other.starts_at, other.ends_at, tz)}），"
            "同一时间不能再报名其他活动。"
        )
        self.other = other


class _Unchanged(Exception):
    """Raised inside a roster change to write nothing."""


# What staff call each field of an activity (the form's labels), for error messages.
_FIELDS = {
    "title": "活动名称",
    "place": "地点",
    "starts_at": "开始时间",
    "ends_at": "结束时间",
    "capacity": "名额",
    "points": "积分",
}


@dataclass(frozen=True, slots=True)
class ActivityDraft:
    title: str
    place: str
    starts_at: float
    ends_at: float
    capacity: int
    points: int
    remind_before: float
    description: str

    def fields(self) -> dict[str, Any]:
        """The activity fields the draft sets, for a new activity or an edited one."""
        return asdict(self)


class VolunteerDesk:
    def __init__(
        self,
        activities: ActivityRepo,
        signups: SignUpRepo,
        sequences: Sequences,
        points: PointsDesk,
        audit: AuditRepo,
        wechat: WeChatClient,
        notifier: Notifier,
        clock: Callable[[], float],
        tz: ZoneInfo,
        *,
        pusher: Pusher,
        reminder_template_id: str = "",
        waitlist_max: int = 200,
    ) -> None:
        self._activities = activities
        self._signups = signups
        self._sequences = sequences
        self._points = points
        self._audit = audit
        self._wechat = wechat
        self._notifier = notifier
        self._clock = clock
        self.tz = tz
        self._waitlist_max = waitlist_max
        self._pusher = pusher
        self._reminder_template_id = reminder_template_id

    # --- reading ------------------------------------------------------------------

    async def get(self, number: int) -> Activity:
        activity = await self._activities.get(number)
        if activity is None:
            raise NotFound(f"没有编号为 {number} 的活动")
        return activity

    async def upcoming(self) -> list[Activity]:
        """Open activities that have not started, soonest first (what residents pick from)."""
        now = self._clock()
        found = [a for a in await self._activities.by_status(OPEN) if a.starts_at > now]
        return sorted(found, key=lambda a: (a.starts_at, a.number))

    async def all(self, *, include_past: bool = True) -> list[Activity]:
        now = self._clock()
        # Every page of the collection: a look-up by status stops at its limit, which a
        # community passes after a few years of finished activities.
        found: list[Activity] = []
        while page := await self._activities.page(
            after=found[-1].number if found else None, limit=500
        ):
            found += page
        if not include_past:
            found = [a for a in found if a.ends_at > now]
        return sorted(found, key=lambda a: a.number)

    async def mine(self, openid: str) -> list[tuple[SignUp, Activity]]:
        """My sign-ups that have not ended, soonest first, checked against the rosters."""
        now = self._clock()
        result: list[tuple[SignUp, Activity]] = []
        for signup in await self._signups.of(openid):
            if signup.status not in ACTIVE or signup.ends_at <= now:
                continue
            activity = await self._activities.get(signup.activity)
            if activity is None or activity.cancelled:
                continue
            status = _status_of(activity, openid)
            if status is None:
                continue
            result.append((replace(signup, status=status), activity))
        return sorted(result, key=lambda pair: pair[1].starts_at)

    # --- residents ----------------------------------------------------------------

    async def sign_up(self, openid: str, number: int) -> SignUpResult:
        activity = await self.get(number)
        self._check_open(activity)
        if openid not in activity.members and openid not in activity.waitlist:
            await self._check_clash(openid, activity)
        now = self._clock()
        outcome: list[Outcome] = []

        def join(current: Activity) -> Activity:
            self._check_open(current)
            outcome.clear()
            if openid in current.members:
                outcome.append(Outcome.ALREADY_CONFIRMED)
                return current
            if openid in current.waitlist:
                outcome.append(Outcome.ALREADY_WAITLISTED)
                return current
            if current.places_left > 0:
                outcome.append(Outcome.CONFIRMED)
                return replace(current, members=(*current.members, openid))
            if len(current.waitlist) >= self._waitlist_max:
                raise Refused(f"《{current.title}》名额和候补都已满，请报名其他活动。")
            outcome.append(Outcome.WAITLISTED)
            return replace(current, waitlist=(*current.waitlist, openid))

        _, after = await self._change(number, join)
        status = "confirmed" if openid in after.members else "waitlisted"
        # Written even when already on the roster: it repairs a view a crash left behind.
        await self._record(openid, after, status, now)
        position = after.waitlist.index(openid) + 1 if openid in after.waitlist else 0
        log.info("%s signed up for activity %s: %s", mask(openid), number, outcome[-1].value)
        return SignUpResult(outcome[-1], after, position)

    async def cancel_signup(self, openid: str, number: int) -> Activity:
        activity = await self.get(number)
        now = self._clock()
        promoted: list[str] = []

        def leave(current: Activity) -> Activity:
            promoted.clear()
            if current.starts_at <= now:
                raise Refused(f"《{current.title}》已经开始，不能取消报名。")
            if openid in current.waitlist:
                return replace(current, waitlist=tuple(o for o in current.waitlist if o != openid))
            if openid not in current.members:
                raise NotFound(f"您没有报名《{current.title}》。")
            members = tuple(o for o in current.members if o != openid)
            members, waitlist = _fill(members, current.waitlist, current.capacity, promoted)
            return replace(current, members=members, waitlist=waitlist)

        _, after = await self._change(activity.number, leave)
        await self._record(openid, after, "cancelled", now)
        log.info("%s cancelled activity %s", mask(openid), number)
        await self._promoted(after, promoted, now)
        return after

    async def check_in(self, openid: str, number: int) -> CheckInResult:
        activity = await self._activities.get(number)
        if activity is None:
            raise NotFound("这个签到码对应的活动不存在，请联系活动负责人。")
        now = self._clock()
        if activity.cancelled:
            raise Refused(f"《{activity.title}》已取消，无需签到。")
        if activity.status == DONE:
            raise Refused(f"《{activity.title}》已经结束，不能再签到。")
        if now < activity.starts_at - CHECKIN_OPENS_BEFORE:
            opens = timefmt.when(activity.starts_at - CHECKIN_OPENS_BEFORE, self.tz)
            raise Refused(f"《{activity.title}》还没到签到时间，{opens}起可以签到。")
        if now > activity.ends_at + CHECKIN_CLOSES_AFTER:
            raise Refused(f"《{activity.title}》已经结束，不能再签到。")
        first: list[bool] = []

        def arrive(current: Activity) -> Activity:
            first.clear()
            if openid in current.checked_in:
                first.append(False)
                raise _Unchanged
            first.append(True)
            checked_in = {**current.checked_in, openid: now}
            if openid in current.members:
                return replace(current, checked_in=checked_in)
            if current.places_left == 0:
                if openid in current.waitlist:
                    raise Refused(f"《{current.title}》名额已满，您还在候补名单上，暂时无法签到。")
                raise Refused(f"《{current.title}》名额已满，您没有报名，无法签到。")
            return replace(
                current,
                members=(*current.members, openid),
                waitlist=tuple(o for o in current.waitlist if o != openid),
                checked_in=checked_in,
            )

        _, after = await self._change(number, arrive)
        if first[-1]:
            await self._record(openid, after, "confirmed", now)
        entry = None
        if after.points > 0:
            # Posted on every scan: the idempotency key makes it once, and a crash
            # between the check-in and the posting is healed by the next scan.
            entry = await self._points.credit_checkin(
                openid, after.number, after.title, after.points
            )
        log.info("%s checked in to activity %s (first: %s)", mask(openid), number, first[-1])
        return CheckInResult(after, first[-1], entry)

    # --- staff --------------------------------------------------------------------

    def draft(self, body: Mapping[str, Any], *, base: Activity | None = None) -> ActivityDraft:
        """Validate an activity as staff send it (a whole one, or changes to ``base``).

        Messages name the field as staff see it on the page, with the API's key after it.
        """

        def text(name: str, limit: int, default: str | None) -> str:
            value = body.get(name, default)
            if not isinstance(value, str) or not value.strip():
                raise Invalid(f"需要填写{_FIELDS[name]}（{name}，文字）")
            if len(value.strip()) > limit:
                raise Invalid(f"{_FIELDS[name]}（{name}）最多{limit}个字")
            return value.strip()

        def number(name: str, low: int, high: int, default: int | None) -> int:
            value = body.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise Invalid(f"需要填写{_FIELDS[name]}（{name}，整数）")
            if not low <= value <= high:
                raise Invalid(f"{_FIELDS[name]}（{name}）必须在 {low} 到 {high} 之间")
            return value

        def time(name: str, default: float | None) -> float:
            if name not in body:
                if default is None:
                    raise Invalid(f"需要填写{_FIELDS[name]}（{name}，时间，如 2026-12-05T19:00）")
                return default
            return timefmt.parse(body[name], self.tz, name)

        b = base
        description = body.get("description", b.description if b else "")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise Invalid(f"说明（description）必须是文字，最多{MAX_DESCRIPTION}个字")
        hours = body.get("remind_before_hours")
        if hours is not None and (
            isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 720
        ):
            raise Invalid("提前提醒小时数（remind_before_hours）必须在 0 到 720 之间")
        draft = ActivityDraft(
            title=text("title", MAX_TITLE, b.title if b else None),
            place=text("place", MAX_PLACE, b.place if b else None),
            starts_at=time("starts_at", b.starts_at if b else None),
            ends_at=time("ends_at", b.ends_at if b else None),
            capacity=number("capacity", 1, MAX_CAPACITY, b.capacity if b else None),
            points=number("points", 0, MAX_POINTS, b.points if b else 0),
            remind_before=float(hours) * 3600
            if hours is not None
            else (b.remind_before if b else DEFAULT_REMIND_BEFORE),
            description=description.strip(),
        )
        if draft.ends_at <= draft.starts_at:
            raise Invalid("结束时间必须晚于开始时间")
        return draft

    async def create(self, body: Mapping[str, Any], *, actor: str) -> Activity:
        draft = self.draft(body)
        now = self._clock()
        if draft.starts_at <= now:
            raise Invalid("开始时间必须在将来")
        number = await self._sequences.next("activity")
        qr = await self._qrcode(number, draft.ends_at, now)
        activity = Activity(
            number=number,
            **draft.fields(),
            created_at=now,
            created_by=actor,
            qr=qr,
        )
        await self._activities.insert(activity)
        await self._audit.add(
            actor, "activity.create", f"activity/{number}", _summary(activity), now
        )
        log.info("%s created activity %s", actor, number)
        return activity

    async def edit(self, number: int, body: Mapping[str, Any], *, actor: str) -> Activity:
        before = await self.get(number)
        draft = self.draft(body, base=before)
        now = self._clock()
        if draft.starts_at != before.starts_at and draft.starts_at <= now:
            raise Invalid("开始时间必须在将来")
        promoted: list[str] = []

        def apply(current: Activity) -> Activity:
            promoted.clear()
            if current.cancelled:
                raise Refused("活动已取消，不能修改")
            if current.status == DONE or current.starts_at <= now:
                raise Refused("活动已经开始，不能修改")
            if draft.points != current.points and current.checked_in:
                # The ledger already holds what was credited; a change now would make
                # the same activity worth two amounts. Adjust points one by one instead.
                raise Refused("已有人签到，积分不能再修改；如需补发请用积分调整")
            if draft.capacity < len(current.members):
                raise Refused(
                    f"已有{len(current.members)}人报名，名额不能少于{len(current.members)}"
                )
            members, waitlist = _fill(current.members, current.waitlist, draft.capacity, promoted)
            return replace(
                current,
                **draft.fields(),
                members=members,
                waitlist=waitlist,
                # A new time deserves a new reminder.
                reminded_at=current.reminded_at if draft.starts_at == current.starts_at else None,
            )

        old, after = await self._change(number, apply)
        changes = {k: v for k, v in _summary(after).items() if _summary(old).get(k) != v}
        await self._audit.add(actor, "activity.edit", f"activity/{number}", changes, now)
        if draft.starts_at != old.starts_at or draft.ends_at != old.ends_at:
            for openid in (*after.members, *after.waitlist):
                await self._record(openid, after, _status_of(after, openid) or "cancelled", now)
        await self._promoted(after, promoted, now)
        return after

    async def cancel(self, number: int, reason: str, *, actor: str) -> Activity:
        if len(reason) > 200:
            raise Invalid("取消原因最多200个字")
        now = self._clock()

        def apply(current: Activity) -> Activity:
            if current.cancelled:
                raise Refused("活动已经取消过了")
            if current.ends_at <= now:
                raise Refused("活动已经结束，不能取消")
            return replace(current, status=CANCELLED, cancel_reason=reason.strip())

        _, after = await self._change(number, apply)
        await self._audit.add(
            actor, "activity.cancel", f"activity/{number}", {"reason": reason}, now
        )
        text = CANCELLED_NOTICE.format(
            title=after.title,
            time=timefmt.span(after.starts_at, after.ends_at, self.tz),
            reason=f"原因：{after.cancel_reason}" if after.cancel_reason else "",
        ).strip()
        told = 0
        for openid in (*after.members, *after.waitlist):
            await self._record(openid, after, "cancelled", now)
            told += await self._notifier.tell(openid, text)
        log.info(
            "%s cancelled activity %s; told %s of %s",
            actor,
            number,
            told,
            len(after.members) + len(after.waitlist),
        )
        return after

    def attendance(self, activity: Activity) -> list[dict[str, Any]]:
        """One row per person on the roster: the export staff print or file."""
        rows: list[dict[str, Any]] = []
        for openid in activity.members:
            at = activity.checked_in.get(openid)
            rows.append(
                {
                    "openid": openid,
                    "status": "confirmed",
                    "checked_in": at is not None,
                    "checked_in_at": timefmt.iso(at, self.tz) if at is not None else "",
                    "points": activity.points if at is not None else 0,
                }
            )
        for position, openid in enumerate(activity.waitlist, 1):
            rows.append(
                {
                    "openid": openid,
                    "status": f"waitlisted #{position}",
                    "checked_in": False,
                    "checked_in_at": "",
                    "points": 0,
                }
            )
        return rows

    # --- the clock ----------------------------------------------------------------

    async def send_due_reminders(self) -> int:
        """Remind members of activities starting within their lead time; tell the waitlist.

        Each activity is claimed once (``reminded_at``) before anyone is told, so
        two scheduler runs or processes never remind twice. Returns how many
        activities were reminded.
        """
        now = self._clock()
        done = 0
        for activity in await self._activities.by_status(OPEN):
            due = activity.starts_at - activity.remind_before <= now < activity.starts_at
            if not due or activity.reminded_at is not None:
                continue

            def claim(current: Activity) -> Activity:
                if current.reminded_at is not None or current.cancelled:
                    raise _Unchanged
                return replace(current, reminded_at=now)

            try:
                _, after = await self._activities.change(activity.number, claim)
            except _Unchanged:
                continue
            time = timefmt.span(after.starts_at, after.ends_at, self.tz)
            fields = {"keyword1": after.title, "keyword2": time, "keyword3": after.place}
            # Through the push engine: one delivery record per volunteer, sent once even
            # across a crash or two processes, with WeChat's answer kept for staff.
            for campaign, text, people in (
                (
                    "activity-reminder",
                    REMINDER.format(title=after.title, time=time, place=after.place),
                    after.members,
                ),
                (
                    "activity-waitlist",
                    NOT_PROMOTED.format(title=after.title, time=time),
                    after.waitlist,
                ),
            ):
                if people:
                    await self._pusher.start(
                        campaign,
                        str(after.number),
                        channel="template" if self._reminder_template_id else "custom",
                        text=text,
                        recipients=list(people),
                        template_id=self._reminder_template_id,
                        template_data={"first": text.split("\n", 1)[0], **fields, "remark": text},
                        by="scheduler",
                    )
            log.info(
                "reminded activity %s: %s members, %s on the waitlist",
                after.number,
                len(after.members),
                len(after.waitlist),
            )
            done += 1
        return done

    async def close_finished(self) -> int:
        """Mark activities whose check-in has closed as done; returns how many."""
        now = self._clock()
        closed = 0
        for activity in await self._activities.by_status(OPEN):
            if activity.ends_at + CHECKIN_CLOSES_AFTER >= now:
                continue

            def close(current: Activity) -> Activity:
                if current.status != OPEN:
                    raise _Unchanged
                return replace(current, status=DONE)

            try:
                await self._activities.change(activity.number, close)
            except _Unchanged:
                continue
            closed += 1
        return closed

    # --- helpers ------------------------------------------------------------------

    def _check_open(self, activity: Activity) -> None:
        if activity.cancelled:
            raise Refused(f"《{activity.title}》已取消，不能报名。")
        if activity.starts_at <= self._clock():
            raise Refused(f"《{activity.title}》已经开始，不能报名。")

    async def _check_clash(self, openid: str, activity: Activity) -> None:
        for signup in await self._signups.of(openid):
            if signup.activity == activity.number or signup.status not in ACTIVE:
                continue
            if signup.starts_at < activity.ends_at and activity.starts_at < signup.ends_at:
                other = await self._activities.get(signup.activity)
                if other is not None and _status_of(other, openid) is not None:
                    raise Clash(signup, self.tz)

    async def _change(
        self, number: int, change: Callable[[Activity], Activity]
    ) -> tuple[Activity, Activity]:
        try:
            return await self._activities.change(number, change)
        except KeyError:
            raise NotFound(f"没有编号为 {number} 的活动") from None
        except _Unchanged:
            current = await self.get(number)
            return current, current

    async def _record(self, openid: str, activity: Activity, status: str, now: float) -> None:
        if activity.cancelled:
            status = "cancelled"
        await self._signups.record(
            SignUp(
                openid,
                activity.number,
                status,
                activity.title,
                activity.starts_at,
                activity.ends_at,
                now,
            )
        )

    async def _promoted(self, activity: Activity, promoted: list[str], now: float) -> None:
        for openid in promoted:
            await self._record(openid, activity, "confirmed", now)
            log.info("%s promoted from the waitlist of activity %s", mask(openid), activity.number)
            await self._notifier.tell(
                openid,
                PROMOTED.format(
                    title=activity.title,
                    time=timefmt.span(activity.starts_at, activity.ends_at, self.tz),
                    place=activity.place,
                ),
            )

    async def _qrcode(self, number: int, ends_at: float, now: float) -> QRCode:
        scene = f"{SCENE_PREFIX}{number}"
        # A temporary code lasts at most 30 days; one needed longer is a permanent code
        # (an account may hold 100,000 of those, so they are used only when needed).
        needed = int(ends_at + CHECKIN_CLOSES_AFTER - now) + 1
        permanent = needed > QR_MAX_EXPIRE_SECONDS
        code = await self._wechat.create_qrcode(
            scene, permanent=permanent, expire_seconds=min(needed, QR_MAX_EXPIRE_SECONDS)
        )
        expires = None if code.expire_seconds is None else now + code.expire_seconds
        return QRCode(code.ticket, code.image_url, scene, expires)


def scene_activity(scene: str | None) -> int | None:
    """The activity number of a check-in QR code's scene, or None for another code."""
    if not scene or not scene.startswith(SCENE_PREFIX):
        return None
    raw = scene[len(SCENE_PREFIX) :]
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


def _fill(
    members: tuple[str, ...], waitlist: tuple[str, ...], capacity: int, promoted: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Promote from the head of the waitlist while places are free; names go to ``promoted``."""
    free = max(capacity - len(members), 0)
    promoted.extend(waitlist[:free])
    return (*members, *waitlist[:free]), waitlist[free:]


def _status_of(activity: Activity, openid: str) -> str | None:
    if openid in activity.members:
        return "confirmed"
    if openid in activity.waitlist:
        return "waitlisted"
    return None


def _summary(activity: Activity) -> dict[str, Any]:
    return {
        "title": activity.title,
        "place": activity.place,
        "starts_at": activity.starts_at,
        "ends_at": activity.ends_at,
        "capacity": activity.capacity,
        "points": activity.points,
        "remind_before": activity.remind_before,
        "description": activity.description,
    }
