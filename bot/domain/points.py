"""Volunteer points: the ledger's rules, rank in the community, the catalogue, redemptions.

Points and stock are both ledger accounts (``pts:<openid>``, ``stock:<item>``), so
"never below zero" and "posts once" are the same guarantee for both. A
redemption is a short saga over them, recorded first so a crash never loses
points: create the voucher (pending) → take one from stock → take the points
(giving the stock back if they fall short) → issue. Every step has its own
idempotency key, so :meth:`PointsDesk.resume` can finish a pending one safely.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from bot.domain.errors import Invalid, NotFound, Refused
from bot.redact import mask
from storage.activities import (
    FAILED,
    ISSUED,
    PENDING,
    USED,
    CatalogueRepo,
    Item,
    Redemption,
    RedemptionRepo,
    with_state,
)
from storage.ledger import BelowFloor, Entry, LedgerRepo, Posting
from storage.repos import AuditRepo, Sequences

log = logging.getLogger("bot.domain.points")

POINTS = "pts:"
STOCK = "stock:"
MAX_AWARD = 10_000
MAX_REASON = 100
VOUCHER_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # nothing an elderly eye confuses


class NotEnoughPoints(Refused):
    def __init__(self, balance: int, cost: int) -> None:
        super().__init__(f"积分不足：需要{cost}积分，您现在有{balance}积分。")
        self.balance = balance
        self.cost = cost


class OutOfStock(Refused):
    def __init__(self, name: str) -> None:
        super().__init__(f"“{name}”已经兑完了，请选择其他物品。")


@dataclass(frozen=True, slots=True)
class Standing:
    """What ``积分`` shows: balance, rank, the newest entries."""

    balance: int
    rank: int | None  # None: no points yet
    ranked: int  # how many residents hold points
    recent: list[Entry]
    total_entries: int


@dataclass(frozen=True, slots=True)
class StockedItem:
    item: Item
    stock: int


class Leaderboard:
    """Every resident's balance, refreshed at most every ``ttl`` seconds.

    Rank is computed against this snapshot with the resident's *current*
    balance, so their own rank is never stale after they earn or spend; other
    residents' balances may be up to ``ttl`` old.
    """

    def __init__(self, ledger: LedgerRepo, *, ttl: float = 60.0) -> None:
        self._ledger = ledger
        self._ttl = ttl
        self._by_openid: Mapping[str, int] = {}
        self._ascending: list[int] = []
        self._taken_at = -float("inf")
        self._refreshing: asyncio.Task[None] | None = None

    async def _fresh(self) -> None:
        if time.monotonic() - self._taken_at < self._ttl:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        balances = await self._ledger.balances(POINTS)
        self._by_openid = {o: b for o, b in balances.items() if b > 0}
        self._ascending = sorted(self._by_openid.values())
        self._taken_at = time.monotonic()

    def invalidate(self) -> None:
        self._taken_at = -float("inf")

    async def rank(self, openid: str, balance: int) -> tuple[int | None, int]:
        await self._fresh()
        others_above = len(self._ascending) - bisect.bisect_right(self._ascending, balance)
        mine = self._by_openid.get(openid)
        if mine is not None and mine > balance:
            others_above -= 1  # the snapshot's copy of me is older than my balance
        ranked = len(self._ascending) + (1 if mine is None and balance > 0 else 0)
        return (others_above + 1 if balance > 0 else None), ranked

    async def top(self, limit: int) -> list[tuple[str, int]]:
        await self._fresh()
        ordered = sorted(self._by_openid.items(), key=lambda kv: (-kv[1], kv[0]))
        return ordered[:limit]


class PointsDesk:
    def __init__(
        self,
        ledger: LedgerRepo,
        catalogue: CatalogueRepo,
        redemptions: RedemptionRepo,
        sequences: Sequences,
        audit: AuditRepo,
        clock: Callable[[], float],
        *,
        leaderboard_ttl: float = 60.0,
    ) -> None:
        self._ledger = ledger
        self._catalogue = catalogue
        self._redemptions = redemptions
        self._sequences = sequences
        self._audit = audit
        self._clock = clock
        self.leaderboard = Leaderboard(ledger, ttl=leaderboard_ttl)

    # --- residents ----------------------------------------------------------------

    async def standing(self, openid: str, *, recent: int = 5) -> Standing:
        head, entries = await self._ledger.entries(POINTS + openid, skip=0, limit=recent)
        rank, ranked = await self.leaderboard.rank(openid, head.balance)
        return Standing(head.balance, rank, ranked, entries, head.seq)

    async def balance(self, openid: str) -> int:
        return (await self._ledger.head(POINTS + openid)).balance

    async def history(self, openid: str, *, skip: int, limit: int) -> tuple[int, list[Entry]]:
        """(total entries, a page of them newest first after skipping ``skip``)."""
        head, entries = await self._ledger.entries(POINTS + openid, skip=skip, limit=limit)
        return head.seq, entries

    async def credit_checkin(self, openid: str, activity: int, title: str, points: int) -> Entry:
        posting = await self._ledger.post(
            POINTS + openid,
            points,
            idem=f"checkin:{activity}:{openid}",
            kind="checkin",
            reason=f"志愿活动签到：{title}",
            by="system",
            at=self._clock(),
            ref=f"activity/{activity}",
        )
        if posting.created:
            self.leaderboard.invalidate()
        return posting.entry

    # --- staff --------------------------------------------------------------------

    async def adjust(
        self, openid: str, amount: int, reason: str, *, actor: str, key: str | None = None
    ) -> Posting:
        """An award (positive) or correction (negative): always a new entry, never an edit."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise Invalid("积分数（amount）必须是非零整数（正数为奖励，负数为更正）")
        if abs(amount) > MAX_AWARD:
            raise Invalid(f"一次最多调整{MAX_AWARD}积分")
        reason = _reason(reason)
        if not openid or len(openid) > 64:
            raise Invalid("openid 无效")
        now = self._clock()
        idem = f"admin:{key}" if key else f"admin:{secrets.token_hex(12)}"
        try:
            posting = await self._ledger.post(
                POINTS + openid,
                amount,
                idem=idem,
                kind="award" if amount > 0 else "correction",
                reason=reason,
                by=actor,
                at=now,
            )
        except BelowFloor as exc:
            raise Refused(f"该居民现有{exc.head.balance}积分，更正{amount}后会变成负数") from None
        if not posting.created and (posting.entry.amount, posting.entry.reason) != (amount, reason):
            raise Refused("这个幂等键已用于另一笔积分调整，请换一个键")
        if posting.created:
            await self._audit.add(
                actor,
                "points.award" if amount > 0 else "points.correct",
                f"points/{openid}",
                {"amount": amount, "reason": reason, "seq": posting.entry.seq},
                now,
            )
            self.leaderboard.invalidate()
        return posting

    async def add_item(self, name: str, cost: int, stock: int, *, actor: str) -> StockedItem:
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > 30:
            raise Invalid("物品名称（name）必须是1到30个字")
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= MAX_AWARD:
            raise Invalid(f"所需积分（cost）必须是1到{MAX_AWARD}之间的整数")
        if isinstance(stock, bool) or not isinstance(stock, int) or not 0 <= stock <= 100_000:
            raise Invalid("库存（stock）必须是0到100000之间的整数")
        now = self._clock()
        number = await self._sequences.next("catalogue")
        item = await self._catalogue.insert(Item(number, name, cost, True, now))
        if stock:
            await self._ledger.post(
                STOCK + str(number),
                stock,
                idem=f"stock-initial:{number}",
                kind="restock",
                reason="初始库存",
                by=actor,
                at=now,
            )
        await self._audit.add(
            actor,
            "catalogue.add",
            f"catalogue/{number}",
            {"name": name, "cost": cost, "stock": stock},
            now,
        )
        return StockedItem(item, stock)

    async def change_item(
        self,
        number: int,
        *,
        actor: str,
        name: str | None = None,
        cost: int | None = None,
        active: bool | None = None,
    ) -> StockedItem:
        if name is not None and (
            not isinstance(name, str) or not name.strip() or len(name.strip()) > 30
        ):
            raise Invalid("物品名称（name）必须是1到30个字")
        if cost is not None and (
            isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= MAX_AWARD
        ):
            raise Invalid(f"所需积分（cost）必须是1到{MAX_AWARD}之间的整数")
        if active is not None and not isinstance(active, bool):
            raise Invalid("active 必须是 true 或 false")

        def apply(item: Item) -> Item:
            return replace(
                item,
                name=name.strip() if name is not None else item.name,
                cost=cost if cost is not None else item.cost,
                active=active if active is not None else item.active,
            )

        try:
            item = await self._catalogue.change(number, apply)
        except KeyError:
            raise NotFound(f"没有编号为 {number} 的兑换物品") from None
        changes = {
            k: v for k, v in (("name", name), ("cost", cost), ("active", active)) if v is not None
        }
        await self._audit.add(
            actor, "catalogue.edit", f"catalogue/{number}", changes, self._clock()
        )
        return StockedItem(item, await self._stock(number))

    async def restock(
        self, number: int, amount: int, reason: str, *, actor: str, key: str | None = None
    ) -> StockedItem:
        """Add (or, negative, take away) stock; ``key`` makes a retried request count once."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise Invalid("数量（amount）必须是非零整数（正数为补货，负数为减少）")
        reason = _reason(reason)
        item = await self._item(number)
        now = self._clock()
        try:
            posting = await self._ledger.post(
                STOCK + str(number),
                amount,
                idem=f"admin:{key}" if key else f"admin:{secrets.token_hex(12)}",
                kind="restock" if amount > 0 else "stock-correction",
                reason=reason,
                by=actor,
                at=now,
            )
        except BelowFloor as exc:
            raise Refused(f"库存只有{exc.head.balance}件，不能减少{-amount}件") from None
        if not posting.created:
            if (posting.entry.amount, posting.entry.reason) != (amount, reason):
                raise Refused("这个幂等键已用于另一笔库存调整，请换一个键")
            return StockedItem(item, await self._stock(number))
        await self._audit.add(
            actor,
            "catalogue.stock",
            f"catalogue/{number}",
            {"amount": amount, "reason": reason},
            now,
        )
        return StockedItem(item, await self._stock(number))

    async def catalogue(self, *, active_only: bool) -> list[StockedItem]:
        items = [i for i in await self._catalogue.all() if i.active or not active_only]
        stocks = await asyncio.gather(*(self._stock(i.number) for i in items))
        return [StockedItem(i, s) for i, s in zip(items, stocks, strict=True)]

    async def top(self, limit: int) -> list[tuple[str, int]]:
        return await self.leaderboard.top(limit)

    # --- redemption ---------------------------------------------------------------

    async def redeem(self, openid: str, number: int) -> Redemption:
        item = await self._item(number)
        if not item.active:
            raise Refused(f"“{item.name}”已下架。")
        head = await self._ledger.head(POINTS + openid)
        if head.balance < item.cost:
            raise NotEnoughPoints(head.balance, item.cost)
        if await self._stock(number) <= 0:
            raise OutOfStock(item.name)
        now = self._clock()
        redemption = Redemption(
            code=await self._new_code(),
            openid=openid,
            item=item.number,
            name=item.name,
            cost=item.cost,
            state=PENDING,
            created_at=now,
            updated_at=now,
        )
        # Recorded before any posting: a crash from here on leaves a pending voucher
        # that resume() finishes, never points taken without a trace.
        await self._redemptions.insert(redemption)
        return await self._settle(redemption)

    async def resume(self, *, older_than: float = 60.0) -> int:
        """Finish redemptions a crash left pending; returns how many were settled.

        Only those pending for ``older_than`` seconds: a younger one is most likely
        still being settled by the request that made it (settling twice is safe,
        only wasteful).
        """
        settled = 0
        cutoff = self._clock() - older_than
        for redemption in await self._redemptions.by_state(PENDING):
            if redemption.created_at > cutoff:
                continue
            with contextlib.suppress(NotEnoughPoints, OutOfStock):
                await self._settle(redemption)
            settled += 1
        return settled

    async def confirm(self, code: str, *, actor: str) -> Redemption:
        """Staff hand the item over against the voucher code."""
        code = code.strip().upper()

        def use(current: Redemption) -> Redemption:
            if current.state == USED:
                raise Refused(f"兑换码 {code} 已经使用过，不能重复兑换")
            if current.state != ISSUED:
                raise Refused(f"兑换码 {code} 无效（{current.note or current.state}）")
            return with_state(current, USED, self._clock(), confirmed_by=actor)

        try:
            used = await self._redemptions.change(code, use)
        except KeyError:
            raise NotFound(f"没有兑换码 {code}") from None
        await self._audit.add(
            actor, "redemption.confirm", f"redemption/{code}", {"item": used.item}, self._clock()
        )
        return used

    async def redemptions(self, state: str) -> list[Redemption]:
        return await self._redemptions.by_state(state)

    async def vouchers_of(self, openid: str) -> list[Redemption]:
        return await self._redemptions.of(openid)

    async def _settle(self, r: Redemption) -> Redemption:
        now = self._clock()
        try:
            await self._ledger.post(
                STOCK + str(r.item),
                -1,
                idem=f"redeem:{r.code}",
                kind="redeem",
                reason=f"兑换 {r.code}",
                by=r.openid,
                at=now,
                ref=f"redemption/{r.code}",
            )
        except BelowFloor:
            await self._finish(r, FAILED, "已兑完")
            raise OutOfStock(r.name) from None
        try:
            await self._ledger.post(
                POINTS + r.openid,
                -r.cost,
                idem=f"redeem:{r.code}",
                kind="redeem",
                reason=f"兑换{r.name}（兑换码 {r.code}）",
                by=r.openid,
                at=now,
                ref=f"redemption/{r.code}",
            )
        except BelowFloor as exc:
            await self._ledger.post(
                STOCK + str(r.item),
                1,
                idem=f"refund:{r.code}",
                kind="refund",
                reason=f"兑换 {r.code} 未成功，退回库存",
                by="system",
                at=now,
                ref=f"redemption/{r.code}",
            )
            await self._finish(r, FAILED, "积分不足")
            raise NotEnoughPoints(exc.head.balance, r.cost) from None
        self.leaderboard.invalidate()
        issued = await self._finish(r, ISSUED, "")
        log.info("%s redeemed item %s: voucher %s", mask(r.openid), r.item, r.code)
        return issued

    async def _finish(self, r: Redemption, state: str, note: str) -> Redemption:
        def apply(current: Redemption) -> Redemption:
            if current.state != PENDING:
                return current
            return with_state(current, state, self._clock(), note=note)

        return await self._redemptions.change(r.code, apply)

    async def _new_code(self) -> str:
        for _ in range(10):
            code = "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(8))
            if await self._redemptions.get(code) is None:
                return code
        raise Refused("暂时无法生成兑换码，请稍后再试")

    async def _item(self, number: int) -> Item:
        item = await self._catalogue.get(number)
        if item is None:
            raise NotFound(f"没有编号为 {number} 的兑换物品")
        return item

    async def _stock(self, number: int) -> int:
        return (await self._ledger.head(STOCK + str(number))).balance


def ranked(top: list[tuple[str, int]]) -> list[tuple[int, str, int]]:
    """``(rank, openid, balance)`` for a leaderboard ordered by balance, highest first.

    Equal balances share a rank (1, 2, 2, 4), as residents see their own rank in 积分.
    """
    rows: list[tuple[int, str, int]] = []
    for position, (openid, balance) in enumerate(top, 1):
        rank = rows[-1][0] if rows and rows[-1][2] == balance else position
        rows.append((rank, openid, balance))
    return rows


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("需要填写原因（reason）")
    if len(reason.strip()) > MAX_REASON:
        raise Invalid(f"原因最多{MAX_REASON}个字")
    return reason.strip()
