"""Volunteer sign-ups per second through the webhook, for a 100,000-resident community.

Configurations (real server processes, ``python -m bot serve --config ...``, plaintext mode,
unpinned: the server, the load generator and PostgreSQL share the machine's cores):
  tinydb        the embedded store, one process
  pg-1p         PostgreSQL, one process (per-resident locks and retry records in PostgreSQL)
  pg-redis-2p   PostgreSQL and Redis, ``serve --workers 2`` (SO_REUSEPORT)

Each configuration gets its own community, prepared before its server starts:
  - --residents residents (subscribed);
  - a history: every 10th resident signed up for 1-5 of 40 past activities and checked in to
    about two thirds of them, so ``signups`` records, ledger entries (``pts:<openid>:<seq>``,
    the check-in postings) and balance heads (``pts:<openid>``) exist, and the past
    activities' records hold their rosters and check-ins, as the server wrote them, and
    are closed (``done``), as the scheduler leaves them;
  - 20 open upcoming activities, from 2 days ahead (no reminder falls due during the run):
    the list shows the 9 soonest: 8 with room for every measured sign-up, and one with 10
    places, already full, so its sign-ups go to the waitlist (every 40th conversation, at
    most WAITLIST_CAP of them).
PostgreSQL is filled with ``PostgresStore.load`` into a fresh schema (dropped afterwards)
and then VACUUM ANALYZEd; TinyDB by writing each collection's snapshot with the store's
own ``write_snapshot`` into a fresh temporary directory.

A sign-up is a whole conversation of one resident, three signed plaintext messages to
``POST /wechat``: "报名" (the list: the resident finds the activity's number by its title),
the number (the details), "1" (confirm). The final reply must say 报名成功 (or, for the
full activity, 候补); anything else is counted and shown as a failure. --concurrency
conversations run at once, each from a distinct resident who signs up once. The client is
aiohttp in this process: wrk cannot hold a conversation's state.

Rounds interleave the configurations (every server stays up across rounds, with fresh
residents each round). Every configuration runs the same number of conversations per
round, so their rosters grow alike and a round compares like with like. Reported per
configuration: sign-ups/s (completed conversations per second), requests/s, p50/p99 of a
whole conversation and of one request, and the server processes' CPU per sign-up
(PostgreSQL's and Redis's own CPU not included). Ratios against tinydb are taken per round
(each round saw one machine state), then the median.

After the rounds each store is checked: the rosters hold exactly the sign-ups the client
saw confirmed or waitlisted.

Usage: python bench/signups.py [--quick] [--rounds 5] [--per-round 2000] [--json PATH]
PostgreSQL: GONGZHI_BENCH_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test);
Redis: GONGZHI_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from fill import PG_DSN, fill_postgres, fill_tinydb  # noqa: E402
from procstat import (  # noqa: E402
    Failure,
    cpu_seconds,
    free_port,
    quantile,
    server_log_problems,
    wait_until_up,
)

from bot.wechat.replies import cdata  # noqa: E402
from bot.wechat.signature import url_signature  # noqa: E402
from storage.activities import DONE, OPEN, Activity, ActivityRepo, activity_key  # noqa: E402
from storage.contract import Record, Store  # noqa: E402
from storage.ledger import entry_key  # noqa: E402
from storage.postgres_store import PostgresStore  # noqa: E402
from storage.schema import SCHEMA  # noqa: E402
from storage.tinydb_store import TinyDBStore  # noqa: E402

TOKEN = "benchToken2026"
APP_ID = "wx1234567890abcdef"
REDIS_URL = os.environ.get("GONGZHI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONFIGS = ("tinydb", "pg-1p", "pg-redis-2p")
LABELS = {
    "tinydb": "TinyDB, 1 process",
    "pg-1p": "PostgreSQL, 1 process",
    "pg-redis-2p": "PostgreSQL + Redis, 2 processes",
}

PAST_ACTIVITIES = 40
UPCOMING_ACTIVITIES = 20
BIG_CAPACITY = 2000  # the admin API's maximum; more than the measured sign-ups need
SMALL_CAPACITY = 10
SMALL_POSITION = 3  # the full activity is the 3rd soonest, so it is on the list
SMALL_EVERY = 40  # every 40th conversation asks for the full activity
WAITLIST_CAP = 150  # below the server's default waitlist_max (200)
VISIBLE = 9  # the list shows the 9 soonest activities (handlers/volunteer.py LIST_SIZE)
DAY = 86_400.0
TITLES = ("夜间安全巡逻", "缝纫课助教", "公益讲座服务", "垃圾分类督导", "助老上门探访")
PLACES = ("清源社区东门", "社区活动中心二楼", "清源社区文化广场", "邻里中心")
STEPS = ("list", "details", "confirm")  # 报名, the number, 1
LIST_ITEM = re.compile(r"^(\d+)\. (.+)$")


def openid(n: int) -> str:
    """A 28-character openid, like WeChat's."""
    return f"oSignup{n:021d}"


# --- the community ----------------------------------------------------------------------


@dataclass(frozen=True)
class Community:
    residents: int
    now: float
    past: list[Activity]
    upcoming: list[Activity]  # soonest first
    small: Activity
    records: dict[str, list[Record]]  # collection -> records

    @property
    def big_titles(self) -> list[str]:
        """The titles a resident can pick from the list (the soonest ones) that have room."""
        shown = self.upcoming[:VISIBLE]
        return [a.title for a in shown if a.number != self.small.number]


def past_activity(i: int, now: float) -> Activity:
    starts = now - (PAST_ACTIVITIES - i) * 4 * DAY - 5 * 3600
    return Activity(
        number=i + 1,
        title=f"{TITLES[i % len(TITLES)]}（第{i // len(TITLES) + 1}期）",
        place=PLACES[i % len(PLACES)],
        starts_at=starts,
        ends_at=starts + 2 * 3600,
        capacity=BIG_CAPACITY,
        points=5 + 5 * (i % 3),
        remind_before=DAY,
        created_at=starts - 14 * DAY,
        created_by="admin",
        reminded_at=starts - DAY,
        status=DONE,  # as the scheduler leaves a finished activity
    )


def history_of(n: int) -> list[int]:
    """Indexes of the past activities resident ``n`` signed up for (every 10th resident)."""
    if n % 10:
        return []
    h = (n // 10) * 7919
    return sorted({(h + j * 13) % PAST_ACTIVITIES for j in range(1 + (n // 10) % 5)})


def build_community(residents: int, now: float) -> Community:
    records: dict[str, list[Record]] = {
        name: []
        for name in ("residents", "signups", "ledger", "balances", "activities", "counters")
    }
    hour = now - now % 3600  # activities start on the hour
    past = [past_activity(i, hour) for i in range(PAST_ACTIVITIES)]
    members: list[list[str]] = [[] for _ in past]
    checked: list[dict[str, float]] = [{} for _ in past]
    for n in range(residents):
        oid = openid(n)
        records["residents"].append(
            Record(
                oid,
                1,
                {"subscribed": True, "first_seen": now - 400 * DAY + n, "last_seen": now - n % 90},
            )
        )
        seq = balance = 0
        for i in history_of(n):
            a = past[i]
            members[i].append(oid)
            records["signups"].append(
                Record(
                    f"{oid}:{activity_key(a.number)}",
                    1,
                    {
                        "openid": oid,
                        "activity": a.number,
                        "status": "confirmed",
                        "title": a.title,
                        "starts_at": a.starts_at,
                        "ends_at": a.ends_at,
                        "at": a.created_at + 3600,
                    },
                )
            )
            if (n // 10 + i) % 3 == 0:
                continue  # signed up, did not turn up
            at = a.starts_at + 600
            checked[i][oid] = at
            seq, balance = seq + 1, balance + a.points
            account = f"pts:{oid}"
            records["ledger"].append(
                Record(
                    entry_key(account, seq),
                    1,
                    {
                        "account": account,
                        "seq": seq,
                        "amount": a.points,
                        "balance": balance,
                        "idem": f"checkin:{a.number}:{oid}",
                        "kind": "checkin",
                        "reason": f"志愿活动签到：{a.title}",
                        "by": "system",
                        "at": at,
                        "ref": f"activity/{a.number}",
                    },
                )
            )
        if seq:
            records["balances"].append(Record(f"pts:{oid}", 1, {"seq": seq, "balance": balance}))
    full_past = []
    for i, a in enumerate(past):
        if len(members[i]) > a.capacity:
            raise RuntimeError(f"past activity {a.number} would be oversold")
        full_past.append(replace(a, members=tuple(members[i]), checked_in=checked[i]))
    upcoming = []
    for j in range(UPCOMING_ACTIVITIES):
        number = PAST_ACTIVITIES + j + 1
        starts = hour + 2 * DAY + j * 13 * 3600
        small = j == SMALL_POSITION - 1
        upcoming.append(
            Activity(
                number=number,
                title=f"{TITLES[j % len(TITLES)]}（第{j // len(TITLES) + 9}期）"
                if not small
                else "手工缝纫小班",
                place=PLACES[j % len(PLACES)],
                starts_at=starts,
                ends_at=starts + 2 * 3600,
                capacity=SMALL_CAPACITY if small else BIG_CAPACITY,
                points=10,
                remind_before=DAY,
                description="请提前十分钟到场，穿着方便活动的衣服。",
                created_at=now - 3 * DAY,
                created_by="admin",
                # The full activity's places went to residents who are never measured.
                members=tuple(openid(m) for m in range(1, SMALL_CAPACITY + 1)) if small else (),
            )
        )
    small_activity = upcoming[SMALL_POSITION - 1]
    for oid in small_activity.members:
        records["signups"].append(
            Record(
                f"{oid}:{activity_key(small_activity.number)}",
                1,
                {
                    "openid": oid,
                    "activity": small_activity.number,
                    "status": "confirmed",
                    "title": small_activity.title,
                    "starts_at": small_activity.starts_at,
                    "ends_at": small_activity.ends_at,
                    "at": now - DAY,
                },
            )
        )
    for a in (*full_past, *upcoming):
        records["activities"].append(Record(activity_key(a.number), 1, a.to_doc()))
    records["counters"].append(
        Record("activity", 1, {"value": PAST_ACTIVITIES + UPCOMING_ACTIVITIES})
    )
    return Community(residents, now, full_past, upcoming, small_activity, records)


# --- a server -----------------------------------------------------------------------------


# --- the conversations --------------------------------------------------------------------


@dataclass
class Batch:
    """One configuration's conversations in one round (or its warm-up)."""

    conversations: int = 0
    confirmed: int = 0
    waitlisted: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    conversation_s: list[float] = field(default_factory=list)
    request_s: list[float] = field(default_factory=list)
    step_s: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    failures: list[Failure] = field(default_factory=list)
    list_bytes: int = 0


class Target:
    """One configuration: its community, its server, its residents' queue."""

    def __init__(self, name: str, workdir: Path, residents: int) -> None:
        self.name = name
        self.port = free_port()
        self.tag = uuid.uuid4().hex[:8]
        self.pg_schema = f"bench_signups_{self.tag}_{name.replace('-', '_')}"
        self.redis_prefix = f"gongzhi-bench-{self.tag}:"
        self.data = workdir / f"data-{name}"
        self.config = workdir / f"{name}.toml"
        self.log = workdir / f"{name}.log"
        self.residents = residents
        self.proc: subprocess.Popen[bytes] | None = None
        self.community: Community | None = None
        self.schema_created = False
        self.next_conversation = 0
        self.small_asked = 0
        self.batches: list[Batch] = []  # the measured rounds
        self.all_batches: list[Batch] = []  # with the warm-up
        order = [n for n in range(residents) if not 1 <= n <= SMALL_CAPACITY]
        random.Random(2026).shuffle(order)
        self.order = order

    @property
    def postgres(self) -> bool:
        return self.name.startswith("pg-")

    async def prepare(self) -> None:
        now = time.time()
        community = await asyncio.to_thread(build_community, self.residents, now)
        self.community = community
        rows = sum(len(r) for r in community.records.values())
        if self.postgres:
            self.schema_created = True
            seconds = await fill_postgres(self.pg_schema, community.records)
        else:
            self.data.mkdir()
            seconds = await asyncio.to_thread(fill_tinydb, self.data, community.records)
        print(
            f"  {self.name}: {self.residents:,} residents, {rows:,} records "
            f"(signups {len(community.records['signups']):,}, "
            f"ledger {len(community.records['ledger']):,}, "
            f"balances {len(community.records['balances']):,}) written in {seconds:.1f} s",
            flush=True,
        )

    def start(self) -> None:
        storage = f'[storage]\npath = "{self.data}"\n'
        if self.postgres:
            storage = (
                f'[storage]\nbackend = "postgres"\ndsn = "{PG_DSN}"\n'
                f'pg_schema = "{self.pg_schema}"\n'
            )
        if self.name == "pg-redis-2p":
            storage += f'[redis]\nurl = "{REDIS_URL}"\nprefix = "{self.redis_prefix}"\n'
        self.config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'[wechat]\napp_id = "{APP_ID}"\napp_secret = "x"\ntoken = "{TOKEN}"\n'
            'encoding_aes_key = ""\napi_base_url = "http://127.0.0.1:9"\n'
            "check_at_start = false\n"
            f'{storage}[log]\nlevel = "WARNING"\n'
        )
        cmd = [sys.executable, "-m", "bot", "serve", "--config", str(self.config)]
        if self.name == "pg-redis-2p":
            cmd += ["--workers", "2"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.config.parent, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until_up(self.port, self.proc, 120)

    def plan(self, count: int) -> list[tuple[int, str, str]]:
        """The next ``count`` conversations: (index, resident, title of the wanted activity)."""
        assert self.community is not None
        big = self.community.big_titles
        out = []
        for _ in range(count):
            i = self.next_conversation
            self.next_conversation += 1
            if i >= len(self.order):
                raise RuntimeError(f"{self.name}: out of fresh residents after {i} conversations")
            if i % SMALL_EVERY == SMALL_EVERY - 1 and self.small_asked < WAITLIST_CAP:
                self.small_asked += 1
                title = self.community.small.title
            else:
                title = big[i % len(big)]
            out.append((i, openid(self.order[i]), title))
        return out

    async def run(
        self, session: aiohttp.ClientSession, count: int, concurrency: int, *, measured: bool
    ) -> Batch:
        assert self.proc is not None and self.community is not None
        batch = Batch()
        plan = iter(self.plan(count))
        url = f"http://127.0.0.1:{self.port}/wechat"
        small_title = self.community.small.title

        async def worker() -> None:
            for i, oid, title in plan:
                started = time.perf_counter()
                outcome = await converse(session, url, i, oid, title, small_title, batch)
                if outcome is None:
                    continue
                batch.conversation_s.append(time.perf_counter() - started)
                batch.conversations += 1
                if outcome == "confirmed":
                    batch.confirmed += 1
                else:
                    batch.waitlisted += 1

        cpu_before = cpu_seconds(self.proc.pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        batch.seconds = time.perf_counter() - started
        batch.cpu_s = cpu_seconds(self.proc.pid) - cpu_before
        self.all_batches.append(batch)
        if measured:
            self.batches.append(batch)
        return batch

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                print(f"  warning: {self.name} did not stop within 40 s; killing it")
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def verify(self) -> list[str]:
        """Compare the stored rosters with what the client saw; return the discrepancies."""
        assert self.community is not None
        store: Store
        if self.postgres:
            store = PostgresStore(PG_DSN, SCHEMA, namespace=self.pg_schema, pool_size=2)
        else:
            store = TinyDBStore(self.data, SCHEMA)
        await store.open()
        try:
            activities = {a.number: a for a in await ActivityRepo(store).by_status(OPEN)}
            signups = await store.collection("signups").size()
        finally:
            await store.close()
        confirmed = sum(b.confirmed for b in self.all_batches)
        waitlisted = sum(b.waitlisted for b in self.all_batches)
        small = activities[self.community.small.number]
        big = [
            activities[a.number] for a in self.community.upcoming if a is not self.community.small
        ]
        members = sum(len(a.members) for a in big)
        problems = []
        if members != confirmed:
            problems.append(
                f"rosters hold {members} sign-ups, the client saw {confirmed} confirmed"
            )
        if len(small.members) != SMALL_CAPACITY:
            problems.append(f"the full activity has {len(small.members)} members")
        if len(small.waitlist) != waitlisted:
            problems.append(
                f"the waitlist holds {len(small.waitlist)}, the client saw {waitlisted} waitlisted"
            )
        for a in [*big, small]:
            if len(set(a.members)) != len(a.members) or len(a.members) > a.capacity:
                problems.append(f"activity {a.number}: roster duplicated or oversold")
        expected = len(self.community.records["signups"]) + confirmed + waitlisted
        if signups != expected:
            problems.append(f"signups holds {signups} records, expected {expected}")
        return problems

    async def cleanup(self) -> None:
        if self.schema_created:
            conn = await asyncpg.connect(PG_DSN, timeout=10, command_timeout=120)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.pg_schema}" CASCADE')
            finally:
                await conn.close()
        if self.name == "pg-redis-2p":
            client = aioredis.from_url(REDIS_URL)
            try:
                keys = [k async for k in client.scan_iter(match=f"{self.redis_prefix}*")]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()


async def post(
    session: aiohttp.ClientSession,
    url: str,
    oid: str,
    text: str,
    msg_id: int,
    batch: Batch,
    step: str,
) -> tuple[int, str]:
    """One signed plaintext text message, as WeChat sends it; returns (status, reply text)."""
    timestamp = str(int(time.time()))
    nonce = str(secrets.randbelow(10**9))
    params = {
        "signature": url_signature(TOKEN, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": oid,
    }
    body = (
        f"<xml><ToUserName>{cdata('gh_gongzhi_bench')}</ToUserName>"
        f"<FromUserName>{cdata(oid)}</FromUserName><CreateTime>{timestamp}</CreateTime>"
        f"<MsgType>{cdata('text')}</MsgType><Content>{cdata(text)}</Content>"
        f"<MsgId>{msg_id}</MsgId></xml>"
    ).encode()
    started = time.perf_counter()
    async with session.post(url, params=params, data=body) as resp:
        raw = await resp.text()
        status = resp.status
    elapsed = time.perf_counter() - started
    batch.request_s.append(elapsed)
    batch.step_s[step].append(elapsed)
    if status != 200 or not raw.startswith("<xml>"):
        return status, raw
    return status, ET.fromstring(raw).findtext("Content") or ""


async def converse(
    session: aiohttp.ClientSession,
    url: str,
    index: int,
    oid: str,
    title: str,
    small_title: str,
    batch: Batch,
) -> str | None:
    """One resident's whole sign-up; returns "confirmed"/"waitlisted", or None on a failure."""
    base = (index + 1) * 10 + secrets.randbits(40) * 10**7

    def fail(step: str, status: int, reply: str) -> None:
        batch.failures.append(Failure(index, oid, step, status, reply[:400]))

    try:
        status, reply = await post(session, url, oid, "报名", base + 1, batch, "list")
        if status != 200 or "近期志愿活动" not in reply:
            fail("报名", status, reply)
            return None
        batch.list_bytes = max(batch.list_bytes, len(reply.encode()))
        number = None
        for line in reply.splitlines():
            m = LIST_ITEM.match(line.strip())
            if m and m.group(2) == title:
                number = m.group(1)
        if number is None:
            fail(f"报名 (no item 《{title}》 in the list)", status, reply)
            return None
        status, reply = await post(session, url, oid, number, base + 2, batch, "details")
        wanted = "1. 加入候补" if title == small_title else "1. 确认报名"
        if status != 200 or f"《{title}》" not in reply or wanted not in reply:
            fail(number, status, reply)
            return None
        status, reply = await post(session, url, oid, "1", base + 3, batch, "confirm")
    except (aiohttp.ClientError, TimeoutError, ET.ParseError) as exc:
        fail("(transport)", 0, f"{type(exc).__name__}: {exc}")
        return None
    if title == small_title:
        if status == 200 and "候补" in reply and "名额已满" in reply:
            return "waitlisted"
    elif status == 200 and reply.startswith("报名成功") and f"《{title}》" in reply:
        return "confirmed"
    fail("1 (confirm)", status, reply)
    return None


# --- the report ---------------------------------------------------------------------------


def figures(batch: Batch) -> dict[str, float]:
    done = max(batch.conversations, 1)
    conv = batch.conversation_s or [0.0]
    req = batch.request_s or [0.0]
    steps = {f"{s}_p50_ms": quantile(batch.step_s[s] or [0.0], 0.5) * 1000 for s in STEPS}
    return {
        **steps,
        "signups_per_s": batch.conversations / batch.seconds,
        "requests_per_s": len(batch.request_s) / batch.seconds,
        "conv_p50_ms": quantile(conv, 0.5) * 1000,
        "conv_p99_ms": quantile(conv, 0.99) * 1000,
        "req_p50_ms": quantile(req, 0.5) * 1000,
        "req_p99_ms": quantile(req, 0.99) * 1000,
        "cpu_ms_per_signup": batch.cpu_s * 1000 / done,
        "conversations": batch.conversations,
        "confirmed": batch.confirmed,
        "waitlisted": batch.waitlisted,
        "failures": len(batch.failures),
        "seconds": batch.seconds,
    }


def show(name: str, f: dict[str, float]) -> None:
    print(
        f"  {name:12} {f['signups_per_s']:7.1f} sign-ups/s {f['requests_per_s']:7.1f} req/s  "
        f"conversation p50 {f['conv_p50_ms']:6.0f} p99 {f['conv_p99_ms']:6.0f} ms  "
        f"request p50 {f['req_p50_ms']:5.1f} p99 {f['req_p99_ms']:6.1f} ms  "
        f"CPU {f['cpu_ms_per_signup']:5.1f} ms/sign-up  "
        f"({f['confirmed']:.0f} confirmed, {f['waitlisted']:.0f} waitlisted, "
        f"{f['failures']:.0f} failed)",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k residents, 1 short round")
    parser.add_argument("--residents", type=int, help="default 100000 (--quick: 10000)")
    parser.add_argument("--rounds", type=int, help="default 5 (--quick: 1)")
    parser.add_argument(
        "--per-round", type=int, help="conversations per configuration and round (default 2000)"
    )
    parser.add_argument("--warmup", type=int, help="conversations before the rounds (default 200)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    residents = args.residents or (10_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 5)
    per_round = args.per_round or (300 if args.quick else 2000)
    warmup = args.warmup if args.warmup is not None else (50 if args.quick else 200)
    needed = warmup + rounds * per_round
    if needed > residents - SMALL_CAPACITY - 1:
        sys.exit(f"{needed} conversations need more than {residents} residents")
    if needed > (VISIBLE - 1) * BIG_CAPACITY:
        sys.exit(f"{needed} conversations would fill the activities")
    started = time.perf_counter()
    targets: list[Target] = []
    problems: dict[str, list[str]] = {}
    logs: dict[str, list[str]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="gongzhi-bench-signups-"))
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            print(f"preparing {len(args.only)} communities of {residents:,} residents", flush=True)
            for name in args.only:
                target = Target(name, workdir, residents)
                targets.append(target)
                await target.prepare()
            for target in targets:
                await asyncio.to_thread(target.start)
                await target.run(session, warmup, args.concurrency, measured=False)
                print(f"  {target.name} up on port {target.port}, warmed up", flush=True)
            # Rounds interleave the configurations, so a machine that drifts moves every
            # configuration alike and the ratios taken within a round hold.
            for round_no in range(rounds):
                print(f"round {round_no + 1} of {rounds}: {per_round} sign-ups each", flush=True)
                for target in targets:
                    batch = await target.run(session, per_round, args.concurrency, measured=True)
                    show(target.name, figures(batch))
                    if batch.failures:
                        print(f"  !!! {target.name}: {len(batch.failures)} FAILED conversations")
        for target in targets:
            target.stop()
            problems[target.name] = await target.verify()
            logs[target.name] = server_log_problems(target.log)
    finally:
        for target in targets:
            target.stop()
        for target in targets:
            await target.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    # --- figures ---
    results: dict[str, Any] = {
        "residents": residents,
        "rounds": rounds,
        "per_round": per_round,
        "concurrency": args.concurrency,
        "configs": {},
    }
    print(
        f"\nmedian of {rounds} interleaved round(s) x {per_round} sign-ups, "
        f"{args.concurrency} concurrent conversations, {residents:,} residents"
    )
    print(
        f"{'configuration':34} {'sign-ups/s':>10} {'req/s':>7} {'conv p50':>9} {'conv p99':>9} "
        f"{'req p50':>8} {'req p99':>8} {'CPU ms':>7} {'failed':>7}"
    )
    keys = (
        "signups_per_s",
        "requests_per_s",
        "conv_p50_ms",
        "conv_p99_ms",
        "req_p50_ms",
        "req_p99_ms",
        "cpu_ms_per_signup",
        *(f"{s}_p50_ms" for s in STEPS),
    )
    for target in targets:
        rows = [figures(b) for b in target.batches]
        med = {k: float(statistics.median(r[k] for r in rows)) for k in keys}
        failed = sum(len(b.failures) for b in target.all_batches)
        list_bytes = max(b.list_bytes for b in target.all_batches)
        results["configs"][target.name] = {
            "median": med,
            "rounds": rows,
            "failures": failed,
            "failure_examples": [f.__dict__ for b in target.all_batches for f in b.failures][:10],
            "store_check": problems.get(target.name, []),
            "server_log": logs.get(target.name, []),
            "list_reply_bytes": list_bytes,
        }
        print(
            f"{LABELS[target.name]:34} {med['signups_per_s']:10.1f} {med['requests_per_s']:7.1f} "
            f"{med['conv_p50_ms']:9.0f} {med['conv_p99_ms']:9.0f} {med['req_p50_ms']:8.1f} "
            f"{med['req_p99_ms']:8.1f} {med['cpu_ms_per_signup']:7.1f} {failed:7d}"
        )
    print("(latencies in ms; CPU: the server processes' CPU per sign-up)")
    print("p50 ms of each request: 报名 (the list) / the number (details) / 1 (confirm)")
    for target in targets:
        med = results["configs"][target.name]["median"]
        each = " / ".join(f"{med[f'{s}_p50_ms']:.1f}" for s in STEPS)
        print(f"  {LABELS[target.name]:34} {each}")
    by_name = {t.name: t for t in targets}
    if "tinydb" in by_name:
        print("\nsign-ups/s against tinydb, per round, and their median:")
        ratios: dict[str, Any] = {}
        for target in targets:
            if target.name == "tinydb":
                continue
            pairs = zip(target.batches, by_name["tinydb"].batches, strict=True)
            values = [figures(t)["signups_per_s"] / figures(b)["signups_per_s"] for t, b in pairs]
            med_ratio = float(statistics.median(values))
            ratios[target.name] = {"rounds": values, "median": med_ratio}
            listed = " ".join(f"{v:.2f}" for v in values)
            print(f"  {target.name:12} / tinydb: rounds {listed}   median {med_ratio:.2f}")
        results["ratios_to_tinydb"] = ratios
    bad = False
    for target in targets:
        entry = results["configs"][target.name]
        if entry["failures"]:
            bad = True
            print(f"\n!!! {target.name}: {entry['failures']} conversations FAILED. First ones:")
            for f in entry["failure_examples"]:
                print(
                    f"    #{f['conversation']} {f['resident']} step {f['step']}: "
                    f"HTTP {f['status']} {f['reply']!r}"
                )
        if entry["store_check"]:
            bad = True
            print(f"\n!!! {target.name}: the stored rosters disagree with the replies:")
            for p in entry["store_check"]:
                print(f"    {p}")
        if entry["server_log"]:
            print(f"\n{target.name}: the server logged (WARNING and above):")
            for line in entry["server_log"]:
                print(f"    {line}")
    sizes = ", ".join(f"{t.name} {results['configs'][t.name]['list_reply_bytes']}" for t in targets)
    print(f"\nlargest 报名 list reply: {sizes} bytes (WeChat's limit: 2048)")
    print(f"total {time.perf_counter() - started:.0f} s")
    if bad:
        print("\n!!! THIS RUN HAD FAILURES: its figures are not valid. See above.")
    results["valid"] = not bad
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
