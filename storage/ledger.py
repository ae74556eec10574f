"""An append-only ledger of accounts (points, stock) on the one-record contract.

Each entry is its own record, keyed ``account:seq`` with a per-account sequence,
and carries the balance after it. Inserting ``seq + 1`` is the one atomic step of
a posting: two concurrent postings to one account race for the same key, one
wins, the other re-reads and tries again against the new balance, so a floor
(never below zero) holds under any concurrency, in any number of processes.
The entry's ``(account, idem)`` pair has a unique index, so the same operation (a
check-in, a redemption) posts once to each account however often it is retried.

``balances`` holds each account's last ``seq`` and balance as a cache. It is
written after the entry, so a crash between the two leaves it behind; every read
rolls it forward from the ledger, so the balance shown always equals the sum of
the entries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import ConflictError
from storage.contract import MAX_UPDATE_ATTEMPTS, Record, Store


@dataclass(frozen=True, slots=True)
class Entry:
    account: str
    seq: int
    amount: int
    balance: int
    idem: str
    kind: str
    reason: str
    by: str
    at: float
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Head:
    """An account's position: how many entries it has and its balance after the last."""

    account: str
    seq: int
    balance: int


@dataclass(frozen=True, slots=True)
class Posting:
    entry: Entry
    created: bool
    """False when the idempotency key had already posted: ``entry`` is that earlier entry."""


class BelowFloor(Exception):
    """The posting would take the balance below the floor; nothing was written."""

    def __init__(self, head: Head, amount: int) -> None:
        super().__init__(f"{head.account}: balance {head.balance} cannot take {amount}")
        self.head = head
        self.amount = amount


def entry_key(account: str, seq: int) -> str:
    return f"{account}:{seq:010d}"


def _entry(record: Record) -> Entry:
    d = record.data
    return Entry(
        d["account"],
        int(d["seq"]),
        int(d["amount"]),
        int(d["balance"]),
        d["idem"],
        d["kind"],
        d["reason"],
        d["by"],
        d["at"],
        d.get("ref"),
    )


class _Stale(Exception):
    pass


class LedgerRepo:
    def __init__(self, store: Store) -> None:
        self._entries = store.collection("ledger")
        self._heads = store.collection("balances")

    async def by_idem(self, account: str, idem: str) -> Entry | None:
        found = await self._entries.find("by_idem", (account, idem), limit=1)
        return _entry(found[0]) if found else None

    async def head(self, account: str) -> Head:
        """The account's position, rolled forward past entries the cache has not seen."""
        cached = await self._heads.get(account)
        seq = int(cached.data["seq"]) if cached else 0
        balance = int(cached.data["balance"]) if cached else 0
        moved = False
        while (ahead := await self._entries.get(entry_key(account, seq + 1))) is not None:
            seq, balance, moved = seq + 1, int(ahead.data["balance"]), True
        if moved:
            await self._advance(account, seq, balance)
        return Head(account, seq, balance)

    async def post(
        self,
        account: str,
        amount: int,
        *,
        idem: str,
        kind: str,
        reason: str,
        by: str,
        at: float,
        ref: str | None = None,
        floor: int | None = 0,
    ) -> Posting:
        """Append one entry; :class:`BelowFloor` if it would end under ``floor``.

        ``floor=None`` allows any balance (a correction staff make knowingly).
        """
        earlier = await self.by_idem(account, idem)
        if earlier is not None:
            return Posting(earlier, False)
        for _ in range(MAX_UPDATE_ATTEMPTS):
            head = await self.head(account)
            balance = head.balance + amount
            if floor is not None and amount < 0 and balance < floor:
                raise BelowFloor(head, amount)
            seq = head.seq + 1
            doc: dict[str, Any] = {
                "account": account,
                "seq": seq,
                "amount": amount,
                "balance": balance,
                "idem": idem,
                "kind": kind,
                "reason": reason,
                "by": by,
                "at": at,
                "ref": ref,
            }
            try:
                record = await self._entries.insert(entry_key(account, seq), doc)
            except ConflictError:
                # Either another posting took this seq (try again on the new head),
                # or this very operation has just been posted by someone else.
                earlier = await self.by_idem(account, idem)
                if earlier is not None:
                    return Posting(earlier, False)
                continue
            await self._advance(account, seq, balance)
            return Posting(_entry(record), True)
        raise ConflictError(f"ledger account {account} stayed contended")

    async def entries(self, account: str, *, skip: int, limit: int) -> tuple[Head, list[Entry]]:
        """Newest first: the entries after skipping the ``skip`` newest."""
        head = await self.head(account)
        last = head.seq - skip
        seqs = range(last, max(last - limit, 0), -1)
        records = await asyncio.gather(*(self._entries.get(entry_key(account, s)) for s in seqs))
        return head, [_entry(r) for r in records if r is not None]

    async def balances(self, prefix: str, *, page: int = 2000) -> Mapping[str, int]:
        """Every cached balance of accounts starting with ``prefix`` (leaderboards)."""
        found: dict[str, int] = {}
        after: str | None = prefix
        while True:
            records = await self._heads.scan(after=after, limit=page)
            for record in records:
                if not record.key.startswith(prefix):
                    return found
                found[record.key[len(prefix) :]] = int(record.data["balance"])
            if len(records) < page:
                return found
            after = records[-1].key

    async def _advance(self, account: str, seq: int, balance: int) -> None:
        def forward(current: Record | None) -> dict[str, Any]:
            if current is not None and int(current.data["seq"]) >= seq:
                raise _Stale
            return {"seq": seq, "balance": balance}

        with contextlib.suppress(_Stale):
            await self._heads.update(account, forward)
