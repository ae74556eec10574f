"""The points ledger and redemptions on every backend: append-only, once, never below zero."""

from __future__ import annotations

import asyncio

import pytest

from bot.domain.errors import Invalid
from bot.domain.points import NotEnoughPoints, OutOfStock, PointsDesk
from storage.activities import ISSUED, PENDING, CatalogueRepo, Redemption, RedemptionRepo
from storage.contract import Store
from storage.ledger import BelowFloor, LedgerRepo, entry_key
from storage.repos import AuditRepo, Sequences
from storage.schema import SCHEMA
from tests.storage.conftest import Stores

NOW = 1_790_000_000.0


async def product_store(stores: Stores) -> Store:
    return await stores.open(SCHEMA)


def desk(store: Store) -> PointsDesk:
    return PointsDesk(
        LedgerRepo(store),
        CatalogueRepo(store),
        RedemptionRepo(store),
        Sequences(store),
        AuditRepo(store),
        lambda: NOW,
        leaderboard_ttl=0,
    )


async def post(ledger: LedgerRepo, account: str, amount: int, idem: str) -> None:
    await ledger.post(account, amount, idem=idem, kind="award", reason="测试", by="t", at=NOW)


async def sum_of_entries(ledger: LedgerRepo, account: str) -> int:
    head, entries = await ledger.entries(account, skip=0, limit=10_000)
    assert [e.seq for e in entries] == list(range(head.seq, 0, -1))
    return sum(e.amount for e in entries)


async def test_entries_come_back_newest_first_and_sum_to_the_balance(stores: Stores) -> None:
    ledger = LedgerRepo(await product_store(stores))
    for n, amount in enumerate((10, 5, -3, 20), 1):
        await post(ledger, "pts:o1", amount, f"op{n}")
    head, page = await ledger.entries("pts:o1", skip=1, limit=2)
    assert head.balance == 32 and head.seq == 4
    assert [(e.seq, e.amount, e.balance) for e in page] == [(3, -3, 12), (2, 5, 15)]
    assert await sum_of_entries(ledger, "pts:o1") == 32


async def test_one_operation_posted_twenty_times_at_once_posts_once(stores: Stores) -> None:
    ledger = LedgerRepo(await product_store(stores))
    postings = await asyncio.gather(
        *(
            ledger.post(
                "pts:o1", 10, idem="checkin:1:o1", kind="checkin", reason="签到", by="s", at=NOW
            )
            for _ in range(20)
        )
    )
    assert sum(p.created for p in postings) == 1
    assert {p.entry.seq for p in postings} == {1}
    assert (await ledger.head("pts:o1")).balance == 10


async def test_concurrent_debits_never_take_a_balance_below_zero(stores: Stores) -> None:
    ledger = LedgerRepo(await product_store(stores))
    await post(ledger, "pts:o1", 100, "seed")

    async def spend(n: int) -> bool:
        try:
            await ledger.post(
                "pts:o1", -10, idem=f"spend{n}", kind="redeem", reason="兑换", by="o1", at=NOW
            )
        except BelowFloor:
            return False
        return True

    results = await asyncio.gather(*(spend(n) for n in range(25)))
    assert sum(results) == 10
    assert (await ledger.head("pts:o1")).balance == 0
    assert await sum_of_entries(ledger, "pts:o1") == 0


async def test_a_balance_cache_left_behind_by_a_crash_is_rolled_forward(stores: Stores) -> None:
    store = await product_store(stores)
    ledger = LedgerRepo(store)
    await post(ledger, "pts:o1", 7, "a")
    # As if the process died after appending entry 2 and before updating the cache.
    await store.collection("ledger").insert(
        entry_key("pts:o1", 2),
        {
            "account": "pts:o1",
            "seq": 2,
            "amount": 5,
            "balance": 12,
            "idem": "b",
            "kind": "award",
            "reason": "测试",
            "by": "t",
            "at": NOW,
            "ref": None,
        },
    )
    assert (await store.collection("balances").get("pts:o1")).data["balance"] == 7  # type: ignore[union-attr]
    assert (await ledger.head("pts:o1")).balance == 12
    await post(ledger, "pts:o1", 1, "c")
    assert (await ledger.head("pts:o1")).balance == 13 == await sum_of_entries(ledger, "pts:o1")
    assert (await ledger.balances("pts:")) == {"o1": 13}


async def test_ten_residents_racing_for_three_items_get_three_vouchers(stores: Stores) -> None:
    points = desk(await product_store(stores))
    item = await points.add_item("环保袋", 10, 3, actor="王主任")
    for n in range(10):
        await points.adjust(f"o{n}", 30, "活动奖励", actor="王主任")

    async def redeem(n: int) -> Redemption | None:
        try:
            return await points.redeem(f"o{n}", item.item.number)
        except OutOfStock:
            return None

    vouchers = [v for v in await asyncio.gather(*(redeem(n) for n in range(10))) if v]
    assert len(vouchers) == 3 and all(v.state == ISSUED for v in vouchers)
    [stocked] = await points.catalogue(active_only=False)
    assert stocked.stock == 0
    winners = {v.openid for v in vouchers}
    for n in range(10):
        assert await points.balance(f"o{n}") == (20 if f"o{n}" in winners else 30)


async def test_one_resident_redeeming_at_once_never_overdraws(stores: Stores) -> None:
    points = desk(await product_store(stores))
    item = await points.add_item("毛巾", 10, 100, actor="王主任")
    await points.adjust("o1", 25, "奖励", actor="王主任")

    async def redeem() -> bool:
        try:
            await points.redeem("o1", item.item.number)
        except NotEnoughPoints:
            return False
        return True

    results = await asyncio.gather(*(redeem() for _ in range(6)))
    assert sum(results) == 2
    assert await points.balance("o1") == 5
    [stocked] = await points.catalogue(active_only=False)
    assert stocked.stock == 98  # the refused ones gave their unit back


async def test_a_redemption_a_crash_left_pending_is_finished_once(stores: Stores) -> None:
    store = await product_store(stores)
    points = desk(store)
    item = await points.add_item("雨伞", 20, 5, actor="王主任")
    await points.adjust("o1", 50, "奖励", actor="王主任")
    ledger = LedgerRepo(store)
    # The crash: the voucher was recorded and the stock taken, the points not yet.
    pending = Redemption(
        "CRASHED2", "o1", item.item.number, "雨伞", 20, PENDING, NOW - 600, NOW - 600
    )
    await RedemptionRepo(store).insert(pending)
    await ledger.post(
        f"stock:{item.item.number}",
        -1,
        idem="redeem:CRASHED2",
        kind="redeem",
        reason="兑换",
        by="o1",
        at=NOW,
    )
    assert await points.resume() == 1
    assert await points.resume() == 0
    assert await points.balance("o1") == 30
    [stocked] = await points.catalogue(active_only=False)
    assert stocked.stock == 4
    assert (await RedemptionRepo(store).get("CRASHED2")).state == ISSUED  # type: ignore[union-attr]


@pytest.mark.parametrize("amount", [0, 10_001, -10_001])
async def test_an_award_out_of_bounds_is_refused(stores: Stores, amount: int) -> None:
    points = desk(await product_store(stores))
    with pytest.raises(Invalid, match=r"amount|一次最多"):
        await points.adjust("o1", amount, "奖励", actor="王主任")
    assert await points.balance("o1") == 0
