"""Per-operation cost of the storage backends as the data grows.

For each size, a fresh store is filled with residents (key: openid), conversation
states for 20 % of them, and a bench-only ``ledger`` collection (indexed by openid)
holding 10 entries for each of 10 % of the residents, so rows = 1.3 x residents.
Then simulated messages run, one task at a time (seq) and ten at once (c10). Each
message does what a handler does:

  resident get       residents.get(openid)
  state read         conversations.get(openid)
  state write        conversations.put(openid, ...)
  points balance     ledger.find("by_openid", [openid], limit=20), summed  (every 2nd)
  ledger append      ledger.insert(new key, ...)                           (every 4th)

and the latency of each call is recorded (µs, as the caller sees it, after a
warm-up). Sizes: PostgreSQL 10k / 100k / 1M residents, TinyDB 1k / 10k / 100k.
The last table is, per backend and op, p50 and p99 at the largest size divided by
the same at the smallest: the goal on PostgreSQL is <= 1.5 (cost does not grow
with the data).

Filling: PostgreSQL through ``PostgresStore.load`` (COPY into a temporary table,
then one INSERT ... SELECT per 50k rows, two batches at a time) into a fresh schema
that is dropped afterwards, then VACUUM ANALYZE and CHECKPOINT so the measurement
starts from a settled table; TinyDB by writing each collection's snapshot with the
store's own ``write_snapshot`` into a fresh temporary directory, then opening it.

Usage: python bench/storage.py [--backend tinydb|postgres|both] [--quick] [--json PATH]
PostgreSQL: GONGZHI_BENCH_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Ahead of bench/ itself, whose storage.py (this file) would shadow the package.
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from storage.contract import CollectionSpec, IndexSpec, Record, Store  # noqa: E402
from storage.postgres_store import PostgresStore  # noqa: E402
from storage.schema import SCHEMA  # noqa: E402
from storage.tinydb_journal import write_snapshot  # noqa: E402
from storage.tinydb_store import TinyDBStore  # noqa: E402

PG_DSN = os.environ.get("GONGZHI_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
LEDGER = CollectionSpec("ledger", indexes=(IndexSpec("by_openid", ("openid",)),))
BENCH_SCHEMA = (*SCHEMA, LEDGER)
OPS = ("resident get", "state read", "state write", "points balance", "ledger append")
LOAD_BATCH = 50_000
LOAD_PARALLEL = 2
CONCURRENCY = 10


@dataclass(frozen=True)
class Plan:
    pg_sizes: tuple[int, ...]
    tinydb_sizes: tuple[int, ...]
    warmup_s: float
    phase_s: float
    seq_messages: int
    c10_messages: int


FULL = Plan((10_000, 100_000, 1_000_000), (1_000, 10_000, 100_000), 2.0, 8.0, 3_000, 8_000)
QUICK = Plan((5_000, 50_000), (1_000, 10_000), 0.5, 2.0, 600, 1_500)


def openid(n: int) -> str:
    """A 28-character openid, like WeChat's."""
    return f"oBench{n:022d}"


def has_state(n: int) -> bool:
    return n % 5 == 0


def has_ledger(n: int) -> bool:
    return n % 10 == 0


def fill_records(name: str, residents: int) -> Iterator[Record]:
    now = 1_760_000_000
    if name == "residents":
        for n in range(residents):
            yield Record(
                openid(n),
                1,
                {"subscribed": n % 7 != 0, "first_seen": now - n, "last_seen": now},
            )
    elif name == "conversations":
        for n in range(0, residents, 5):
            yield Record(
                openid(n),
                1,
                {"state": "report:location", "data": {"text": "东门路灯坏了"}, "updated_at": now},
            )
    elif name == "ledger":
        for n in range(0, residents, 10):
            for entry in range(10):
                yield Record(
                    f"{openid(n)}:{entry:04d}",
                    1,
                    {"openid": openid(n), "points": 1 + entry % 5, "reason": "留言", "at": now},
                )


def batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- the workload -----------------------------------------------------------------------


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    messages: int = 0
    seconds: float = 0.0


async def timed(samples: Samples | None, op: str, call: Awaitable[Any]) -> Any:
    started = time.perf_counter()
    result = await call
    if samples is not None:
        samples.latencies[op].append(time.perf_counter() - started)
    return result


async def run_messages(
    store: Store, residents: int, tasks: int, seconds: float, messages: int, tag: str
) -> Samples:
    """``tasks`` concurrent residents' messages until ``messages`` or ``seconds`` run out."""
    samples = Samples()
    residents_c = store.collection("residents")
    conversations = store.collection("conversations")
    ledger = store.collection("ledger")
    deadline = time.perf_counter() + seconds
    counter = iter(range(messages))

    async def worker(task: int) -> None:
        rng = random.Random(f"{tag}-{task}")
        for step in counter:
            if time.perf_counter() > deadline:
                return
            n = rng.randrange(residents)
            await timed(samples, "resident get", residents_c.get(openid(n)))
            stateful = openid(n - n % 5)
            await timed(samples, "state read", conversations.get(stateful))
            doc = {"state": "report:photo", "data": {"step": step}, "updated_at": time.time()}
            await timed(samples, "state write", conversations.put(stateful, doc))
            holder = openid(n - n % 10)
            if step % 2 == 0:
                entries = await timed(
                    samples, "points balance", ledger.find("by_openid", [holder], limit=20)
                )
                sum(record.data["points"] for record in entries)
            if step % 4 == 0:
                key = f"{holder}:{tag}-{task}-{step}"
                entry = {"openid": holder, "points": 1, "reason": "bench", "at": time.time()}
                await timed(samples, "ledger append", ledger.insert(key, entry))
            samples.messages += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(task) for task in range(tasks)))
    samples.seconds = time.perf_counter() - started
    return samples


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Row:
    backend: str
    size: int
    mode: str
    op: str
    count: int
    p50_us: float
    p99_us: float


async def measure(store: Store, backend: str, size: int, plan: Plan) -> list[Row]:
    rows = []
    for mode, tasks, budget in (
        ("seq", 1, plan.seq_messages),
        (f"c{CONCURRENCY}", CONCURRENCY, plan.c10_messages),
    ):
        tag = f"{backend}-{size}-{mode}-{uuid.uuid4().hex[:6]}"
        await run_messages(store, size, tasks, plan.warmup_s, budget, tag + "-warm")
        samples = await run_messages(store, size, tasks, plan.phase_s, budget, tag)
        print(
            f"  {mode}: {samples.messages} messages in {samples.seconds:.1f} s "
            f"({samples.messages / samples.seconds:.0f} msg/s)",
            flush=True,
        )
        for op in OPS:
            values = samples.latencies[op]
            if values:
                rows.append(
                    Row(
                        backend,
                        size,
                        mode,
                        op,
                        len(values),
                        quantile(values, 0.5) * 1e6,
                        quantile(values, 0.99) * 1e6,
                    )
                )
    return rows


# --- backends -----------------------------------------------------------------------------


async def bench_postgres(size: int, plan: Plan) -> list[Row]:
    namespace = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_DSN, timeout=10, command_timeout=600)
    try:
        await admin.execute(f'CREATE SCHEMA "{namespace}"')
        await admin.execute(f'SET search_path = "{namespace}"')
        store = PostgresStore(PG_DSN, BENCH_SCHEMA, namespace=namespace, pool_size=CONCURRENCY)
        await store.open()
        try:
            started = time.perf_counter()
            total = 0
            gate = asyncio.Semaphore(LOAD_PARALLEL)

            async def load(name: str, batch: list[Record]) -> int:
                async with gate:
                    return await store.load(name, batch, timeout=600)

            for name in ("residents", "conversations", "ledger"):
                pending: set[asyncio.Task[int]] = set()
                for batch in batches(fill_records(name, size), LOAD_BATCH):
                    if len(pending) >= LOAD_PARALLEL:
                        done, pending = await asyncio.wait(
                            pending, return_when=asyncio.FIRST_COMPLETED
                        )
                        total += sum(task.result() for task in done)
                    pending.add(asyncio.create_task(load(name, batch)))
                total += sum(await asyncio.gather(*pending))
            filled = time.perf_counter() - started
            await admin.execute("VACUUM ANALYZE records")
            await admin.execute("CHECKPOINT")
            table_mb = await admin.fetchval("SELECT pg_total_relation_size('records')") / 2**20
            print(
                f"postgres {size:>9,} residents: {total:,} rows loaded in {filled:.1f} s, "
                f"settled in {time.perf_counter() - started - filled:.1f} s, "
                f"table+indexes {table_mb:.0f} MB",
                flush=True,
            )
            return await measure(store, "postgres", size, plan)
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        await admin.close()


async def bench_tinydb(size: int, plan: Plan) -> list[Row]:
    directory = Path(tempfile.mkdtemp(prefix="gongzhi-bench-tinydb-"))
    try:
        started = time.perf_counter()
        total = 0
        for spec in BENCH_SCHEMA:
            records = list(fill_records(spec.name, size))
            total += len(records)
            await asyncio.to_thread(write_snapshot, directory, spec.name, 0, records)
        written = time.perf_counter() - started
        store = TinyDBStore(directory, BENCH_SCHEMA)
        await store.open()
        try:
            print(
                f"tinydb   {size:>9,} residents: {total:,} records written in {written:.1f} s, "
                f"opened in {time.perf_counter() - started - written:.1f} s",
                flush=True,
            )
            return await measure(store, "tinydb", size, plan)
        finally:
            await store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- report -------------------------------------------------------------------------------


def report(rows: list[Row]) -> list[dict[str, Any]]:
    print()
    print(
        f"{'backend':9} {'residents':>10} {'mode':5} {'op':15} {'n':>6} {'p50 µs':>8} {'p99 µs':>8}"
    )
    for row in rows:
        print(
            f"{row.backend:9} {row.size:>10,} {row.mode:5} {row.op:15} {row.count:>6} "
            f"{row.p50_us:>8.0f} {row.p99_us:>8.0f}"
        )
    print()
    print("largest / smallest size (goal on postgres: <= 1.5)")
    print(f"{'backend':9} {'mode':5} {'op':15} {'sizes':>17} {'p50 x':>6} {'p99 x':>6}")
    ratios = []
    for backend in dict.fromkeys(row.backend for row in rows):
        mine = [row for row in rows if row.backend == backend]
        small, large = min(row.size for row in mine), max(row.size for row in mine)
        for mode in dict.fromkeys(row.mode for row in mine):
            for op in OPS:
                pick = {row.size: row for row in mine if row.mode == mode and row.op == op}
                if small not in pick or large not in pick or small == large:
                    continue
                p50 = pick[large].p50_us / pick[small].p50_us
                p99 = pick[large].p99_us / pick[small].p99_us
                verdict = ""
                if backend == "postgres":
                    verdict = "ok" if max(p50, p99) <= 1.5 else "over 1.5"
                print(
                    f"{backend:9} {mode:5} {op:15} {f'{large:,}/{small:,}':>17} "
                    f"{p50:>6.2f} {p99:>6.2f}  {verdict}"
                )
                ratios.append({"backend": backend, "mode": mode, "op": op, "p50": p50, "p99": p99})
    return ratios


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("tinydb", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter phases")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    rows: list[Row] = []
    runs: list[tuple[Callable[[int, Plan], Awaitable[list[Row]]], tuple[int, ...]]] = []
    if args.backend in ("postgres", "both"):
        runs.append((bench_postgres, plan.pg_sizes))
    if args.backend in ("tinydb", "both"):
        runs.append((bench_tinydb, plan.tinydb_sizes))
    for bench, sizes in runs:
        for size in sizes:
            rows.extend(await bench(size, plan))
    ratios = report(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        figures = {"rows": [row.__dict__ for row in rows], "ratios": ratios}
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
