"""The 户主坝坝会: the next assembly, households' answers, agenda suggestions and votes.

- An answer (参加 / 不参加 / 待定) is the household's: the representative's answer
  counts; another member's is kept as a suggestion and the representative is told.
  The representative may change the answer until the assembly starts.
- A vote takes one ballot per household, cast by the representative and final: a
  second ballot is refused (the ballot is inserted "only if absent", so this holds
  across processes), as is a ballot after the closing time. At the close the ballots
  are counted once into the vote's record; the results are posted (``投票`` shows
  them) and returned by :meth:`AssemblyDesk.close_due_votes` for the push engine.
  During the 公示 period that follows, anyone may send an objection (``异议 ...``).

For the schedules: :meth:`AssemblyDesk.households_for` resolves an audience to
representatives' openids, :meth:`AssemblyDesk.template_context` gives the next
assembly's time, place and agenda, :meth:`AssemblyDesk.reminder_recipients` the
households that said 参加 or 待定.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import AssemblyConfig
from bot.domain import timefmt
from bot.domain.errors import Invalid, NotFound, Refused
from bot.domain.households import HouseholdDesk, NotBound, NotRepresentative
from bot.domain.notify import Notifier
from bot.errors import ConflictError
from bot.redact import mask
from storage.assembly import (
    ABSENT,
    ANSWERS,
    ATTEND,
    CANCELLED,
    MAYBE,
    SCHEDULED,
    VOTE_CLOSED,
    VOTE_FINAL,
    VOTE_OPEN,
    AgendaItem,
    AgendaRepo,
    Ballot,
    BallotRepo,
    Meeting,
    MeetingRepo,
    Objection,
    ObjectionRepo,
    Rsvp,
    RsvpRepo,
    Suggestion,
    Unchanged,
    Vote,
    VoteRepo,
)
from storage.households import Household
from storage.repos import AuditRepo, Sequences

log = logging.getLogger("bot.domain.assembly")

ANSWER_NAMES = {ATTEND: "参加", ABSENT: "不参加", MAYBE: "待定"}
DEFAULT_TITLE = "户主坝坝会"
DEFAULT_HOURS = 2.0
MAX_TITLE = 40
MAX_PLACE = 60
MAX_AGENDA_ITEMS = 20
MAX_AGENDA_TEXT = 100
MAX_OPTIONS = 12  # a numbered list residents can read on one screen (and in 2048 bytes)
MAX_OPTION = 40
MAX_TOPIC = 200
SHOWN_AGENDA = 8
SHOWN_AGENDA_TEXT = 40
MAX_OBJECTION = 300
MAX_SUGGESTIONS = 20
DAY = 86400.0

MEMBER_SUGGESTS = (
    "您家成员{who}对{title}（{time}）的意见是：{answer}。\n"
    "以户代表的答复为准：回复“坝坝会”查看并为全家答复。"
)
CANCELLED_NOTICE = "通知：原定{time}的{title}取消了。{reason}"


class VoteClosed(Refused):
    pass


class AlreadyVoted(Refused):
    pass


@dataclass(frozen=True, slots=True)
class RsvpResult:
    meeting: Meeting
    household: Household
    answer: str
    counted: bool  # True: the household's answer; False: a member's suggestion
    previous: str = ""  # the household's answer before, "" if none
    told: bool = False  # a suggestion: whether the representative was reached


@dataclass(frozen=True, slots=True)
class RsvpCounts:
    households: int
    attend: int
    absent: int
    maybe: int
    quorum: int  # households that must attend

    @property
    def unanswered(self) -> int:
        return max(self.households - self.attend - self.absent - self.maybe, 0)

    @property
    def quorum_reached(self) -> bool:
        return self.households > 0 and self.attend >= self.quorum

    @property
    def shortfall(self) -> int:
        """Households that must still say 参加 for the quorum (0 once it is reached)."""
        return max(self.quorum - self.attend, 0)


@dataclass(frozen=True, slots=True)
class ClosedVote:
    """A vote whose results are to be pushed to the households."""

    vote: Vote
    text: str
    campaign: str  # e.g. "vote-results:3": claim it once in the push engine
    audience: str = "all"


class AssemblyDesk:
    def __init__(
        self,
        meetings: MeetingRepo,
        rsvps: RsvpRepo,
        agenda: AgendaRepo,
        votes: VoteRepo,
        ballots: BallotRepo,
        objections: ObjectionRepo,
        households: HouseholdDesk,
        sequences: Sequences,
        audit: AuditRepo,
        notifier: Notifier,
        config: AssemblyConfig,
        clock: Callable[[], float],
        tz: ZoneInfo,
    ) -> None:
        self._meetings = meetings
        self._rsvps = rsvps
        self._agenda = agenda
        self._votes = votes
        self._ballots = ballots
        self._objections = objections
        self.households = households
        self._sequences = sequences
        self._audit = audit
        self._notifier = notifier
        self.config = config
        self._clock = clock
        self.tz = tz

    # --- meetings -----------------------------------------------------------------

    async def next_assembly(self) -> Meeting | None:
        """The soonest scheduled assembly that has not ended."""
        now = self._clock()
        found = [m for m in await self._meetings.by_status(SCHEDULED) if m.ends_at > now]
        return min(found, key=lambda m: (m.starts_at, m.number), default=None)

    async def meeting(self, number: int) -> Meeting:
        meeting = await self._meetings.get(number)
        if meeting is None:
            raise NotFound(f"没有编号为 {number} 的会议")
        return meeting

    async def meetings(self, *, after: int | None = None, limit: int = 50) -> list[Meeting]:
        return await self._meetings.page(after=after, limit=limit)

    def describe(self, meeting: Meeting) -> str:
        """The assembly as residents read it."""
        lines = [
            f"【{meeting.title}】",
            f"时间：{timefmt.span(meeting.starts_at, meeting.ends_at, self.tz)}",
            f"地点：{meeting.place}",
        ]
        if meeting.agenda:
            # A reply holds 2048 bytes: long agendas are shortened, never cut mid-list.
            lines.append("议题：")
            for i, item in enumerate(meeting.agenda[:SHOWN_AGENDA], 1):
                shown = item if len(item) <= SHOWN_AGENDA_TEXT else item[:SHOWN_AGENDA_TEXT] + "…"
                lines.append(f"  {i}) {shown}")
            if len(meeting.agenda) > SHOWN_AGENDA:
                lines.append(f"  ……共{len(meeting.agenda)}项")
        return "\n".join(lines)

    async def template_context(self) -> dict[str, str]:
        """``time``, ``place``, ``agenda``, ``month`` of the next assembly ({} if none)."""
        meeting = await self.next_assembly()
        if meeting is None:
            return {}
        return {
            "time": timefmt.when(meeting.starts_at, self.tz),
            "place": meeting.place,
            "agenda": "；".join(meeting.agenda) if meeting.agenda else "（待定）",
            "month": f"{timefmt.local(meeting.starts_at, self.tz).month}月",
            "title": meeting.title,
        }

    async def create_meeting(self, body: Mapping[str, Any], *, actor: str) -> Meeting:
        now = self._clock()
        draft = self._meeting_draft(body, None)
        if draft.starts_at <= now:
            raise Invalid("开始时间必须在将来")
        number = await self._sequences.next("meeting")
        meeting = replace(draft, number=number, created_at=now, created_by=actor, updated_at=now)
        await self._meetings.insert(meeting)
        await self._audit.add(
            actor, "meeting.create", f"meeting/{number}", _meeting_detail(meeting), now
        )
        log.info("%s scheduled meeting %s", actor, number)
        return meeting

    async def edit_meeting(self, number: int, body: Mapping[str, Any], *, actor: str) -> Meeting:
        before = await self.meeting(number)
        draft = self._meeting_draft(body, before)
        now = self._clock()
        if draft.starts_at != before.starts_at and draft.starts_at <= now:
            raise Invalid("开始时间必须在将来")

        def apply(current: Meeting) -> Meeting:
            if current.status != SCHEDULED:
                raise Refused("会议已取消，不能修改")
            if current.starts_at <= now:
                raise Refused("会议已经开始，不能修改")
            return replace(
                current,
                title=draft.title,
                starts_at=draft.starts_at,
                ends_at=draft.ends_at,
                place=draft.place,
                agenda=draft.agenda,
                updated_at=now,
            )

        after = await self._change_meeting(number, apply)
        old, new = _meeting_detail(before), _meeting_detail(after)
        changes = {k: v for k, v in new.items() if old.get(k) != v}
        await self._audit.add(actor, "meeting.edit", f"meeting/{number}", changes, now)
        return after

    async def cancel_meeting(self, number: int, reason: str, *, actor: str) -> Meeting:
        """Cancel it; the households that said 参加 or 待定 are told."""
        reason = (reason or "").strip()
        if len(reason) > 200:
            raise Invalid("取消原因最多200个字")
        now = self._clock()

        def apply(current: Meeting) -> Meeting:
            if current.status == CANCELLED:
                raise Refused("会议已经取消过了")
            if current.ends_at <= now:
                raise Refused("会议已经结束，不能取消")
            return replace(current, status=CANCELLED, cancel_reason=reason, updated_at=now)

        after = await self._change_meeting(number, apply)
        await self._audit.add(actor, "meeting.cancel", f"meeting/{number}", {"reason": reason}, now)
        text = CANCELLED_NOTICE.format(
            time=timefmt.when(after.starts_at, self.tz),
            title=after.title,
            reason=f"原因：{reason}" if reason else "",
        ).strip()
        for openid in await self.reminder_recipients(after):
            await self._notifier.tell(openid, text)
        return after

    # --- answers (RSVP) -----------------------------------------------------------

    async def answer_of(self, meeting: int, household: str) -> Rsvp | None:
        return await self._rsvps.get(meeting, household)

    async def rsvp(self, openid: str, meeting_number: int, answer: str) -> RsvpResult:
        """Answer for my household (representative) or suggest an answer (member)."""
        if answer not in ANSWERS:
            raise Invalid("请回复 1 参加、2 不参加 或 3 待定")
        household = await self.households.of(openid)
        if household is None:
            raise NotBound("请先绑定您家的房屋，再答复坝坝会。")
        meeting = await self.meeting(meeting_number)
        now = self._clock()
        if meeting.status != SCHEDULED:
            raise Refused(f"{meeting.title}已取消。")
        if meeting.starts_at <= now:
            raise Refused(f"{meeting.title}已经开始，不能再答复了。")
        member = household.member(openid)
        if household.representative == openid:

            def answer_for_all(current: Rsvp) -> Rsvp:
                return replace(current, answer=answer, by=openid, at=now)

            before, _ = await self._rsvps.change(meeting.number, household.id, answer_for_all)
            log.info("household %s answered meeting %s: %s", household.id, meeting.number, answer)
            return RsvpResult(meeting, household, answer, True, before.answer)

        name = member.name if member else ""

        def suggest(current: Rsvp) -> Rsvp:
            kept = tuple(s for s in current.suggestions if s.openid != openid)
            mine = Suggestion(openid, name, answer, now)
            return replace(current, suggestions=(*kept, mine)[-MAX_SUGGESTIONS:])

        before, _ = await self._rsvps.change(meeting.number, household.id, suggest)
        told = False
        if household.representative:
            told = await self._notifier.tell(
                household.representative,
                MEMBER_SUGGESTS.format(
                    who=f"“{name}”" if name else "",
                    title=meeting.title,
                    time=timefmt.when(meeting.starts_at, self.tz),
                    answer=ANSWER_NAMES[answer],
                ),
            )
        log.info(
            "%s suggested %s for household %s (representative told: %s)",
            mask(openid),
            answer,
            household.id,
            told,
        )
        return RsvpResult(meeting, household, answer, False, before.answer, told)

    async def counts(self, meeting: Meeting) -> RsvpCounts:
        households = await self.households.count()
        return RsvpCounts(
            households=households,
            attend=await self._rsvps.count(meeting.number, ATTEND),
            absent=await self._rsvps.count(meeting.number, ABSENT),
            maybe=await self._rsvps.count(meeting.number, MAYBE),
            quorum=math.ceil(households * self.config.quorum_ratio),
        )

    async def answers(self, meeting: Meeting, answer: str) -> list[Rsvp]:
        if answer not in ANSWERS:
            raise Invalid(f"answer 必须是 {' / '.join(ANSWERS)} 之一")
        return await self._rsvps.answered(meeting.number, answer)

    async def reminder_recipients(self, meeting: Meeting) -> list[str]:
        """Representatives of the households that answered 参加 or 待定 (as they are now)."""
        found: list[str] = []
        for answer in (ATTEND, MAYBE):
            for rsvp in await self._rsvps.answered(meeting.number, answer):
                household = await self.households.lookup(rsvp.household)
                if household is not None and household.representative:
                    found.append(household.representative)
        return list(dict.fromkeys(found))

    async def households_for(self, audience: str) -> list[str]:
        """Representatives' openids for a schedule's audience.

        ``all``, ``building:<楼栋>``, ``grid:<网格 id>``, ``tag:<标签>``, and
        ``rsvp:coming``: the households that said 参加 or 待定 to the next assembly, but
        only on the day ``[assembly] remind_days_before`` days before its date (empty on
        any other day), so a daily reminder schedule reminds once, the day before.
        """
        if audience != "rsvp:coming":
            return await self.households.representatives(audience)
        meeting = await self.next_assembly()
        if meeting is None:
            return []
        today = timefmt.local(self._clock(), self.tz).date()
        days = (timefmt.local(meeting.starts_at, self.tz).date() - today).days
        if days != self.config.remind_days_before:
            return []
        return await self.reminder_recipients(meeting)

    # --- agenda suggestions -------------------------------------------------------

    async def suggest_topic(self, openid: str, text: str) -> tuple[AgendaItem, Meeting | None]:
        text = text.strip()
        if len(text) < 2:
            raise Invalid("议题至少写两个字。")
        if len(text) > MAX_TOPIC:
            raise Invalid(f"议题最多{MAX_TOPIC}个字，您写了{len(text)}个字。")
        meeting = await self.next_assembly()
        household = await self.households.of(openid)
        item = AgendaItem(
            number=await self._sequences.next("agenda"),
            meeting=meeting.number if meeting else 0,
            openid=openid,
            household=household.id if household else "",
            text=text,
            at=self._clock(),
        )
        await self._agenda.insert(item)
        log.info("%s suggested agenda item %s", mask(openid), item.number)
        return item, meeting

    async def topics(self, meeting: int | None = None) -> list[AgendaItem]:
        """Suggestions for ``meeting``; by default the next assembly's and the unassigned."""
        if meeting is not None:
            return await self._agenda.for_meeting(meeting)
        found = await self._agenda.for_meeting(0)
        upcoming = await self.next_assembly()
        if upcoming is not None:
            found += await self._agenda.for_meeting(upcoming.number)
        return sorted(found, key=lambda item: item.number)

    # --- votes --------------------------------------------------------------------

    async def vote(self, number: int) -> Vote:
        vote = await self._votes.get(number)
        if vote is None:
            raise NotFound(f"没有编号为 {number} 的投票")
        return vote

    async def settle(self) -> None:
        """Count and close every vote whose time is up (once each; cheap when none is)."""
        await self._close_due(self._clock())

    async def all_votes(self, *, after: int | None = None, limit: int = 50) -> list[Vote]:
        await self.settle()
        return await self._votes.page(after=after, limit=limit)

    async def open_votes(self) -> list[Vote]:
        """Votes taking ballots now, closing soonest first."""
        now = self._clock()
        await self._close_due(now)
        found = [v for v in await self._votes.by_status(VOTE_OPEN) if v.closes_at > now]
        return sorted(found, key=lambda v: (v.closes_at, v.number))

    async def in_publicity(self) -> list[Vote]:
        """Closed votes whose 公示 period is running: results posted, objections taken."""
        now = self._clock()
        await self._close_due(now)
        found = [v for v in await self._votes.by_status(VOTE_CLOSED) if now < v.publicity_until]
        return sorted(found, key=lambda v: v.number)

    async def create_vote(self, body: Mapping[str, Any], *, actor: str) -> Vote:
        now = self._clock()
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise Invalid("需要字段 title（文字）")
        if len(title.strip()) > MAX_TITLE:
            raise Invalid(f"title 最多{MAX_TITLE}个字")
        options = body.get("options")
        if (
            not isinstance(options, list)
            or not 2 <= len(options) <= MAX_OPTIONS
            or not all(isinstance(o, str) and o.strip() for o in options)
        ):
            raise Invalid(f"options 必须是2到{MAX_OPTIONS}个候选（文字）")
        cleaned = tuple(o.strip() for o in options)
        if any(len(o) > MAX_OPTION for o in cleaned):
            raise Invalid(f"每个候选最多{MAX_OPTION}个字")
        if len(set(cleaned)) != len(cleaned):
            raise Invalid("options 中有重复的候选")
        if "closes_at" not in body:
            raise Invalid("需要字段 closes_at（截止时间，如 2026-12-10T20:00）")
        closes_at = timefmt.parse(body["closes_at"], self.tz, "closes_at")
        if closes_at <= now:
            raise Invalid("截止时间必须在将来")
        publicity = _int(body, "publicity_days", 0, 60, self.config.publicity_days)
        seats = _int(body, "seats", 1, len(cleaned) - 1, 1)
        meeting = _int(body, "meeting", 0, 10**9, 0)
        if meeting:
            await self.meeting(meeting)
        number = await self._sequences.next("vote")
        vote = Vote(
            number=number,
            title=title.strip(),
            options=cleaned,
            closes_at=closes_at,
            publicity_days=publicity,
            seats=seats,
            meeting=meeting,
            created_at=now,
            created_by=actor,
        )
        await self._votes.insert(vote)
        await self._audit.add(
            actor,
            "vote.create",
            f"vote/{number}",
            {
                "title": vote.title,
                "options": list(vote.options),
                "closes_at": closes_at,
                "publicity_days": publicity,
                "seats": seats,
            },
            now,
        )
        log.info("%s opened vote %s (%s options)", actor, number, len(cleaned))
        return vote

    async def ballot_of(self, openid: str, number: int) -> Ballot | None:
        household = await self.households.of(openid)
        return None if household is None else await self._ballots.get(number, household.id)

    def check_open(self, vote: Vote) -> None:
        """:class:`VoteClosed` unless ``vote`` takes ballots now."""
        if vote.status != VOTE_OPEN or self._clock() >= vote.closes_at:
            raise VoteClosed(
                f"《{vote.title}》已于{timefmt.when(vote.closes_at, self.tz)}截止，不能再投票了。"
                "回复“投票”可以查看结果。"
            )

    async def cast(self, openid: str, number: int, choice: int) -> Ballot:
        """The representative's ballot for the household: once, before the close."""
        vote = await self.vote(number)
        now = self._clock()
        self.check_open(vote)
        if not 0 <= choice < len(vote.options):
            raise Invalid(f"没有第{choice + 1}项，请回复 1–{len(vote.options)} 之间的序号。")
        household = await self.households.of(openid)
        if household is None:
            raise NotBound("每户一票，由户代表投票。请先回复“绑定”绑定您家的房屋。")
        if household.representative != openid:
            raise NotRepresentative(representative_only(household, "投票"))
        ballot = Ballot(number, household.id, choice, openid, now)
        try:
            await self._ballots.cast(ballot)
        except ConflictError:
            earlier = await self._ballots.get(number, household.id)
            picked = vote.options[earlier.choice] if earlier else "?"
            raise AlreadyVoted(f"您家已经投过票了（投给：{picked}），每户只能投一次。") from None
        log.info("household %s voted in vote %s", household.id, number)
        return ballot

    async def turnout(self, vote: Vote) -> int:
        """Ballots cast so far (counted live while the vote is open)."""
        if vote.status != VOTE_OPEN:
            return vote.turnout
        return sum([await self._ballots.count(vote.number, i) for i in range(len(vote.options))])

    async def close_due_votes(self, now: float | None = None) -> list[ClosedVote]:
        """Close the votes whose time is up and return every result not yet pushed.

        Each vote is counted and closed once (a compare-and-set), whoever calls. A
        vote stays in the returned list until :meth:`mark_results_pushed`; the push
        engine's claim of ``campaign`` keeps a repeated push from sending twice.
        Votes whose 公示 period is over (and whose results went out) become final.
        """
        now = self._clock() if now is None else now
        await self._close_due(now)
        pending: list[ClosedVote] = []
        for vote in await self._votes.by_status(VOTE_CLOSED):
            if vote.results_pushed_at is None:
                pending.append(
                    ClosedVote(vote, self.results_text(vote), f"vote-results:{vote.number}")
                )
            elif now >= vote.publicity_until:
                await self._finalise(vote.number)
        return sorted(pending, key=lambda c: c.vote.number)

    async def mark_results_pushed(self, number: int) -> Vote:
        now = self._clock()

        def apply(current: Vote) -> Vote:
            if current.status == VOTE_OPEN:
                raise Refused("投票还没有截止")
            if current.results_pushed_at is not None:
                raise Unchanged
            return replace(current, results_pushed_at=now)

        return await self._change_vote(number, apply)

    def results_text(self, vote: Vote) -> str:
        """The results as posted to residents (and pushed to households)."""
        lines = [f"【投票结果】{vote.title}"]
        winners = set(vote.winners())
        tie = len(winners) > vote.seats
        for i, option in enumerate(vote.options):
            count = vote.results[i] if i < len(vote.results) else 0
            mark = ("（并列）" if tie else "（当选）") if i in winners else ""
            lines.append(f"{i + 1}. {option}：{count}票{mark}")
        lines.append(f"共{vote.turnout}户投票。" if vote.turnout else "没有户投票。")
        if vote.publicity_days:
            until = timefmt.when(vote.publicity_until, self.tz)
            lines.append(f"公示至{until}，如有异议，请回复“异议 内容”。")
        return "\n".join(lines)

    async def object(self, openid: str, number: int, text: str) -> Objection:
        """An objection to a vote's results during its 公示 period."""
        text = (text or "").strip()
        if len(text) < 2:
            raise Invalid("请写明异议的内容。")
        if len(text) > MAX_OBJECTION:
            raise Invalid(f"异议最多{MAX_OBJECTION}个字，您写了{len(text)}个字。")
        vote = await self.vote(number)
        now = self._clock()
        if vote.status == VOTE_OPEN:
            raise Refused(f"《{vote.title}》还在投票中，截止公布结果后才能提异议。")
        if now >= vote.publicity_until:
            raise Refused(f"《{vote.title}》的公示期已经结束，不能再提异议。")
        household = await self.households.of(openid)
        objection = Objection(
            number=await self._sequences.next("objection"),
            vote=number,
            openid=openid,
            household=household.id if household else "",
            text=text,
            at=now,
        )
        await self._objections.insert(objection)
        log.warning("objection %s to vote %s by %s", objection.number, number, mask(openid))
        return objection

    async def objections(self, number: int) -> list[Objection]:
        await self.vote(number)
        return await self._objections.for_vote(number)

    # --- helpers ------------------------------------------------------------------

    async def _close_due(self, now: float) -> None:
        for vote in await self._votes.by_status(VOTE_OPEN):
            if vote.closes_at > now:
                continue
            counts = tuple(
                [await self._ballots.count(vote.number, i) for i in range(len(vote.options))]
            )

            def close(current: Vote, counts: tuple[int, ...] = counts) -> Vote:
                if current.status != VOTE_OPEN:
                    raise Unchanged
                return replace(current, status=VOTE_CLOSED, results=counts, closed_at=now)

            try:
                closed = await self._votes.change(vote.number, close)
            except Unchanged:
                continue
            log.info("vote %s closed: %s ballots", closed.number, closed.turnout)

    async def _finalise(self, number: int) -> None:
        def apply(current: Vote) -> Vote:
            if current.status != VOTE_CLOSED:
                raise Unchanged
            return replace(current, status=VOTE_FINAL)

        await self._change_vote(number, apply)

    async def _change_vote(self, number: int, change: Callable[[Vote], Vote]) -> Vote:
        try:
            return await self._votes.change(number, change)
        except KeyError:
            raise NotFound(f"没有编号为 {number} 的投票") from None
        except Unchanged:
            return await self.vote(number)

    async def _change_meeting(self, number: int, change: Callable[[Meeting], Meeting]) -> Meeting:
        try:
            return await self._meetings.change(number, change)
        except KeyError:
            raise NotFound(f"没有编号为 {number} 的会议") from None
        except Unchanged:
            return await self.meeting(number)

    def _meeting_draft(self, body: Mapping[str, Any], base: Meeting | None) -> Meeting:
        def text(name: str, limit: int, default: str | None) -> str:
            value = body.get(name, default)
            if not isinstance(value, str) or not value.strip():
                raise Invalid(f"需要字段 {name}（文字）")
            if len(value.strip()) > limit:
                raise Invalid(f"{name} 最多{limit}个字")
            return value.strip()

        if "starts_at" in body:
            starts_at = timefmt.parse(body["starts_at"], self.tz, "starts_at")
        elif base is not None:
            starts_at = base.starts_at
        else:
            raise Invalid("需要字段 starts_at（时间，如 2026-12-05T19:00）")
        if "ends_at" in body:
            ends_at = timefmt.parse(body["ends_at"], self.tz, "ends_at")
        elif base is not None:
            ends_at = starts_at + (base.ends_at - base.starts_at)
        else:
            ends_at = starts_at + DEFAULT_HOURS * 3600
        if ends_at <= starts_at:
            raise Invalid("结束时间必须晚于开始时间")
        agenda: Any = body.get("agenda", list(base.agenda) if base else [])
        if isinstance(agenda, str):
            agenda = [line for line in agenda.splitlines() if line.strip()]
        if (
            not isinstance(agenda, list)
            or len(agenda) > MAX_AGENDA_ITEMS
            or not all(isinstance(a, str) and 0 < len(a.strip()) <= MAX_AGENDA_TEXT for a in agenda)
        ):
            raise Invalid(
                f"agenda 必须是最多{MAX_AGENDA_ITEMS}条议题（每条1到{MAX_AGENDA_TEXT}个字）"
            )
        return Meeting(
            number=base.number if base else 0,
            title=text("title", MAX_TITLE, base.title if base else DEFAULT_TITLE),
            starts_at=starts_at,
            ends_at=ends_at,
            place=text("place", MAX_PLACE, base.place if base else None),
            agenda=tuple(a.strip() for a in agenda),
        )


def representative_only(household: Household, what: str) -> str:
    rep = household.member(household.representative)
    who = f"“{rep.name}”" if rep and rep.name else "另一位家人"
    return f"每户一票，由户代表{what}。您家的户代表是{who}，请把您的意见告诉TA。"


def _int(body: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{name} 必须是 {low} 到 {high} 之间的整数")
    return value


def _meeting_detail(meeting: Meeting) -> dict[str, Any]:
    return {
        "title": meeting.title,
        "starts_at": meeting.starts_at,
        "ends_at": meeting.ends_at,
        "place": meeting.place,
        "agenda": list(meeting.agenda),
    }
