"""坝坝会 (answer for the household), 议题 (suggest a topic), 投票 (vote), 异议 (object).

``坝坝会`` shows the next assembly and the household's answer; ``1`` 参加, ``2``
不参加, ``3`` 待定 answers for the household when the representative replies, and
is passed on to the representative as a suggestion when another member does. A
resident not bound to a household is led through binding first. ``投票`` lists
the candidates; the representative replies a number and confirms (one ballot per
household, final). After the close ``投票`` shows the results, and during the 公示
period ``异议 内容`` records an objection for the organiser.
"""

from __future__ import annotations

import re

from bot.conversation.context import Context
from bot.conversation.router import AnyText, Number, Router, State, Text, TextPrefix
from bot.conversation.text import as_number
from bot.domain import timefmt
from bot.domain.assembly import ANSWER_NAMES, representative_only
from bot.domain.errors import DomainError, Invalid
from bot.services import Services
from bot.wechat.messages import Message
from bot.wechat.replies import Reply
from handlers.household import KEYWORDS as HOUSEHOLD_KEYWORDS
from handlers.household import start_binding
from handlers.menu import MainMenu
from handlers.words import NO, YES, list_choice
from storage.assembly import ABSENT, ATTEND, MAYBE, Vote

RSVP = "assembly:rsvp"
TOPIC = "assembly:topic"
VOTE_WHICH = "vote:which"
VOTE_PICK = "vote:pick"
VOTE_CONFIRM = "vote:confirm"
OBJECTION_WHICH = "objection:which"
OBJECTION_TEXT = "objection:text"

ASSEMBLY_WORDS = ("坝坝会", "户主坝坝会", "开会", "参会")
VOTE_WORDS = ("投票", "我要投票", "投票结果")
CHOICES = {1: ATTEND, 2: ABSENT, 3: MAYBE}
# Said rather than numbered (many answer by voice).
ANSWER_WORDS = {"参加": ATTEND, "去": ATTEND, "不参加": ABSENT, "不去": ABSENT, "待定": MAYBE}
_ARGUMENT = re.compile(r"^\s*[:：,，]?\s*")

NONE_SCHEDULED = (
    "近期还没有安排坝坝会，安排好后会通知各户。\n有想在会上讨论的事，可以回复“议题 内容”提出来。"
)
BIND_FIRST = "答复参会情况前，请先绑定您家的房屋（每户由户代表答复）。"
RSVP_HINT = "请回复 1 参加、2 不参加 或 3 待定；回复“取消”退出。"
ANSWERED = "已为您家（{label}）登记：{answer}。{after}"
CHANGED = "已把您家（{label}）的答复从“{before}”改为“{answer}”。{after}"
COMING_AFTER = "会前一天会提醒您。"
ABSENT_AFTER = "如有变化，开会前回复“坝坝会”可以修改。"
SUGGESTED = "已把您的意见（{answer}）转告户代表，您家的答复以户代表为准。"
SUGGESTED_UNTOLD = "已记下您的意见（{answer}），但暂时没能通知到户代表，请直接告诉TA。"
ASK_TOPIC = "请直接发送您想在坝坝会上讨论的议题（最多200字）。\n回复“取消”退出。"
TOPIC_TAKEN = "已收到您的议题建议（编号 {number}），会转交{meeting}的组织者。"
NO_VOTE = "目前没有进行中的投票。"
VOTE_PICK_HINT = "请回复候选前面的序号投票，或回复“取消”退出。"
VOTE_CONFIRM_ASK = (
    "您要为全家投给：{n}. {option}\n每户只能投一次，投出后不能更改。\n1. 确认投票\n2. 重新选择"
)
VOTE_CONFIRM_HINT = "请回复 1 确认投票，或回复 2 重新选择。"
VOTED = "投票成功！您家投给了：{option}。\n{closes}截止后公布结果，回复“投票”可以查看。"
NO_PUBLICITY = "目前没有在公示期的投票结果，不需要提异议。"
ASK_OBJECTION = "请写明您对《{title}》结果的异议（最多300字）。\n回复“取消”退出。"
OBJECTION_TAKEN = "已收到您对《{title}》结果的异议（编号 {number}），社区会在公示期内核实处理。"
PICK_HINT = "请回复前面的序号，或回复“取消”退出。"


def build(menu: MainMenu) -> Router[Services]:
    router: Router[Services] = Router("assembly")
    not_household = ~Text(*HOUSEHOLD_KEYWORDS)

    # --- 坝坝会 ---------------------------------------------------------------------

    @router.on(Text(*ASSEMBLY_WORDS))
    async def show(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        meeting = await s.assembly.next_assembly()
        if meeting is None:
            return NONE_SCHEDULED
        info = s.assembly.describe(meeting)
        household = await s.households.of(msg.source)
        if household is None:
            return start_binding(ctx, s, intro=f"{info}\n\n{BIND_FIRST}", then="坝坝会")
        rsvp = await s.assembly.answer_of(meeting.number, household.id)
        answer = ANSWER_NAMES.get(rsvp.answer, "") if rsvp else ""
        lines = [info, "", f"您家（{household.label}）的答复：{answer or '还没有答复'}"]
        if meeting.starts_at <= s.clock():
            lines.append("会议已经开始，不能再答复了。")
            return "\n".join(lines)
        if household.representative == msg.source:
            lines.append("您是户代表，请为全家答复：")
        else:
            lines.append("以户代表的答复为准；您的意见会转告户代表：")
        lines += ["1. 参加", "2. 不参加", "3. 待定", "回复“议题 内容”可以提议题。"]
        ctx.set_state(RSVP, meeting=meeting.number)
        return "\n".join(lines)

    menu.add("户主坝坝会", "坝坝会", show)

    @router.on(State(RSVP), Number() | Text(*ANSWER_WORDS))
    async def answer(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        choice = CHOICES.get(as_number(msg.text) or 0) or ANSWER_WORDS.get((msg.text or "").strip())
        if choice is None:
            return RSVP_HINT
        number = int(ctx.data["meeting"])
        ctx.clear()
        try:
            result = await s.assembly.rsvp(msg.source, number, choice)
        except DomainError as exc:
            return str(exc)
        name = ANSWER_NAMES[choice]
        if not result.counted:
            return (SUGGESTED if result.told else SUGGESTED_UNTOLD).format(answer=name)
        after = ABSENT_AFTER if choice == ABSENT else COMING_AFTER
        label = result.household.label
        if result.previous and result.previous != choice:
            before = ANSWER_NAMES[result.previous]
            return CHANGED.format(label=label, before=before, answer=name, after=after)
        return ANSWERED.format(label=label, answer=name, after=after)

    @router.on(State(RSVP), not_household)
    async def answer_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return RSVP_HINT

    # --- 议题 -----------------------------------------------------------------------

    @router.on(TextPrefix("议题"))
    async def topic(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        text = _ARGUMENT.sub("", (msg.text or "").strip()[len("议题") :], count=1)
        if not text:
            ctx.clear()
            ctx.set_state(TOPIC)
            return ASK_TOPIC
        return await _take_topic(msg, ctx, s, text)

    @router.on(State(TOPIC), AnyText(), not_household)
    async def topic_text(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return await _take_topic(msg, ctx, s, (msg.text or "").strip())

    @router.on(State(TOPIC), not_household)
    async def topic_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return ASK_TOPIC

    # --- 投票 -----------------------------------------------------------------------

    @router.on(Text(*VOTE_WORDS))
    async def votes(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        open_now = await s.assembly.open_votes()
        if not open_now:
            posted = await s.assembly.in_publicity()
            if not posted:
                return NO_VOTE
            return "\n\n".join(s.assembly.results_text(v) for v in posted)
        if len(open_now) == 1:
            return await _show_vote(msg, ctx, s, open_now[0])
        lines = ["进行中的投票（回复序号查看候选）："]
        for i, v in enumerate(open_now, 1):
            lines.append(f"{i}. 《{v.title}》{timefmt.when(v.closes_at, s.assembly.tz)}截止")
        lines.append("回复“取消”退出。")
        ctx.set_state(VOTE_WHICH, ids=[v.number for v in open_now])
        return "\n".join(lines)

    menu.add("坝坝会投票", "投票", votes)

    @router.on(State(VOTE_WHICH), Number())
    async def which_vote(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ids: list[int] = list(ctx.data.get("ids", ()))
        n = list_choice(msg, len(ids))
        if isinstance(n, str):
            return n
        try:
            vote = await s.assembly.vote(ids[n - 1])
        except DomainError as exc:
            ctx.clear()
            return str(exc)
        return await _show_vote(msg, ctx, s, vote)

    @router.on(State(VOTE_PICK), Number())
    async def pick(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number = int(ctx.data["vote"])
        try:
            vote = await s.assembly.vote(number)
            s.assembly.check_open(vote)
        except DomainError as exc:
            ctx.clear()
            return str(exc)
        n = list_choice(msg, len(vote.options))
        if isinstance(n, str):
            return n
        ctx.set_state(VOTE_CONFIRM, choice=n - 1)
        return VOTE_CONFIRM_ASK.format(n=n, option=vote.options[n - 1])

    @router.on(State(VOTE_CONFIRM), Text(*YES))
    async def cast(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        number, choice = int(ctx.data["vote"]), int(ctx.data["choice"])
        ctx.clear()
        try:
            ballot = await s.assembly.cast(msg.source, number, choice)
            vote = await s.assembly.vote(number)
        except DomainError as exc:
            return str(exc)
        return VOTED.format(
            option=vote.options[ballot.choice],
            closes=timefmt.when(vote.closes_at, s.assembly.tz),
        )

    @router.on(State(VOTE_CONFIRM), Text(*NO, "重新选择"))
    async def pick_again(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        try:
            vote = await s.assembly.vote(int(ctx.data["vote"]))
        except DomainError as exc:
            ctx.clear()
            return str(exc)
        return await _show_vote(msg, ctx, s, vote)

    @router.on(State(VOTE_CONFIRM), not_household)
    async def confirm_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return VOTE_CONFIRM_HINT

    @router.on(State(VOTE_WHICH, VOTE_PICK), not_household)
    async def vote_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return VOTE_PICK_HINT

    # --- 异议 -----------------------------------------------------------------------

    @router.on(TextPrefix("异议"))
    async def objection(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ctx.clear()
        text = _ARGUMENT.sub("", (msg.text or "").strip()[len("异议") :], count=1)
        posted = await s.assembly.in_publicity()
        if not posted:
            return NO_PUBLICITY
        if len(posted) > 1:
            lines = ["您的异议是针对哪一项投票结果？"]
            lines += [f"{i}. 《{v.title}》" for i, v in enumerate(posted, 1)]
            lines.append("回复序号；回复“取消”退出。")
            ctx.set_state(OBJECTION_WHICH, ids=[v.number for v in posted], text=text)
            return "\n".join(lines)
        if not text:
            ctx.set_state(OBJECTION_TEXT, vote=posted[0].number)
            return ASK_OBJECTION.format(title=posted[0].title)
        return await _take_objection(msg, ctx, s, posted[0].number, text)

    @router.on(State(OBJECTION_WHICH), Number())
    async def objection_pick(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        ids: list[int] = list(ctx.data.get("ids", ()))
        n = list_choice(msg, len(ids))
        if isinstance(n, str):
            return n
        text = str(ctx.data.get("text", ""))
        if text:
            return await _take_objection(msg, ctx, s, ids[n - 1], text)
        try:
            vote = await s.assembly.vote(ids[n - 1])
        except DomainError as exc:
            ctx.clear()
            return str(exc)
        ctx.clear()
        ctx.set_state(OBJECTION_TEXT, vote=vote.number)
        return ASK_OBJECTION.format(title=vote.title)

    @router.on(State(OBJECTION_WHICH), not_household)
    async def objection_pick_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return PICK_HINT

    @router.on(State(OBJECTION_TEXT), AnyText(), not_household)
    async def objection_text(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return await _take_objection(msg, ctx, s, int(ctx.data["vote"]), msg.text or "")

    @router.on(State(OBJECTION_TEXT), not_household)
    async def objection_unclear(msg: Message, ctx: Context, s: Services) -> Reply | str | None:
        return "请用文字写明异议的内容，或回复“取消”退出。"

    return router


async def _show_vote(msg: Message, ctx: Context, s: Services, vote: Vote) -> str:
    ctx.clear()
    closes = timefmt.when(vote.closes_at, s.assembly.tz)
    lines = [f"【投票】{vote.title}", f"{closes}截止｜每户一票，由户代表投"]
    lines += [f"{i}. {option}" for i, option in enumerate(vote.options, 1)]
    household = await s.households.of(msg.source)
    if household is None:
        lines.append("投票前请先绑定您家的房屋：回复“绑定”。")
        return "\n".join(lines)
    ballot = await s.assembly.ballot_of(msg.source, vote.number)
    if ballot is not None:
        lines.append(f"您家已经投过票了（投给：{vote.options[ballot.choice]}），截止后公布结果。")
    elif household.representative != msg.source:
        lines.append(representative_only(household, "投票"))
    else:
        lines.append("请回复候选前面的序号投票；回复“取消”退出。")
        ctx.set_state(VOTE_PICK, vote=vote.number)
    return "\n".join(lines)


async def _take_topic(msg: Message, ctx: Context, s: Services, text: str) -> str:
    try:
        item, meeting = await s.assembly.suggest_topic(msg.source, text)
    except Invalid as exc:
        ctx.clear()
        ctx.set_state(TOPIC)
        return f"{exc}请重新发送，或回复“取消”退出。"
    ctx.clear()
    where = (
        f"{meeting.title}（{timefmt.when(meeting.starts_at, s.assembly.tz)}）"
        if meeting
        else "下一次坝坝会"
    )
    return TOPIC_TAKEN.format(number=item.number, meeting=where)


async def _take_objection(msg: Message, ctx: Context, s: Services, vote: int, text: str) -> str:
    ctx.clear()
    try:
        objection = await s.assembly.object(msg.source, vote, text)
        title = (await s.assembly.vote(vote)).title
    except Invalid as exc:
        ctx.set_state(OBJECTION_TEXT, vote=vote)
        return f"{exc}请重新发送，或回复“取消”退出。"
    except DomainError as exc:
        return str(exc)
    return OBJECTION_TAKEN.format(title=title, number=objection.number)
