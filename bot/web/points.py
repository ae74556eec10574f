"""``/admin/points``: a resident's ledger, awards and corrections, the catalogue, vouchers.

Every change goes through :class:`~bot.domain.points.PointsDesk`, as the chat and the
JSON API do: the ledger's "never below zero", the idempotency of a posting and the
audit log entry are the desk's. A form that posts money-like changes (an award, a
restock) carries an idempotency key made when the form was shown, so a form sent
twice (a double click, a browser retry) counts once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot import keys
from bot.domain.accounts import ADMIN
from bot.domain.errors import Invalid, NotFound
from bot.domain.points import PointsDesk, StockedItem, ranked
from bot.redact import mask
from bot.web.guard import PREFIX, allow
from bot.web.render import actor, done, form, form_int, redirect, render
from storage.activities import FAILED, ISSUED, PENDING, USED

log = logging.getLogger("bot.web")

routes = web.RouteTableDef()
SECTION = f"{PREFIX}/points"
CATALOGUE = f"{SECTION}/catalogue"
LEADERS = 20
LEDGER_PAGE = 20
MAX_OPENID = 64
MAX_KEY = 100

KINDS = {
    "checkin": "活动签到",
    "award": "奖励",
    "correction": "更正",
    "redeem": "兑换",
    "refund": "退回",
    "restock": "补货",
    "stock-correction": "减少库存",
}
VOUCHER_STATES = {ISSUED: "待领取", USED: "已领取", FAILED: "未成功", PENDING: "处理中"}


@dataclass(frozen=True, slots=True)
class Resident:
    """How a staff page names a resident: masked openid, and their household if bound."""

    openid: str
    masked: str
    name: str  # what they asked to be called in their household (王阿姨); may be empty
    address: str  # 3栋2单元501, or "" when not bound

    @property
    def link(self) -> str:
        return resident_path(self.openid)


def resident_path(openid: str) -> str:
    return f"{SECTION}/{quote(openid, safe='')}"


def _desk(request: web.Request) -> PointsDesk:
    return request.app[keys.SERVICES].points


async def residents(request: web.Request, openids: Iterable[str]) -> dict[str, Resident]:
    """Each resident's name and address from the household desk (the binding is the truth)."""
    households = request.app[keys.SERVICES].households
    wanted = list(dict.fromkeys(openids))
    found = await asyncio.gather(*(households.of(o) for o in wanted))
    people: dict[str, Resident] = {}
    for openid, household in zip(wanted, found, strict=True):
        member = household.member(openid) if household else None
        people[openid] = Resident(
            openid,
            mask(openid),
            member.name if member else "",
            household.label if household else "",
        )
    return people


def new_key() -> str:
    """The idempotency key a form carries: one per rendering, so a resend posts once."""
    return f"web-{secrets.token_urlsafe(18)}"


def _key(fields: dict[str, str]) -> str:
    key = fields.get("key", "")
    if not key or len(key) > MAX_KEY:
        raise Invalid("表单已过期，请刷新页面后再提交一次")
    return key


def _openid(request: web.Request) -> str:
    openid = request.match_info["openid"]
    if not openid or len(openid) > MAX_OPENID:
        raise NotFound("没有这个居民（openid 无效）")
    return openid


# --- the points home: look-up and leaderboard ----------------------------------------


@routes.get(SECTION)
@allow(ADMIN)
async def home(request: web.Request) -> web.StreamResponse:
    wanted = request.query.get("openid", "").strip()
    if wanted:
        return redirect(resident_path(wanted[:MAX_OPENID]))
    address = request.query.get("address", "").strip()
    household = None
    if address:
        desk = request.app[keys.SERVICES].households
        household = await desk.find(desk.parse(address))
    leaders = ranked(await _desk(request).top(LEADERS))
    people = await residents(
        request,
        [openid for _, openid, _ in leaders]
        + ([m.openid for m in household.members] if household else []),
    )
    return await render(
        request,
        "points/index.html",
        {
            "leaders": leaders,
            "people": people,
            "address": address,
            "household": household,
        },
        section=SECTION,
    )


# --- the catalogue and vouchers (registered before /{openid}, which would match) -----


@routes.get(CATALOGUE)
@allow(ADMIN)
async def catalogue(request: web.Request) -> web.Response:
    desk = _desk(request)
    state = request.query.get("state", ISSUED)
    if state not in VOUCHER_STATES:
        state = ISSUED
    items = sorted(await desk.catalogue(active_only=False), key=lambda s: s.item.number)
    vouchers = sorted(await desk.redemptions(state), key=lambda r: r.updated_at, reverse=True)
    people = await residents(request, [v.openid for v in vouchers])
    return await render(
        request,
        "points/catalogue.html",
        {
            "items": items,
            "stock_keys": {s.item.number: new_key() for s in items},
            "vouchers": vouchers,
            "people": people,
            "state": state,
            "states": VOUCHER_STATES,
        },
        section=SECTION,
    )


@routes.post(CATALOGUE)
@allow(ADMIN)
async def add_item(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    added = await _desk(request).add_item(
        fields.get("name", ""),
        form_int(fields, "cost", "所需积分"),
        form_int(fields, "stock", "初始库存"),
        actor=actor(request),
    )
    return done(CATALOGUE, f"已添加“{added.item.name}”（{added.item.cost}积分，库存{added.stock}）")


async def _stocked(desk: PointsDesk, number: int) -> StockedItem:
    for stocked in await desk.catalogue(active_only=False):
        if stocked.item.number == number:
            return stocked
    raise NotFound(f"没有编号为 {number} 的兑换物品")


def _item_number(request: web.Request) -> int:
    raw = request.match_info["number"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise NotFound(f"没有编号为 {raw[:16]} 的兑换物品")
    return int(raw)


@routes.post(f"{CATALOGUE}/{{number}}")
@allow(ADMIN)
async def change_item(request: web.Request) -> web.StreamResponse:
    desk = _desk(request)
    number = _item_number(request)
    fields = await form(request)
    current = (await _stocked(desk, number)).item
    name = fields.get("name", current.name)
    cost = form_int(fields, "cost", "所需积分")
    active = fields.get("active", "1" if current.active else "0") == "1"
    # Only what the form changed, so the audit log says what staff actually did.
    changes: dict[str, Any] = {
        k: v
        for k, v, old in (
            ("name", name, current.name),
            ("cost", cost, current.cost),
            ("active", active, current.active),
        )
        if v != old
    }
    if not changes:
        return done(CATALOGUE, f"“{current.name}”没有修改")
    changed = await desk.change_item(number, actor=actor(request), **changes)
    state = "上架" if changed.item.active else "已下架"
    return done(CATALOGUE, f"已保存“{changed.item.name}”：{changed.item.cost}积分，{state}")


@routes.post(f"{CATALOGUE}/{{number}}/stock")
@allow(ADMIN)
async def restock(request: web.Request) -> web.StreamResponse:
    number = _item_number(request)
    fields = await form(request)
    stocked = await _desk(request).restock(
        number,
        form_int(fields, "amount", "数量"),
        fields.get("reason", ""),
        actor=actor(request),
        key=_key(fields),
    )
    return done(CATALOGUE, f"“{stocked.item.name}”现有库存{stocked.stock}件")


@routes.post(f"{SECTION}/vouchers/confirm")
@allow(ADMIN)
async def confirm(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    code = fields.get("code", "")
    if not code:
        raise Invalid("请输入兑换码")
    used = await _desk(request).confirm(code[:32], actor=actor(request))
    return done(CATALOGUE, f"兑换码 {used.code} 已确认领取：{used.name}")


# --- one resident ---------------------------------------------------------------------


@routes.get(f"{SECTION}/{{openid}}")
@allow(ADMIN)
async def resident(request: web.Request) -> web.Response:
    desk = _desk(request)
    openid = _openid(request)
    raw = request.query.get("page", "1")
    page = int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 6 else 1
    page = max(page, 1)
    total, entries = await desk.history(openid, skip=(page - 1) * LEDGER_PAGE, limit=LEDGER_PAGE)
    pages = max((total + LEDGER_PAGE - 1) // LEDGER_PAGE, 1)
    person = (await residents(request, [openid]))[openid]
    return await render(
        request,
        "points/resident.html",
        {
            "person": person,
            "balance": await desk.balance(openid),
            "entries": entries,
            "total": total,
            "page": page,
            "pages": pages,
            "kinds": KINDS,
            "vouchers": await desk.vouchers_of(openid),
            "states": VOUCHER_STATES,
            "key": new_key(),
        },
        section=SECTION,
    )


@routes.post(f"{SECTION}/{{openid}}")
@allow(ADMIN)
async def adjust(request: web.Request) -> web.StreamResponse:
    openid = _openid(request)
    fields = await form(request)
    posting = await _desk(request).adjust(
        openid,
        form_int(fields, "amount", "积分数"),
        fields.get("reason", ""),
        actor=actor(request),
        key=_key(fields),
    )
    here = resident_path(openid)
    if not posting.created:
        # The same form arrived again (double click, browser retry): nothing new was posted.
        return done(here, "这笔调整已经记过了，没有重复记账")
    entry = posting.entry
    what = "奖励" if entry.amount > 0 else "更正"
    return done(here, f"已{what}{entry.amount:+d}积分，现有{entry.balance}积分")
