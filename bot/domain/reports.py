"""Reports (报事): file, route to a grid, alert, accept, resolve, reject, transfer, escalate.

Every transition is one compare-and-set on the report that checks the state it
starts from and appends to the report's history (who, when, why), so a retried
or concurrent transition applies once and a report is never lost between
states. The reporter and followers are told of every change; the grid's workers
are alerted through the outbox (:mod:`bot.domain.alerts`), which retries.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.config import ReportsConfig
from bot.domain import timefmt
from bot.domain.alerts import AlertDesk
from bot.domain.errors import Invalid, NotFound, Refused
from bot.domain.grids import GridDirectory
from bot.domain.notify import Notifier
from bot.redact import mask
from storage.reports import (
    ACCEPTED,
    OPEN_STATES,
    REJECTED,
    REPORTED,
    RESOLVED,
    STATES,
    Photo,
    Report,
    ReportRepo,
    Transition,
    Unchanged,
    cells_around,
)
from storage.repos import AuditRepo, Sequences

log = logging.getLogger("bot.domain.reports")

MAX_TEXT = 500
MAX_NOTE = 200
MAX_PHOTOS = 4
NEARBY_LIMIT = 5
STATE_NAMES = {REPORTED: "待受理", ACCEPTED: "处理中", RESOLVED: "已办结", REJECTED: "已退回"}
_TO = {1: "网格长", 2: "社区管理员"}
REALERT_WINDOW = 600.0
DUPLICATE = re.compile(r"^(?:重复|与)\s*#?(\d{1,9})")

FetchPhoto = Callable[[int, Photo], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Draft:
    """What a resident has said so far: the chat flow's data."""

    category: str
    text: str
    photos: tuple[Photo, ...] = ()
    voice_media_id: str = ""
    lat: float | None = None
    lng: float | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Nearby:
    report: Report
    distance_m: float


class NotYours(Refused):
    pass


class ReportDesk:
    def __init__(
        self,
        reports: ReportRepo,
        sequences: Sequences,
        grids: GridDirectory,
        alerts: AlertDesk,
        notifier: Notifier,
        audit: AuditRepo,
        config: ReportsConfig,
        clock: Callable[[], float],
        tz: ZoneInfo,
        *,
        fetch_photo: FetchPhoto | None = None,
    ) -> None:
        self._reports = reports
        self._sequences = sequences
        self.grids = grids
        self.alerts = alerts
        self._notifier = notifier
        self._audit = audit
        self.config = config
        self._clock = clock
        self.tz = tz
        self._fetch_photo = fetch_photo

    # --- residents ----------------------------------------------------------------

    async def nearby(self, category: str, lat: float, lng: float) -> list[Nearby]:
        """Open reports of ``category`` within the configured radius, nearest first."""
        from bot.domain.geo import distance_m

        # Cells are at least ~190 m wide: this many rings of them cover the radius.
        reach = math.ceil(self.config.duplicate_radius_m / 190)
        found: list[Nearby] = []
        for state in OPEN_STATES:
            if reach <= 2:
                candidates = await self._reports.in_cells(
                    category, cells_around(lat, lng, reach), state
                )
            else:  # a radius of a kilometre or more: the whole category is cheaper
                candidates = await self._reports.by_category(category, state)
            for report in candidates:
                if report.lat is None or report.lng is None:
                    continue
                d = distance_m(lat, lng, report.lat, report.lng)
                if d <= self.config.duplicate_radius_m:
                    found.append(Nearby(report, d))
        found.sort(key=lambda n: (n.distance_m, n.report.number))
        return found[:NEARBY_LIMIT]

    async def file(self, openid: str, draft: Draft) -> Report:
        if draft.category not in self.config.categories:
            raise Invalid(f"没有“{draft.category}”这个类别")
        text = draft.text.strip()
        if not text and not draft.voice_media_id:
            raise Invalid("请描述一下问题")
        if len(text) > MAX_TEXT:
            raise Invalid(f"描述最多{MAX_TEXT}个字")
        if draft.lat is None and not draft.label.strip():
            raise Invalid("需要位置或地址")
        now = self._clock()
        grid = await self.grids.locate(draft.lat, draft.lng)
        number = await self._sequences.next("report")
        routed = f"网格“{grid.name}”" if grid else "社区默认队列"
        report = Report(
            number=number,
            reporter=openid,
            category=draft.category,
            text=text,
            created_at=now,
            grid=grid.id if grid else "",
            lat=draft.lat,
            lng=draft.lng,
            label=draft.label.strip()[:100],
            photos=draft.photos[:MAX_PHOTOS],
            voice_media_id=draft.voice_media_id,
            history=(Transition(now, openid, "filed", REPORTED, f"分派到{routed}"),),
        )
        await self._reports.insert(report)
        log.info(
            "report %s filed by %s, routed to %s",
            number,
            mask(openid),
            grid.id if grid else "default",
        )
        for photo in report.photos:
            await self._keep_photo(number, photo)
        await self._alert_grid(report, "filed", "新报事")
        return report

    async def follow(self, openid: str, number: int) -> Report:
        """The resident's problem is this open report: follow it instead of filing another."""
        now = self._clock()

        def add(current: Report) -> Report:
            if not current.is_open:
                raise Refused(f"报事 {number} 的状态是“{STATE_NAMES[current.state]}”，请重新报事")
            if openid == current.reporter or openid in current.followers:
                raise Unchanged
            return replace(
                current,
                followers=(*current.followers, openid),
                history=(*current.history, Transition(now, openid, "followed", current.state)),
            )

        report = await self._change(number, add)
        await self._reports.follow(openid, number, now)
        return report

    async def mine(self, openid: str) -> list[Report]:
        own = await self._reports.by_reporter(openid)
        followed = [
            r
            for n in await self._reports.followed_by(openid)
            if (r := await self._reports.get(n)) is not None
        ]
        merged = {r.number: r for r in [*own, *followed]}
        return sorted(merged.values(), key=lambda r: -r.number)

    async def get(self, number: int) -> Report:
        report = await self._reports.get(number)
        if report is None:
            raise NotFound(f"没有编号为 {number} 的报事")
        return report

    async def rate(self, openid: str, number: int, stars: int) -> Report:
        if not 1 <= stars <= 5:
            raise Invalid("请回复 1 到 5 之间的数字")
        now = self._clock()

        def apply(current: Report) -> Report:
            if current.reporter != openid:
                raise NotYours("只有报事人可以评价")
            if current.state != RESOLVED:
                raise Refused(f"报事 {number} 还没有办结，办结后才能评价")
            if current.rating is not None:
                raise Refused(f"您已经评价过报事 {number}（{current.rating}星）")
            return replace(
                current,
                rating=stars,
                history=(
                    *current.history,
                    Transition(now, openid, "rated", current.state, f"{stars}星"),
                ),
            )

        return await self._change(number, apply)

    async def reopen(self, openid: str, number: int, reason: str) -> Report:
        now = self._clock()
        window = self.config.reopen_days * 86400

        def apply(current: Report) -> Report:
            if current.reporter != openid:
                raise NotYours("只有报事人可以申请重新处理")
            if current.state != RESOLVED:
                raise Refused(f"报事 {number} 没有办结，不需要重新处理")
            if current.reopened:
                raise Refused(f"报事 {number} 已经重新处理过一次，如仍有问题请重新报事")
            if current.resolved_at is not None and now - current.resolved_at > window:
                raise Refused(f"办结超过{self.config.reopen_days}天，不能重新处理，请重新报事")
            return replace(
                current,
                state=REPORTED,
                reopened=True,
                rating=None,
                assignee="",
                escalated={},
                history=(
                    *current.history,
                    Transition(now, openid, "reopened", REPORTED, reason[:MAX_NOTE]),
                ),
            )

        report = await self._change(number, apply)
        await self._alert_grid(report, "reopened", "报事被重新打开")
        return report

    # --- grid workers ---------------------------------------------------------------

    async def scope(self, actor: str) -> frozenset[str] | None:
        """The grids (ids) whose reports ``actor`` may act on; None: every report (an admin).

        The default queue ("") is nobody's grid: only community admins act on it.
        """
        if actor in self.config.admin_openids:
            return None
        return frozenset(g.id for g in await self.grids.of_worker(actor))

    async def may_act(self, actor: str, report: Report) -> bool:
        return within(await self.scope(actor), report)

    async def delete_grid(self, grid_id: str, *, actor: str) -> None:
        """Remove a grid, refused while it has open reports (nobody would see them)."""
        still_open = 0
        for state in OPEN_STATES:
            still_open += len(await self._reports.by_grid(grid_id, state))
        await self.grids.delete(grid_id, actor=actor, open_reports=still_open)

    async def is_staff(self, openid: str) -> bool:
        return openid in self.config.admin_openids or await self.grids.works_in(openid)

    async def todo(self, actor: str) -> list[Report]:
        """The open reports this worker may act on, oldest first."""
        grids = await self.grids.of_worker(actor)
        found: list[Report] = []
        scopes = [g.id for g in grids]
        if actor in self.config.admin_openids:
            scopes.append("")
        for grid_id in scopes:
            for state in OPEN_STATES:
                found += await self._reports.by_grid(grid_id, state)
        return sorted({r.number: r for r in found}.values(), key=lambda r: r.created_at)

    async def accept(
        self, actor: str, number: int, *, staff: bool = False, audit_as: str = ""
    ) -> Report:
        now = self._clock()
        report = await self._checked(actor, number, staff)

        def apply(current: Report) -> Report:
            if current.state == ACCEPTED:
                if current.assignee == actor:
                    raise Unchanged
                raise Refused(f"报事 {number} 已由其他网格员接单")
            if current.state != REPORTED:
                raise Refused(f"报事 {number} 的状态是“{STATE_NAMES[current.state]}”，不能接单")
            return replace(
                current,
                state=ACCEPTED,
                assignee=actor,
                accepted_at=current.accepted_at or now,
                history=(*current.history, Transition(now, actor, "accepted", ACCEPTED)),
            )

        after, applied = await self._apply(report.number, apply)
        if applied:
            await self._audited(audit_as, "report.accepted", number, {"note": ""})
            await self._tell_residents(after, f"您的报事（编号 {number}）已有网格员接单处理。")
        return after

    async def resolve(
        self, actor: str, number: int, note: str, *, staff: bool = False, audit_as: str = ""
    ) -> Report:
        note = _note(note, "办结说明")
        now = self._clock()
        report = await self._checked(actor, number, staff)

        def apply(current: Report) -> Report:
            if current.state == RESOLVED:
                raise Unchanged
            if current.state not in OPEN_STATES:
                raise Refused(f"报事 {number} 的状态是“{STATE_NAMES[current.state]}”，不能再处理")
            return replace(
                current,
                state=RESOLVED,
                assignee=current.assignee or actor,
                accepted_at=current.accepted_at or now,
                resolved_at=now,
                closed_at=now,
                history=(*current.history, Transition(now, actor, "resolved", RESOLVED, note)),
            )

        after, applied = await self._apply(report.number, apply)
        if applied:
            await self._audited(audit_as, "report.resolved", number, {"note": note})
            await self._tell_residents(
                after,
                f"您的报事（编号 {number}）已办结：{note}\n"
                f"回复“我的报事”可以给处理结果打分（1–5星）；如果问题没有解决，"
                f"{self.config.reopen_days}天内可以申请重新处理一次。",
            )
        return after

    async def add_photo(
        self, actor: str, number: int, photo: Photo, *, staff: bool = False
    ) -> Report:
        report = await self._checked(actor, number, staff)
        now = self._clock()

        def apply(current: Report) -> Report:
            if len(current.photos) >= MAX_PHOTOS * 2:
                raise Refused("照片已经够多了")
            return replace(
                current,
                photos=(*current.photos, photo),
                history=(*current.history, Transition(now, actor, "photo", current.state)),
            )

        after = await self._change(report.number, apply)
        await self._keep_photo(number, photo)
        return after

    async def reject(
        self, actor: str, number: int, reason: str, *, staff: bool = False, audit_as: str = ""
    ) -> Report:
        reason = _note(reason, "退回原因")
        now = self._clock()
        report = await self._checked(actor, number, staff)
        duplicate_of: int | None = None
        if (m := DUPLICATE.match(reason)) is not None:
            duplicate_of = int(m.group(1))
            target = await self._reports.get(duplicate_of)
            if target is None or duplicate_of == number:
                raise Invalid(f"没有编号为 {duplicate_of} 的报事可以合并")
            if not target.is_open:
                raise Refused(
                    f"报事 {duplicate_of} 的状态是“{STATE_NAMES[target.state]}”，不能合并到它；"
                    "问题仍在的话请直接处理本报事"
                )

        def apply(current: Report) -> Report:
            if current.state == REJECTED:
                raise Unchanged
            if current.state not in OPEN_STATES:
                raise Refused(f"报事 {number} 的状态是“{STATE_NAMES[current.state]}”，不能再处理")
            return replace(
                current,
                state=REJECTED,
                duplicate_of=duplicate_of,
                closed_at=now,
                history=(*current.history, Transition(now, actor, "rejected", REJECTED, reason)),
            )

        after, applied = await self._apply(report.number, apply)
        if applied:
            await self._audited(audit_as, "report.rejected", number, {"note": reason})
            if duplicate_of is not None:
                for openid in (after.reporter, *after.followers):
                    with contextlib.suppress(Refused):
                        await self.follow(openid, duplicate_of)
                text = f"您的报事（编号 {number}）与报事 {duplicate_of} 是同一件事，已合并，之后会通知您报事 {duplicate_of} 的进展。"
            else:
                text = (
                    f"您的报事（编号 {number}）被退回：{reason}\n如有疑问，可以回复“留言”联系社区。"
                )
            await self._tell_residents(after, text)
        return after

    async def transfer(
        self, actor: str, number: int, grid_ref: str, *, staff: bool = False, audit_as: str = ""
    ) -> Report:
        target = await self.grids.find(grid_ref)
        if target is None:
            raise NotFound(f"没有叫“{grid_ref[:20]}”的网格")
        now = self._clock()
        report = await self._checked(actor, number, staff)

        def apply(current: Report) -> Report:
            if current.grid == target.id:
                raise Unchanged
            if current.state not in OPEN_STATES:
                raise Refused(f"报事 {number} 的状态是“{STATE_NAMES[current.state]}”，不能转派")
            return replace(
                current,
                grid=target.id,
                state=REPORTED,
                assignee="",
                escalated={},
                history=(
                    *current.history,
                    Transition(now, actor, "transferred", REPORTED, f"转派到网格“{target.name}”"),
                ),
            )

        after, applied = await self._apply(report.number, apply)
        if applied:
            detail = {"from": report.grid, "to": after.grid}
            await self._audited(audit_as, "report.transfer", number, detail)
            await self._alert_grid(after, f"transfer-{len(after.history)}", "转派来的报事")
            await self._tell_residents(
                after, f"您的报事（编号 {number}）已转给“{target.name}”处理。"
            )
        return after

    async def set_state(
        self, actor: str, number: int, state: str, note: str, *, worker: str = ""
    ) -> Report:
        """Staff change a report's state (admin API, staff pages), audited under ``actor``.

        With ``worker`` (a grid worker's openid) the change is made as that worker, under
        the same rule as their chat commands: only reports of their own grids.
        """
        if state not in STATES:
            raise Invalid(f"state 必须是 {' / '.join(STATES)} 之一")
        who, staff = (worker, False) if worker else (actor, True)
        if state == ACCEPTED:
            return await self.accept(who, number, staff=staff, audit_as=actor)
        if state == RESOLVED:
            return await self.resolve(who, number, note, staff=staff, audit_as=actor)
        if state == REJECTED:
            return await self.reject(who, number, note, staff=staff, audit_as=actor)
        if worker:
            raise Refused("重新打开报事需要管理员操作")
        before = await self.get(number)
        report = await self._staff_reopen(actor, number, note)
        # A retried request changes nothing and so is not audited again.
        if len(report.history) > len(before.history):
            await self._audited(actor, f"report.{state}", number, {"note": note})
        return report

    # --- the clock ----------------------------------------------------------------

    async def escalate_due(self) -> int:
        """Escalate overdue reports one level (grid leader, then admins); one alert per level."""
        now = self._clock()
        done = 0
        for state in OPEN_STATES:
            for report in await self._reports.by_state(state):
                if state == REPORTED and now - report.created_at < REALERT_WINDOW:
                    # A crash between filing and queueing the alert must not leave the
                    # grid unaware: queueing is idempotent, so this costs nothing twice.
                    await self._alert_grid(report, "filed", "新报事")
                for clock, level in self._overdue(report, now):
                    if await self._escalate(report.number, clock, level, now):
                        done += 1
        return done

    def _overdue(self, report: Report, now: float) -> list[tuple[str, int]]:
        due: list[tuple[str, int]] = []
        since = _last(report, ("filed", "transferred", "reopened"))
        accept_after = self.config.accept_within_minutes * 60
        if report.state == REPORTED:
            level = (
                2 if now - since >= 2 * accept_after else 1 if now - since >= accept_after else 0
            )
            if level > report.escalated.get("accept", 0):
                due.append(("accept", level))
        deadline = self._working_deadline(since, self.config.resolve_within_working_days)
        if now >= deadline:
            level = 2 if now >= self._working_deadline(deadline, 1) else 1
            if level > report.escalated.get("resolve", 0):
                due.append(("resolve", level))
        return due

    async def _escalate(self, number: int, clock: str, level: int, now: float) -> bool:
        what = "超时未接单" if clock == "accept" else "超时未办结"
        reached: list[int] = []

        def claim(current: Report) -> Report:
            reached.clear()
            done = current.escalated.get(clock, 0)
            if current.state not in OPEN_STATES or done >= level:
                raise Unchanged
            # A scheduler that was down may find level 2 due at once: the leader still hears.
            reached.extend(range(done + 1, level + 1))
            notes = tuple(
                Transition(now, "system", "escalated", current.state, f"{what}，已提醒{_TO[n]}")
                for n in reached
            )
            return replace(
                current,
                escalated={**current.escalated, clock: level},
                history=(*current.history, *notes),
            )

        try:
            report = await self._reports.change(number, claim)
        except Unchanged:
            return False
        grid = await self.grids.get(report.grid) if report.grid else None
        text = f"【报事升级】编号 {number}（{report.category}）{what}。\n{self._summary(report)}"
        for n in reached:
            recipients: Sequence[str] = (
                (grid.leader,)
                if n == 1 and grid is not None and grid.leader
                else self.config.admin_openids
            )
            if not recipients:
                log.error(
                    "report %s is overdue (%s) but no leader or admin is configured", number, clock
                )
            await self.alerts.queue(number, f"escalate-{clock}-{n}", text, openids=recipients)
            log.warning("report %s escalated: %s level %s", number, clock, n)
        return True

    def _working_deadline(self, start: float, days: int) -> float:
        """``days`` working days (Monday to Friday) after ``start``, in the community's time."""
        t = datetime.fromtimestamp(start, self.tz)
        left = days
        while left > 0:
            t += timedelta(days=1)
            if t.weekday() < 5:
                left -= 1
        return t.timestamp()

    # --- helpers ------------------------------------------------------------------

    def _summary(self, report: Report) -> str:
        place = report.label or (
            f"{report.lat:.5f},{report.lng:.5f}" if report.lat is not None else "（未提供）"
        )
        photos = f"\n照片：{len(report.photos)}张" if report.photos else ""
        return (
            f"类别：{report.category}\n内容：{report.text or '（语音）'}\n地点：{place}\n"
            f"时间：{timefmt.when(report.created_at, self.tz)}{photos}"
        )

    async def _alert_grid(self, report: Report, event: str, title: str) -> None:
        grid = await self.grids.get(report.grid) if report.grid else None
        text = (
            f"【{title}】编号 {report.number}\n{self._summary(report)}\n"
            f"回复“接单 {report.number}”接单，“待办”查看全部。"
        )
        fields = {
            "keyword1": str(report.number),
            "keyword2": report.category,
            "keyword3": report.label or "见位置",
        }
        openids: Sequence[str] = (
            grid.workers if grid and grid.workers else self.config.admin_openids
        )
        if not openids and not (grid and grid.wecom_url):
            log.error(
                "report %s has nobody to alert: configure grid workers or admin_openids",
                report.number,
            )
        await self.alerts.queue(
            report.number,
            event,
            text,
            openids=openids,
            robot_url=grid.wecom_url if grid else "",
            fields=fields,
        )

    async def _audited(
        self, audit_as: str, action: str, number: int, detail: dict[str, str]
    ) -> None:
        """Record a transition in the audit log under ``audit_as`` (the staff pages' name for
        the person, e.g. ``web:lijun``); a worker acting in the chat passes none."""
        if audit_as:
            await self._audit.add(audit_as, action, f"report/{number}", detail, self._clock())

    async def _tell_residents(self, report: Report, text: str) -> None:
        for openid in (report.reporter, *report.followers):
            await self._notifier.tell(openid, text)

    async def _checked(self, actor: str, number: int, staff: bool) -> Report:
        report = await self.get(number)
        if not staff and not await self.may_act(actor, report):
            raise NotYours(f"报事 {number} 不属于您负责的网格，不能处理")
        return report

    async def _change(self, number: int, change: Callable[[Report], Report]) -> Report:
        return (await self._apply(number, change))[0]

    async def _apply(self, number: int, change: Callable[[Report], Report]) -> tuple[Report, bool]:
        """The report after ``change``, and whether this call changed it: ``change`` raises
        :class:`Unchanged` when the transition had happened already (a retry, a double tap),
        and then nobody is told twice."""
        try:
            return await self._reports.change(number, change), True
        except KeyError:
            raise NotFound(f"没有编号为 {number} 的报事") from None
        except Unchanged:
            return await self.get(number), False

    async def _staff_reopen(self, actor: str, number: int, note: str) -> Report:
        note = _note(note, "重新打开的原因")
        now = self._clock()

        def apply(current: Report) -> Report:
            if current.state == REPORTED:
                raise Unchanged
            return replace(
                current,
                state=REPORTED,
                assignee="",
                escalated={},
                rating=None,
                duplicate_of=None,
                resolved_at=None,
                closed_at=None,
                history=(
                    *current.history,
                    Transition(now, actor, "reopened", REPORTED, note[:MAX_NOTE]),
                ),
            )

        report, applied = await self._apply(number, apply)
        if applied:
            await self._alert_grid(report, f"reopen-{len(report.history)}", "报事被重新打开")
            await self._tell_residents(report, f"您的报事（编号 {number}）已重新打开处理：{note}")
        return report

    async def _keep_photo(self, number: int, photo: Photo) -> None:
        if self._fetch_photo is not None and not photo.path:
            await self._fetch_photo(number, photo)


def within(grids: frozenset[str] | None, report: Report) -> bool:
    """Whether ``report`` is in ``grids``, a :meth:`ReportDesk.scope` (None: every report)."""
    return grids is None or (bool(report.grid) and report.grid in grids)


def _note(text: str, what: str) -> str:
    text = (text or "").strip()
    if not text:
        raise Invalid(f"请写上{what}")
    if len(text) > MAX_NOTE:
        raise Invalid(f"{what}最多{MAX_NOTE}个字")
    return text


def _last(report: Report, actions: tuple[str, ...]) -> float:
    for t in reversed(report.history):
        if t.action in actions:
            return t.at
    return report.created_at
