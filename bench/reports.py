"""Reports (报事) filed per second through the webhook, and alert latency to the grid workers.

Configurations (real server processes, ``python -m bot serve --config ...``, plaintext mode,
unpinned: the server, the load generator, the fake WeChat API and PostgreSQL share the
machine's cores):
  tinydb        the embedded store, one process
  pg-1p         PostgreSQL, one process
  pg-redis-2p   PostgreSQL and Redis, ``serve --workers 2`` (SO_REUSEPORT)

Each configuration gets its own community, prepared before its server starts:
  - --residents residents (subscribed);
  - 8 grids tiling a 4 km x 3 km community as GeoJSON polygons (stored normalised, as
    ``GridDirectory.put`` stores them): an L-shaped (concave) grid with a rectangular grid in
    its notch, a grid with a hole and an island grid filling the hole, and four rectangles;
    each grid has 2 worker openids;
  - a history: --closed closed reports (9 in 10 resolved, some rated or with a photo, 1 in 10
    rejected) over two years, and --open open ones from the last two days (two thirds
    accepted, one third still waiting and already escalated, as the scheduler leaves them),
    each with the "filed" alerts to its grid's workers, sent; some open reports have
    followers; the ``counters`` record "report" holds the last number.
PostgreSQL is filled with ``PostgresStore.load`` into a fresh schema (dropped afterwards)
and then VACUUM ANALYZEd; TinyDB by writing each collection's snapshot with the store's
own ``write_snapshot`` into a fresh temporary directory.

A report is a whole conversation of one resident, signed plaintext messages to
``POST /wechat``: "报事" (the categories), the category's number, a description, "跳过" (no
photo), a WeChat location message (``Location_X`` latitude, ``Location_Y`` longitude, Scale,
Label), and "1" to confirm; the final reply must say 报事已提交 with a number and the name of
the grid the point lies in. Locations sit on a 110 m lattice and no lattice point is used
twice for one category, so no two reports of a category are within the 100 m duplicate
radius, except that every NEAR_EVERY-th conversation reports, 7 m from an open report of
the history, a problem of the same category: the bot must then offer that report ("附近已经
有人反映了类似的问题…"), and the resident answers "0" to file anyway. --concurrency
conversations run at once, each from a distinct resident who files once.

The server's alerts (customer-service messages to each of the grid's 2 workers) go to a
FakeWeChatAPI running in this process, one per configuration, which stamps every call on
arrival with ``time.perf_counter``. Alert latency is the time from the client receiving the
final 报事已提交 reply to the fake having received that worker's alert (negative when the alert
arrived first). After each configuration's batch the bench waits for every alert of the
batch before the next configuration runs, so alerts never spill into another's round.

Filed reports stay open (nobody handles them during the run), so each round starts with
--per-round more open reports than the last, and the duplicate check, which reads every open
report of the category, costs more each round: the per-round lines show how many were open.

Rounds interleave the configurations (every server stays up across rounds, with fresh
residents each round). Reported per configuration: reports/s (completed conversations per
second), requests/s, p50/p99 of a whole conversation and of one request, alert latency
p50/p99, and the server processes' CPU per report (PostgreSQL's and Redis's own CPU not
included). Ratios against tinydb are taken per round (each round saw one machine state),
then the median.

After the rounds each store is checked: every filed report exists with its reporter,
category, point and grid; the report counter and collections grew by exactly the filed
reports; each report's alerts are recorded as sent in one attempt; and the fake received
exactly one alert per report and worker, and nothing else.

Usage: python bench/reports.py [--quick] [--rounds 5] [--per-round 1000] [--json PATH]
PostgreSQL: GONGZHI_BENCH_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test);
Redis: GONGZHI_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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

from bot.config import ReportsConfig  # noqa: E402
from bot.domain.geo import EARTH_RADIUS_M, parse_area  # noqa: E402
from bot.wechat.fake_api import FakeWeChatAPI  # noqa: E402
from bot.wechat.replies import cdata  # noqa: E402
from bot.wechat.signature import url_signature  # noqa: E402
from storage.contract import Record, Store  # noqa: E402
from storage.postgres_store import PostgresStore  # noqa: E402
from storage.reports import (  # noqa: E402
    ACCEPTED,
    REJECTED,
    REPORTED,
    RESOLVED,
    SENT,
    Alert,
    AlertRepo,
    Photo,
    Report,
    ReportRepo,
    Transition,
    report_key,
)
from storage.schema import SCHEMA  # noqa: E402
from storage.tinydb_store import TinyDBStore  # noqa: E402

TOKEN = "benchToken2026"
APP_ID = "wx1234567890abcdef"
APP_SECRET = "benchSecret2026"
REDIS_URL = os.environ.get("GONGZHI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONFIGS = ("tinydb", "pg-1p", "pg-redis-2p")
LABELS = {
    "tinydb": "TinyDB, 1 process",
    "pg-1p": "PostgreSQL, 1 process",
    "pg-redis-2p": "PostgreSQL + Redis, 2 processes",
}

REPORTS_CONFIG = ReportsConfig()
CATEGORIES = REPORTS_CONFIG.categories
RADIUS_M = REPORTS_CONFIG.duplicate_radius_m
DESCRIPTIONS = {
    "环境卫生": "楼下垃圾桶满了好几天没人清运，气味很大",
    "排水": "3栋门口下水道堵了，污水漫到路上",
    "车辆停放": "消防通道上停了两辆车，把出口堵住了",
    "绿化": "东侧的树枝被风刮断了，挂在电线上",
    "治安": "单元门禁坏了，陌生人可以随意进出",
    "设施损坏": "健身器材的扶手松动了，老人用着很危险",
    "其他": "路灯晚上不亮，走路看不清",
}
WORKERS_PER_GRID = 2
DAY = 86_400.0
HOUR = 3600.0
ALERT_WAIT = 30.0  # seconds to wait, after a batch, for its last alerts

# The community: a WIDTH x HEIGHT metre rectangle whose south-west corner is (LAT0, LNG0).
LAT0, LNG0 = 30.25, 120.15
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180  # along a meridian, as geo.distance_m measures
COS0 = math.cos(math.radians(LAT0))
WIDTH, HEIGHT = 4000.0, 3000.0
# Report points: a lattice 110 m apart (more than the 100 m duplicate radius), offset so
# that every point is at least 10 m from a grid edge.
FIRST, SPACING = 50.0, 110.0
COLUMNS = int((WIDTH - FIRST) // SPACING) + 1  # x = 50 ... 3900
ROWS = int((HEIGHT - FIRST) // SPACING) + 1  # y = 50 ... 2910
NEAR = (6.0, 4.0)  # a near point: 7.2 m from its open report, > 100 m from every other point
NEAR_EVERY = 20  # every 20th conversation reports next to an open report of its category

Ring = tuple[tuple[float, float], ...]  # (x, y) metres, closed
# id, name, rings (outer first, then holes), in metres.
GRIDS: tuple[tuple[str, str, tuple[Ring, ...]], ...] = (
    (
        "qy-1",
        "清源一网格",  # L-shaped: concave
        (((0, 0), (2000, 0), (2000, 750), (1000, 750), (1000, 1500), (0, 1500), (0, 0)),),
    ),
    (
        "qy-2",
        "清源二网格",  # fills the L's notch
        (((1000, 750), (2000, 750), (2000, 1500), (1000, 1500), (1000, 750)),),
    ),
    (
        "qy-3",
        "清源三网格",  # with a hole
        (
            ((2000, 0), (4000, 0), (4000, 1500), (2000, 1500), (2000, 0)),
            ((2700, 400), (2700, 1100), (3300, 1100), (3300, 400), (2700, 400)),
        ),
    ),
    (
        "qy-4",
        "锦绣花园网格",  # the island in the hole
        (((2700, 400), (3300, 400), (3300, 1100), (2700, 1100), (2700, 400)),),
    ),
    *(
        (
            f"qy-{5 + k}",
            f"清源{'五六七八'[k]}网格",
            (
                (
                    (1000 * k, 1500),
                    (1000 * k + 1000, 1500),
                    (1000 * k + 1000, 3000),
                    (1000 * k, 3000),
                    (1000 * k, 1500),
                ),
            ),
        )
        for k in range(4)
    ),
)
GRID_NAMES = {gid: name for gid, name, _ in GRIDS}

STEPS = ("报事", "category", "text", "跳过", "location", "0", "1")
CONFIRMED = re.compile(r"^报事已提交，编号 (\d+)。已转给“(.+?)”网格员")
LISTED = re.compile(r"编号(\d+)（")
ALERT_TEXT = re.compile(r"^【新报事】编号 (\d+)\n")


def openid(n: int) -> str:
    """A 28-character openid, like WeChat's."""
    return f"oReport{n:021d}"


def worker_openid(grid: int, k: int) -> str:
    return f"oWorker{grid:013d}{k:08d}"


WORKERS = {
    gid: tuple(worker_openid(g, k) for k in range(WORKERS_PER_GRID))
    for g, (gid, _, _) in enumerate(GRIDS, 1)
}


# --- geometry ----------------------------------------------------------------------------


def lat_lng(x: float, y: float) -> tuple[float, float]:
    """The point ``x`` metres east and ``y`` metres north of the south-west corner."""
    return LAT0 + y / M_PER_DEG, LNG0 + x / (M_PER_DEG * COS0)


def grid_at(x: float, y: float) -> str:
    """The grid a point lies in, worked out from the layout, not by the server's code."""
    if 2700 < x < 3300 and 400 < y < 1100:
        return "qy-4"
    if y < 1500:
        if x < 1000 or (x < 2000 and y < 750):
            return "qy-1"
        return "qy-2" if x < 2000 else "qy-3"
    return f"qy-{5 + min(int(x // 1000), 3)}"


def clear_of_edges(x: float, y: float) -> bool:
    """Whether the point is more than a metre from every grid edge (routing is unambiguous)."""
    here = grid_at(x, y)
    return all(grid_at(x + dx, y + dy) == here for dx in (-1, 1) for dy in (-1, 1))


def grid_area(rings: tuple[Ring, ...]) -> dict[str, Any]:
    """The stored form of a grid's area: normalised GeoJSON, as ``GridDirectory.put`` keeps it."""
    coordinates = [[[lat_lng(x, y)[1], lat_lng(x, y)[0]] for x, y in ring] for ring in rings]
    return parse_area({"type": "Polygon", "coordinates": coordinates}).to_geojson()


def lattice(column: int, row: int) -> tuple[float, float]:
    return FIRST + column * SPACING, FIRST + row * SPACING


def slots() -> list[tuple[int, int, int]]:
    """Every (column, row, category) once, in a fixed random order."""
    out = [(c, r, k) for c in range(COLUMNS) for r in range(ROWS) for k in range(len(CATEGORIES))]
    random.Random(2026).shuffle(out)
    return out


SLOTS = slots()


# --- the community ----------------------------------------------------------------------


@dataclass(frozen=True)
class OpenReport:
    number: int
    category: int
    x: float
    y: float


@dataclass(frozen=True)
class Community:
    residents: int
    history: int  # reports in the history (the counter's value)
    history_alerts: int
    open: list[OpenReport]
    records: dict[str, list[Record]]  # collection -> records


def alert_text(report: Report) -> str:
    place = report.label or f"{report.lat:.5f},{report.lng:.5f}"
    return (
        f"【新报事】编号 {report.number}\n类别：{report.category}\n内容：{report.text}\n"
        f"地点：{place}\n回复“接单 {report.number}”接单，“待办”查看全部。"
    )


def filed_alerts(report: Report) -> list[Record]:
    """The "filed" alerts the server queued and sent for ``report``."""
    out = []
    for worker in WORKERS[report.grid]:
        key = f"{report.number:010d}:filed:wechat:{worker}"
        alert = Alert(
            key=key,
            report=report.number,
            channel="wechat",
            target=worker,
            text=alert_text(report),
            fields={
                "keyword1": str(report.number),
                "keyword2": report.category,
                "keyword3": report.label or "见位置",
            },
            state=SENT,
            attempts=1,
            next_at=report.created_at,
            created_at=report.created_at,
            sent_at=report.created_at + 0.4,
        )
        out.append(Record(key, 1, alert.to_doc()))
    return out


def closed_report(number: int, created: float, rng: random.Random, residents: int) -> Report:
    x, y = rng.uniform(1, WIDTH - 1), rng.uniform(1, HEIGHT - 1)
    lat, lng = lat_lng(x, y)
    grid = grid_at(x, y)
    category = CATEGORIES[rng.randrange(len(CATEGORIES))]
    reporter = openid(rng.randrange(residents))
    worker = WORKERS[grid][number % WORKERS_PER_GRID]
    filed = Transition(created, reporter, "filed", REPORTED, f"分派到网格“{GRID_NAMES[grid]}”")
    photos: tuple[Photo, ...] = ()
    if number % 3 == 0:
        media = f"media{number:012d}"
        photos = (Photo(media, f"http://mmbiz.qpic.cn/{media}/0", f"media/{number}/{media}.jpg"),)
    base = Report(
        number=number,
        reporter=reporter,
        category=category,
        text=DESCRIPTIONS[category],
        created_at=created,
        grid=grid,
        lat=lat,
        lng=lng,
        label=f"清源路{number % 300 + 1}号附近",
        photos=photos,
        followers=(openid(rng.randrange(residents)),) if number % 25 == 0 else (),
    )
    filed_and_followed = (filed, *followed(base))
    if number % 10 == 9:
        closed = created + rng.uniform(HOUR, DAY)
        history = (
            *filed_and_followed,
            Transition(closed, worker, "rejected", REJECTED, "不属于社区管理范围"),
        )
        return replace(base, state=REJECTED, history=history, closed_at=closed)
    accepted = created + rng.uniform(600, 2 * HOUR)
    resolved = accepted + rng.uniform(HOUR, 3 * DAY)
    history = (
        *filed_and_followed,
        Transition(accepted, worker, "accepted", ACCEPTED),
        Transition(resolved, worker, "resolved", RESOLVED, "已处理，现场已恢复"),
    )
    rating = None
    if number % 5 < 3:
        rating = 3 + number % 3
        history += (Transition(resolved + HOUR, reporter, "rated", RESOLVED, f"{rating}星"),)
    return replace(
        base,
        state=RESOLVED,
        assignee=worker,
        history=history,
        rating=rating,
        accepted_at=accepted,
        resolved_at=resolved,
        closed_at=resolved,
    )


def followed(report: Report) -> tuple[Transition, ...]:
    """The "followed" transitions of a report's followers (a minute after it was filed)."""
    return tuple(
        Transition(report.created_at + 60, f, "followed", REPORTED) for f in report.followers
    )


def open_report(
    number: int, slot: tuple[int, int, int], now: float, rng: random.Random, residents: int
) -> Report:
    column, row, k = slot
    x, y = lattice(column, row)
    lat, lng = lat_lng(x, y)
    grid = grid_at(x, y)
    category = CATEGORIES[k]
    reporter = openid(rng.randrange(residents))
    created = now - 4 * HOUR - rng.uniform(0, 44 * HOUR)
    filed = Transition(created, reporter, "filed", REPORTED, f"分派到网格“{GRID_NAMES[grid]}”")
    followers = (openid(rng.randrange(residents)),) if number % 10 == 0 else ()
    base = Report(
        number=number,
        reporter=reporter,
        category=category,
        text=DESCRIPTIONS[category],
        created_at=created,
        grid=grid,
        lat=lat,
        lng=lng,
        label=f"清源路{number % 300 + 1}号附近",
        followers=followers,
    )
    history = (filed, *followed(base))
    if number % 3:
        worker = WORKERS[grid][number % WORKERS_PER_GRID]
        accepted = created + rng.uniform(600, HOUR)
        return replace(
            base,
            state=ACCEPTED,
            assignee=worker,
            accepted_at=accepted,
            history=(*history, Transition(accepted, worker, "accepted", ACCEPTED)),
        )
    # Not accepted in 2 hours, nor in 4: the scheduler has told the leader, then the admins.
    escalations = tuple(
        Transition(
            created + n * 2 * HOUR, "system", "escalated", REPORTED, f"超时未接单，已提醒{to}"
        )
        for n, to in ((1, "网格长"), (2, "社区管理员"))
    )
    return replace(base, history=(*history, *escalations), escalated={"accept": 2})


def build_community(residents: int, closed: int, opened: int, now: float) -> Community:
    rng = random.Random(7)
    records: dict[str, list[Record]] = {
        name: [] for name in ("residents", "grids", "reports", "follows", "alerts", "counters")
    }
    for n in range(residents):
        records["residents"].append(
            Record(
                openid(n),
                1,
                {"subscribed": True, "first_seen": now - 400 * DAY + n, "last_seen": now - n % 90},
            )
        )
    for gid, name, rings in GRIDS:
        records["grids"].append(
            Record(
                gid,
                1,
                {
                    "name": name,
                    "area": grid_area(rings),
                    "workers": list(WORKERS[gid]),
                    "leader": "",
                    "wecom_url": "",
                    "updated_at": now - 30 * DAY,
                },
            )
        )
    reports: list[Report] = []
    for i in range(closed):
        created = now - 730 * DAY + i * (720 * DAY / max(closed, 1))
        reports.append(closed_report(i + 1, created, rng, residents))
    open_list = []
    for j in range(opened):
        number = closed + j + 1
        report = open_report(number, SLOTS[j], now, rng, residents)
        reports.append(report)
        column, row, k = SLOTS[j]
        open_list.append(OpenReport(number, k, *lattice(column, row)))
    for report in reports:
        records["reports"].append(Record(report_key(report.number), 1, report.to_doc()))
        records["alerts"] += filed_alerts(report)
        for f in report.followers:
            records["follows"].append(
                Record(
                    f"{f}:{report_key(report.number)}",
                    1,
                    {"openid": f, "report": report.number, "at": report.created_at + 60},
                )
            )
    records["counters"].append(Record("report", 1, {"value": len(reports)}))
    return Community(residents, len(reports), len(records["alerts"]), open_list, records)


# --- a server -----------------------------------------------------------------------------


# --- the conversations --------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One resident's report: who, what, where."""

    index: int
    resident: str
    category: int  # index in CATEGORIES
    x: float
    y: float
    near: int | None  # the open report this point is 7 m from (same category), if any

    @property
    def grid(self) -> str:
        return grid_at(self.x, self.y)


@dataclass(frozen=True)
class Filed:
    plan: Plan
    number: int
    replied_at: float  # perf_counter when the client had the 报事已提交 reply


@dataclass
class Batch:
    """One configuration's conversations in one round (or its warm-up)."""

    open_at_start: int = 0  # open reports in the store when the batch began
    conversations: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    conversation_s: list[float] = field(default_factory=list)
    request_s: list[float] = field(default_factory=list)
    step_s: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    failures: list[Failure] = field(default_factory=list)
    filed: list[Filed] = field(default_factory=list)
    lists_shown: int = 0  # "附近已经有人反映了类似的问题" lists, all expected
    list_problems: list[str] = field(default_factory=list)  # missing or unexpected lists
    alert_s: list[float] = field(default_factory=list)
    alerts_missing: int = 0
    alerts_done_after_s: float = 0.0  # from the batch's end to its last alert


class Target:
    """One configuration: its community, its server, its fake WeChat API, its residents."""

    def __init__(self, name: str, workdir: Path, args: argparse.Namespace) -> None:
        self.name = name
        self.port = free_port()
        self.tag = uuid.uuid4().hex[:8]
        self.pg_schema = f"bench_reports_{self.tag}_{name.replace('-', '_')}"
        self.redis_prefix = f"gongzhi-bench-{self.tag}:"
        self.data = workdir / f"data-{name}"
        self.config = workdir / f"{name}.toml"
        self.log = workdir / f"{name}.log"
        self.residents: int = args.residents
        self.closed: int = args.closed
        self.opened: int = args.open
        self.proc: subprocess.Popen[bytes] | None = None
        self.fake = FakeWeChatAPI(app_id=APP_ID, app_secret=APP_SECRET, clock=time.perf_counter)
        self.community: Community | None = None
        self.schema_created = False
        self.next_conversation = 0
        self.next_slot = self.opened  # the open reports hold the first slots
        self.next_near = 0
        self.batches: list[Batch] = []  # the measured rounds
        self.all_batches: list[Batch] = []  # with the warm-up
        self.calls_seen = 0
        self.alert_at: dict[tuple[int, str], list[float]] = {}  # (report, worker) -> arrivals
        self.stray_calls: list[str] = []  # custom messages that are no report alert
        order = list(range(self.residents))
        random.Random(2026).shuffle(order)
        self.order = order

    @property
    def postgres(self) -> bool:
        return self.name.startswith("pg-")

    async def prepare(self) -> None:
        now = time.time()
        community = await asyncio.to_thread(
            build_community, self.residents, self.closed, self.opened, now
        )
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
            f"(reports {len(community.records['reports']):,}, "
            f"alerts {len(community.records['alerts']):,}) written in {seconds:.1f} s",
            flush=True,
        )

    async def start(self) -> None:
        base_url = await self.fake.start()
        await asyncio.to_thread(self.launch, base_url)

    def launch(self, base_url: str) -> None:
        """Write the configuration (alerts go to ``base_url``) and start the server."""
        storage = f'[storage]\npath = "{self.data}"\n'
        if self.postgres:
            storage = (
                f'[storage]\nbackend = "postgres"\ndsn = "{PG_DSN}"\n'
                f'pg_schema = "{self.pg_schema}"\npath = "{self.data}"\n'
            )
        if self.name == "pg-redis-2p":
            storage += f'[redis]\nurl = "{REDIS_URL}"\nprefix = "{self.redis_prefix}"\n'
        self.config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'[wechat]\napp_id = "{APP_ID}"\napp_secret = "{APP_SECRET}"\ntoken = "{TOKEN}"\n'
            f'encoding_aes_key = ""\napi_base_url = "{base_url}"\n'
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

    def plan(self, count: int) -> list[Plan]:
        """The next ``count`` conversations."""
        assert self.community is not None
        out = []
        for _ in range(count):
            i = self.next_conversation
            self.next_conversation += 1
            if i >= len(self.order):
                raise RuntimeError(f"{self.name}: out of fresh residents after {i} conversations")
            resident = openid(self.order[i])
            if i % NEAR_EVERY == NEAR_EVERY - 1 and self.next_near < len(self.community.open):
                target = self.community.open[self.next_near]
                self.next_near += 1
                x, y = target.x + NEAR[0], target.y + NEAR[1]
                out.append(Plan(i, resident, target.category, x, y, target.number))
                continue
            if self.next_slot >= len(SLOTS):
                raise RuntimeError(f"{self.name}: out of report locations after {i} conversations")
            column, row, k = SLOTS[self.next_slot]
            self.next_slot += 1
            out.append(Plan(i, resident, k, *lattice(column, row), None))
        return out

    async def run(
        self, session: aiohttp.ClientSession, count: int, concurrency: int, *, measured: bool
    ) -> Batch:
        assert self.proc is not None
        filed_before = sum(len(b.filed) for b in self.all_batches)
        batch = Batch(open_at_start=self.opened + filed_before)
        plan = iter(self.plan(count))
        url = f"http://127.0.0.1:{self.port}/wechat"

        async def worker() -> None:
            for p in plan:
                started = time.perf_counter()
                filed = await converse(session, url, p, batch)
                if filed is None:
                    continue
                batch.conversation_s.append(filed.replied_at - started)
                batch.conversations += 1

        cpu_before = cpu_seconds(self.proc.pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ended = time.perf_counter()
        batch.seconds = ended - started
        batch.cpu_s = cpu_seconds(self.proc.pid) - cpu_before
        await self.collect_alerts(batch, ended)
        self.all_batches.append(batch)
        if measured:
            self.batches.append(batch)
        return batch

    def scan_calls(self) -> None:
        """Read the calls the fake received since the last scan."""
        calls = self.fake.calls
        while self.calls_seen < len(calls):
            call = calls[self.calls_seen]
            self.calls_seen += 1
            if call.api != "custom_send":
                continue  # token fetches
            body = call.body if isinstance(call.body, dict) else {}
            to, text = body.get("touser"), body.get("text")
            content = text.get("content") if isinstance(text, dict) else None
            m = ALERT_TEXT.match(content) if isinstance(content, str) else None
            if m is None or not isinstance(to, str):
                self.stray_calls.append(json.dumps(call.body, ensure_ascii=False)[:300])
                continue
            self.alert_at.setdefault((int(m.group(1)), to), []).append(call.at)

    async def collect_alerts(self, batch: Batch, ended: float) -> None:
        """Wait for the batch's alerts (at most ALERT_WAIT s); take their latencies."""
        wanted = [(f, w) for f in batch.filed for w in WORKERS[f.plan.grid]]
        deadline = time.perf_counter() + ALERT_WAIT
        while True:
            self.scan_calls()
            missing = [1 for f, w in wanted if (f.number, w) not in self.alert_at]
            if not missing or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.02)
        batch.alerts_missing = len(missing)
        last = ended
        for f, w in wanted:
            arrivals = self.alert_at.get((f.number, w))
            if arrivals:
                batch.alert_s.append(arrivals[0] - f.replied_at)
                last = max(last, arrivals[0])
        batch.alerts_done_after_s = last - ended

    async def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(self.proc.wait, 40)
                except subprocess.TimeoutExpired:
                    print(f"  warning: {self.name} did not stop within 40 s; killing it")
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        await self.fake.stop()

    async def verify(self) -> list[str]:
        """Compare the store and the fake's calls with what the client saw."""
        assert self.community is not None
        self.scan_calls()
        filed = [f for b in self.all_batches for f in b.filed]
        problems: list[str] = []
        numbers = [f.number for f in filed]
        if len(set(numbers)) != len(numbers):
            problems.append(f"{len(numbers) - len(set(numbers))} report numbers were given twice")
        store: Store
        if self.postgres:
            store = PostgresStore(PG_DSN, SCHEMA, namespace=self.pg_schema, pool_size=2)
        else:
            store = TinyDBStore(self.data, SCHEMA)
        await store.open()
        try:
            reports, alerts = ReportRepo(store), AlertRepo(store)
            wrong: list[str] = []
            unsent: list[str] = []
            for f in filed:
                r = await reports.get(f.number)
                lat, lng = lat_lng(f.plan.x, f.plan.y)
                if r is None:
                    wrong.append(f"report {f.number} is not stored")
                elif (
                    r.reporter != f.plan.resident
                    or r.category != CATEGORIES[f.plan.category]
                    or r.grid != f.plan.grid
                    or r.state != REPORTED
                    or r.lat is None
                    or r.lng is None
                    or abs(r.lat - lat) > 2e-6
                    or abs(r.lng - lng) > 2e-6
                ):
                    wrong.append(
                        f"report {f.number}: {r.reporter} {r.category} grid {r.grid!r} "
                        f"{r.state} ({r.lat}, {r.lng}); expected {f.plan.resident} "
                        f"{CATEGORIES[f.plan.category]} grid {f.plan.grid!r} ({lat:.6f}, {lng:.6f})"
                    )
                for w in WORKERS[f.plan.grid]:
                    a = await alerts.get(f"{f.number:010d}:filed:wechat:{w}")
                    if a is None or a.state != SENT or a.attempts != 1:
                        shown = "missing" if a is None else f"{a.state}, {a.attempts} attempts"
                        unsent.append(f"alert of report {f.number} to {w}: {shown}")
            for what, found in (("reports", wrong), ("alert records", unsent)):
                if found:
                    problems.append(f"{len(found)} {what} wrong, e.g. {'; '.join(found[:3])}")
            history, history_alerts = self.community.history, self.community.history_alerts
            size = await store.collection("reports").size()
            if size != history + len(filed):
                problems.append(f"reports holds {size}, expected {history} + {len(filed)}")
            size = await store.collection("alerts").size()
            expected = history_alerts + WORKERS_PER_GRID * len(filed)
            if size != expected:
                problems.append(f"alerts holds {size} records, expected {expected}")
            counter = await store.collection("counters").get("report")
            value = counter.data["value"] if counter else None
            if value != history + len(filed):
                problems.append(f"the report counter is {value}, expected {history + len(filed)}")
        finally:
            await store.close()
        wanted = {(f.number, w) for f in filed for w in WORKERS[f.plan.grid]}
        missing = wanted - self.alert_at.keys()
        twice = {k: len(v) for k, v in self.alert_at.items() if len(v) > 1}
        unknown = self.alert_at.keys() - wanted
        if missing:
            problems.append(f"the fake never received {len(missing)} alerts, e.g. {min(missing)}")
        if twice:
            k = min(twice)
            problems.append(f"{len(twice)} alerts arrived more than once, e.g. {k} x{twice[k]}")
        if unknown:
            problems.append(f"{len(unknown)} alerts for unknown reports, e.g. {min(unknown)}")
        if self.stray_calls:
            problems.append(
                f"{len(self.stray_calls)} other custom messages, e.g. {self.stray_calls[0]}"
            )
        delivered = len(self.fake.sent_texts())
        if delivered != len(wanted) + len(self.stray_calls):
            problems.append(f"the fake accepted {delivered} texts, expected {len(wanted)}")
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
    payload: str,
    msg_id: int,
    batch: Batch,
    step: str,
) -> tuple[int, str, float]:
    """One signed plaintext message, as WeChat sends it: (status, reply text, when it came)."""
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
        f"{payload}<MsgId>{msg_id}</MsgId></xml>"
    ).encode()
    started = time.perf_counter()
    async with session.post(url, params=params, data=body) as resp:
        raw = await resp.text()
        status = resp.status
    came = time.perf_counter()
    batch.request_s.append(came - started)
    batch.step_s[step].append(came - started)
    if status != 200 or not raw.startswith("<xml>"):
        return status, raw, came
    return status, ET.fromstring(raw).findtext("Content") or "", came


def text_message(text: str) -> str:
    return f"<MsgType>{cdata('text')}</MsgType><Content>{cdata(text)}</Content>"


def location_message(lat: float, lng: float, label: str) -> str:
    return (
        f"<MsgType>{cdata('location')}</MsgType><Location_X>{lat:.6f}</Location_X>"
        f"<Location_Y>{lng:.6f}</Location_Y><Scale>16</Scale><Label>{cdata(label)}</Label>"
    )


async def converse(session: aiohttp.ClientSession, url: str, p: Plan, batch: Batch) -> Filed | None:
    """One resident's whole report; returns it, or None on a failure."""
    base = (p.index + 1) * 10 + secrets.randbits(40) * 10**7
    oid = p.resident
    category = CATEGORIES[p.category]
    description = DESCRIPTIONS[category]
    lat, lng = lat_lng(p.x, p.y)

    def fail(step: str, status: int, reply: str) -> None:
        batch.failures.append(Failure(p.index, oid, step, status, reply[:400]))

    # (step, what is sent, what the reply must start with)
    script = (
        ("报事", text_message("报事"), "请选择问题类别"),
        ("category", text_message(str(p.category + 1)), f"类别：{category}\n"),
        ("text", text_message(description), "如果方便，请拍一张照片"),
        ("跳过", text_message("跳过"), "请发送问题所在的位置"),
    )
    try:
        for n, (step, payload, expected) in enumerate(script, 1):
            status, reply, _ = await post(session, url, oid, payload, base + n, batch, step)
            if status != 200 or not reply.startswith(expected):
                fail(step, status, reply)
                return None
        label = f"浙江省杭州市清源路{p.index % 300 + 1}号附近"
        payload = location_message(lat, lng, label)
        status, reply, _ = await post(session, url, oid, payload, base + 5, batch, "location")
        if status == 200 and reply.startswith("附近已经有人反映了类似的问题"):
            batch.lists_shown += 1
            listed = [int(m) for m in LISTED.findall(reply)]
            if p.near is None:
                batch.list_problems.append(f"#{p.index}: a list where none was due: {listed}")
            elif p.near not in listed:
                batch.list_problems.append(f"#{p.index}: report {p.near} not in {listed}")
            status, reply, _ = await post(
                session, url, oid, text_message("0"), base + 6, batch, "0"
            )
        elif p.near is not None and status == 200:
            batch.list_problems.append(f"#{p.index}: no list; report {p.near} is 7 m away")
        if status != 200 or not reply.startswith("请确认您的报事") or description not in reply:
            fail("location" if p.near is None else "location / 0", status, reply)
            return None
        status, reply, came = await post(session, url, oid, text_message("1"), base + 7, batch, "1")
    except (aiohttp.ClientError, TimeoutError, ET.ParseError) as exc:
        fail("(transport)", 0, f"{type(exc).__name__}: {exc}")
        return None
    m = CONFIRMED.match(reply) if status == 200 else None
    if m is None:
        fail("1 (confirm)", status, reply)
        return None
    filed = Filed(p, int(m.group(1)), came)
    batch.filed.append(filed)  # stored, whatever the reply says about its grid
    if m.group(2) != GRID_NAMES[p.grid]:
        fail(f"1 (routed to {m.group(2)}, expected {GRID_NAMES[p.grid]})", status, reply)
        return None
    return filed


# --- the report ---------------------------------------------------------------------------


def figures(batch: Batch) -> dict[str, float]:
    done = max(batch.conversations, 1)
    conv = batch.conversation_s or [0.0]
    req = batch.request_s or [0.0]
    alert = batch.alert_s or [0.0]
    steps = {f"{s}_p50_ms": quantile(batch.step_s[s] or [0.0], 0.5) * 1000 for s in STEPS}
    return {
        **steps,
        "reports_per_s": batch.conversations / batch.seconds,
        "requests_per_s": len(batch.request_s) / batch.seconds,
        "conv_p50_ms": quantile(conv, 0.5) * 1000,
        "conv_p99_ms": quantile(conv, 0.99) * 1000,
        "req_p50_ms": quantile(req, 0.5) * 1000,
        "req_p99_ms": quantile(req, 0.99) * 1000,
        "alert_p50_ms": quantile(alert, 0.5) * 1000,
        "alert_p99_ms": quantile(alert, 0.99) * 1000,
        "alert_max_ms": max(alert) * 1000,
        "alerts_done_after_ms": batch.alerts_done_after_s * 1000,
        "cpu_ms_per_report": batch.cpu_s * 1000 / done,
        "conversations": batch.conversations,
        "open_at_start": batch.open_at_start,
        "lists_shown": batch.lists_shown,
        "alerts": len(batch.alert_s),
        "alerts_missing": batch.alerts_missing,
        "failures": len(batch.failures),
        "seconds": batch.seconds,
    }


def show(name: str, f: dict[str, float]) -> None:
    print(
        f"  {name:12} {f['reports_per_s']:6.1f} reports/s {f['requests_per_s']:7.1f} req/s  "
        f"conversation p50 {f['conv_p50_ms']:5.0f} p99 {f['conv_p99_ms']:5.0f} ms  "
        f"request p50 {f['req_p50_ms']:5.1f} p99 {f['req_p99_ms']:6.1f} ms  "
        f"alert p50 {f['alert_p50_ms']:5.1f} p99 {f['alert_p99_ms']:6.1f} ms  "
        f"CPU {f['cpu_ms_per_report']:5.1f} ms/report  "
        f"({f['open_at_start']:.0f} open before, {f['lists_shown']:.0f} nearby lists, "
        f"{f['failures']:.0f} failed, "
        f"{f['alerts_missing']:.0f} alerts missing)",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small community, 1 short round")
    parser.add_argument("--residents", type=int, help="default 100000 (--quick: 10000)")
    parser.add_argument("--closed", type=int, help="closed reports, default 20000 (--quick: 2000)")
    parser.add_argument("--open", type=int, help="open reports, default 300 (--quick: 50)")
    parser.add_argument("--rounds", type=int, help="default 5 (--quick: 1)")
    parser.add_argument(
        "--per-round", type=int, help="conversations per configuration and round (default 1000)"
    )
    parser.add_argument("--warmup", type=int, help="conversations before the rounds (default 100)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    args.residents = args.residents or (10_000 if args.quick else 100_000)
    args.closed = args.closed if args.closed is not None else (2000 if args.quick else 20_000)
    args.open = args.open if args.open is not None else (50 if args.quick else 300)
    rounds = args.rounds or (1 if args.quick else 5)
    per_round = args.per_round or (150 if args.quick else 1000)
    warmup = args.warmup if args.warmup is not None else (30 if args.quick else 100)
    needed = warmup + rounds * per_round
    if needed > args.residents:
        sys.exit(f"{needed} conversations need more than {args.residents} residents")
    if needed + args.open > len(SLOTS):
        sys.exit(f"{needed} conversations need more than {len(SLOTS) - args.open} locations")
    for column, row, _ in SLOTS:
        x, y = lattice(column, row)
        if not (clear_of_edges(x, y) and clear_of_edges(x + NEAR[0], y + NEAR[1])):
            sys.exit(f"the lattice point ({x}, {y}) is too close to a grid edge")
    started = time.perf_counter()
    targets: list[Target] = []
    problems: dict[str, list[str]] = {}
    logs: dict[str, list[str]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="gongzhi-bench-reports-"))
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            print(
                f"preparing {len(args.only)} communities of {args.residents:,} residents, "
                f"{args.closed:,} closed and {args.open} open reports",
                flush=True,
            )
            for name in args.only:
                target = Target(name, workdir, args)
                targets.append(target)
                await target.prepare()
            for target in targets:
                await target.start()
                await target.run(session, warmup, args.concurrency, measured=False)
                print(f"  {target.name} up on port {target.port}, warmed up", flush=True)
            # Rounds interleave the configurations, so a machine that drifts moves every
            # configuration alike and the ratios taken within a round hold.
            for round_no in range(rounds):
                print(f"round {round_no + 1} of {rounds}: {per_round} reports each", flush=True)
                for target in targets:
                    batch = await target.run(session, per_round, args.concurrency, measured=True)
                    show(target.name, figures(batch))
                    if batch.failures:
                        print(f"  !!! {target.name}: {len(batch.failures)} FAILED conversations")
        for target in targets:
            await target.stop()
            problems[target.name] = await target.verify()
            logs[target.name] = server_log_problems(target.log)
    finally:
        for target in targets:
            await target.stop()
        for target in targets:
            await target.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    # --- figures ---
    results: dict[str, Any] = {
        "residents": args.residents,
        "closed_reports": args.closed,
        "open_reports": args.open,
        "rounds": rounds,
        "per_round": per_round,
        "warmup": warmup,
        "concurrency": args.concurrency,
        "configs": {},
    }
    print(
        f"\nmedian of {rounds} interleaved round(s) x {per_round} reports, "
        f"{args.concurrency} concurrent conversations, {args.residents:,} residents"
    )
    print(
        f"{'configuration':34} {'reports/s':>9} {'req/s':>7} {'conv p50':>9} {'conv p99':>9} "
        f"{'req p50':>8} {'req p99':>8} {'alert p50':>9} {'alert p99':>9} {'CPU ms':>7} "
        f"{'failed':>7}"
    )
    keys = (
        "reports_per_s",
        "requests_per_s",
        "conv_p50_ms",
        "conv_p99_ms",
        "req_p50_ms",
        "req_p99_ms",
        "alert_p50_ms",
        "alert_p99_ms",
        "alert_max_ms",
        "alerts_done_after_ms",
        "cpu_ms_per_report",
        *(f"{s}_p50_ms" for s in STEPS),
    )
    for target in targets:
        rows = [figures(b) for b in target.batches]
        med = {k: float(statistics.median(r[k] for r in rows)) for k in keys}
        failed = sum(len(b.failures) for b in target.all_batches)
        results["configs"][target.name] = {
            "median": med,
            "rounds": rows,
            "failures": failed,
            "failure_examples": [f.__dict__ for b in target.all_batches for f in b.failures][:10],
            "reports_filed": sum(len(b.filed) for b in target.all_batches),
            "nearby_lists_shown": sum(b.lists_shown for b in target.all_batches),
            "nearby_list_problems": [p for b in target.all_batches for p in b.list_problems],
            "alerts_missing": sum(b.alerts_missing for b in target.all_batches),
            "store_check": problems.get(target.name, []),
            "server_log": logs.get(target.name, []),
        }
        print(
            f"{LABELS[target.name]:34} {med['reports_per_s']:9.1f} {med['requests_per_s']:7.1f} "
            f"{med['conv_p50_ms']:9.0f} {med['conv_p99_ms']:9.0f} {med['req_p50_ms']:8.1f} "
            f"{med['req_p99_ms']:8.1f} {med['alert_p50_ms']:9.1f} {med['alert_p99_ms']:9.1f} "
            f"{med['cpu_ms_per_report']:7.1f} {failed:7d}"
        )
    print(
        "(latencies in ms; alert: the final reply received -> the fake received the worker's "
        "alert; CPU: the server processes' CPU per report)"
    )
    print("p50 ms of each request: " + " / ".join(STEPS))
    for target in targets:
        med = results["configs"][target.name]["median"]
        each = " / ".join(f"{med[f'{s}_p50_ms']:.1f}" for s in STEPS)
        print(f"  {LABELS[target.name]:34} {each}")
    print("alerts: worst single alert, and the last one after the batch's end (medians, ms)")
    for target in targets:
        med = results["configs"][target.name]["median"]
        print(
            f"  {LABELS[target.name]:34} max {med['alert_max_ms']:.0f}, "
            f"done {med['alerts_done_after_ms']:.0f} after the last reply"
        )
    by_name = {t.name: t for t in targets}
    if "tinydb" in by_name:
        print("\nreports/s against tinydb, per round, and their median:")
        ratios: dict[str, Any] = {}
        for target in targets:
            if target.name == "tinydb":
                continue
            pairs = zip(target.batches, by_name["tinydb"].batches, strict=True)
            values = [figures(t)["reports_per_s"] / figures(b)["reports_per_s"] for t, b in pairs]
            med_ratio = float(statistics.median(values))
            ratios[target.name] = {"rounds": values, "median": med_ratio}
            listed = " ".join(f"{v:.2f}" for v in values)
            print(f"  {target.name:12} / tinydb: rounds {listed}   median {med_ratio:.2f}")
        results["ratios_to_tinydb"] = ratios
    bad = False
    for target in targets:
        entry = results["configs"][target.name]
        print(
            f"\n{target.name}: {entry['reports_filed']} reports filed, "
            f"{entry['nearby_lists_shown']} nearby lists shown (answered 0)"
        )
        if entry["failures"]:
            bad = True
            print(f"!!! {target.name}: {entry['failures']} conversations FAILED. First ones:")
            for f in entry["failure_examples"]:
                print(
                    f"    #{f['conversation']} {f['resident']} step {f['step']}: "
                    f"HTTP {f['status']} {f['reply']!r}"
                )
        if entry["nearby_list_problems"]:
            bad = True
            print(f"!!! {target.name}: nearby lists missing or unexpected:")
            for p in entry["nearby_list_problems"][:10]:
                print(f"    {p}")
        if entry["alerts_missing"]:
            bad = True
            print(
                f"!!! {target.name}: {entry['alerts_missing']} alerts had not arrived "
                f"{ALERT_WAIT:.0f} s after their batch"
            )
        if entry["store_check"]:
            bad = True
            print(f"!!! {target.name}: the store or the fake disagree with the replies:")
            for p in entry["store_check"]:
                print(f"    {p}")
        if entry["server_log"]:
            print(f"{target.name}: the server logged (WARNING and above):")
            for line in entry["server_log"]:
                print(f"    {line}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if bad:
        print("\n!!! THIS RUN HAD FAILURES: its figures are not valid. See above.")
    results["valid"] = not bad
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
