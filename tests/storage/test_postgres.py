"""What only the PostgreSQL backend has: migrations, its indexes' plans, its failures, load()."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from bot.errors import ConflictError, StorageError
from storage.contract import CollectionSpec, IndexSpec, Record
from storage.pg_migrations import available
from storage.postgres_store import PostgresCollection, PostgresStore, index_name
from storage.schema import SCHEMA
from tests.services import PG_DSN, need, pg_namespace
from tests.storage.conftest import TEST_SCHEMA


class Opened:
    """Opens stores in one namespace and closes them all at the end of the test."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.stores: list[PostgresStore] = []

    async def open(
        self, schema: Sequence[CollectionSpec] = TEST_SCHEMA, **options: Any
    ) -> PostgresStore:
        store = PostgresStore(PG_DSN, schema, namespace=self.namespace, **options)
        self.stores.append(store)
        await store.open()
        return store

    async def connect(self) -> Any:
        """A bare connection in the namespace, for looking behind the store's back."""
        return await asyncpg.connect(PG_DSN, server_settings={"search_path": self.namespace})

    async def close_all(self) -> None:
        for store in self.stores:
            await store.close()


@pytest_asyncio.fixture
async def pg() -> AsyncIterator[Opened]:
    async with pg_namespace() as namespace:
        opened = Opened(namespace)
        try:
            yield opened
        finally:
            await opened.close_all()


# --- migrations ----------------------------------------------------------------------------


async def applied(pg: Opened) -> list[tuple[int, str]]:
    conn = await pg.connect()
    try:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [(row[0], row[1]) for row in rows]


async def test_migrations_are_applied_once_however_often_the_store_opens(pg: Opened) -> None:
    shipped = [(m.version, m.name) for m in available()]
    assert shipped[0] == (1, "records")
    store = await pg.open()
    await store.collection("plain").put("a", {"n": 1})
    await store.close()
    store = await pg.open()
    assert await store.collection("plain").get("a") == Record("a", 1, {"n": 1})
    assert await applied(pg) == shipped


async def test_eight_processes_starting_together_apply_each_migration_once(pg: Opened) -> None:
    stores = await asyncio.gather(*(pg.open(SCHEMA) for _ in range(8)))
    assert await applied(pg) == [(m.version, m.name) for m in available()]
    conn = await pg.connect()
    try:
        rows = await conn.fetch(
            "SELECT c.relname, x.indisvalid FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = 'records'::regclass"
        )
    finally:
        await conn.close()
    expected = {index_name(spec.name, index) for spec in SCHEMA for index in spec.indexes}
    assert {row[0]: row[1] for row in rows if row[0].startswith("ix_")} == dict.fromkeys(
        expected, True
    )
    # Every one of them works on the same data.
    await stores[0].collection("residents").put("o_1", {"subscribed": True})
    for store in stores:
        assert await store.collection("residents").count("by_subscribed", [True]) == 1


async def test_a_database_newer_than_the_code_refuses_to_start(pg: Opened) -> None:
    await (await pg.open()).close()
    conn = await pg.connect()
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')"
        )
    finally:
        await conn.close()
    with pytest.raises(StorageError, match=r"version 9999, newer than this code knows"):
        await pg.open()


async def test_a_missing_namespace_is_a_clear_error() -> None:
    need("postgres")
    store = PostgresStore(PG_DSN, TEST_SCHEMA, namespace="no_such_schema_here")
    with pytest.raises(StorageError, match=r"schema 'no_such_schema_here' does not exist"):
        await store.open()
    await store.close()


async def test_a_unique_index_that_the_data_breaks_refuses_to_start(pg: Opened) -> None:
    loose = CollectionSpec("items", indexes=(IndexSpec("by_owner", ("owner",)),))
    store = await pg.open([loose])
    await store.collection("items").put("a", {"email": "same@x"})
    await store.collection("items").put("b", {"email": "same@x"})
    await store.close()
    with pytest.raises(StorageError, match=r"unique index 'by_email' cannot be built"):
        await pg.open()
    # The failed concurrent build left an invalid index; once the data is fixed, the
    # next start replaces it.
    conn = await pg.connect()
    try:
        await conn.execute("DELETE FROM records WHERE key = 'b'")
    finally:
        await conn.close()
    store = await pg.open()
    assert keys(await store.collection("items").find("by_email", ["same@x"])) == ["a"]


def test_index_names_are_deterministic_short_and_follow_the_definition() -> None:
    index = IndexSpec("by_owner", ("owner",))
    name = index_name("items", index)
    assert name == index_name("items", IndexSpec("by_owner", ("owner",)))
    assert name.startswith("ix_items_by_owner_") and len(name) <= 63
    assert index_name("items", IndexSpec("by_owner", ("owner", "status"))) != name
    assert index_name("items", IndexSpec("by_owner", ("owner",), unique=True)) != name
    assert len(index_name("c" * 60, IndexSpec("i" * 60, ("f",)))) == 63


@pytest.mark.parametrize(
    "spec",
    [
        CollectionSpec("Items"),
        CollectionSpec("items'; DROP TABLE records; --"),
        CollectionSpec("items", indexes=(IndexSpec("by-owner", ("owner",)),)),
        CollectionSpec("items", indexes=(IndexSpec("by_owner", ("it's",)),)),
        CollectionSpec("items", indexes=(IndexSpec("by_owner", ("a\\b",)),)),
        CollectionSpec("items", indexes=(IndexSpec("by_owner", ()),)),
    ],
)
def test_names_that_would_reach_sql_are_validated(spec: CollectionSpec) -> None:
    with pytest.raises(ValueError):
        PostgresStore(PG_DSN, [spec])


# --- failures have deadlines and clear messages -------------------------------------------


async def test_a_refused_connection_fails_quickly_and_names_the_server_not_the_password() -> None:
    store = PostgresStore(
        "postgresql://gongzhi:s3cret-pw@127.0.0.1:1/proddb", TEST_SCHEMA, command_timeout=2.0
    )
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        await store.open()
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "127.0.0.1:1/proddb" in message
    assert "s3cret-pw" not in message and "s3cret-pw" not in repr(caught.value.__cause__)
    assert "\n" not in message
    with pytest.raises(StorageError):
        await store.collection("plain").get("a")
    await store.close()


async def test_a_query_blocked_past_its_deadline_is_a_storage_error(pg: Opened) -> None:
    store = await pg.open(command_timeout=0.5)
    plain = store.collection("plain")
    await plain.put("a", {"n": 1})
    blocker = await pg.connect()
    try:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM records WHERE key = 'a' FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(StorageError, match=r"no answer within 0.5 s"):
                await plain.put("a", {"n": 2})
            assert time.monotonic() - started < 2
    finally:
        await blocker.close()
    # The pool recovered its connection and the row was not changed.
    assert await plain.get("a") == Record("a", 1, {"n": 1})
    await store.ping()


# --- what is stored -------------------------------------------------------------------------


async def test_chinese_null_booleans_and_numbers_round_trip_as_json(pg: Opened) -> None:
    store = await pg.open()
    items = store.collection("items")
    data = {
        "owner": "张三",
        "note": "东门路灯坏了 🙏 \\u0000 is just text",
        "nothing": None,
        "yes": True,
        "no": False,
        "one": 1,
        "ratio": 0.5,
        "huge": 1.5e300,
        "tiny": 1e-7,
        "big": 10**30,
        "nested": {"list": [None, True, 1.0, "二"]},
    }
    await items.put("居民-甲", data)
    store = await pg.open()
    record = await store.collection("items").get("居民-甲")
    assert record is not None and record.data == data
    assert [type(record.data[name]) for name in ("huge", "tiny", "big", "one")] == [
        float,
        float,
        int,
        int,
    ]
    assert record.data["nested"]["list"][2] == 1.0
    assert isinstance(record.data["nested"]["list"][2], float)
    conn = await pg.connect()
    try:
        row = await conn.fetchrow(
            "SELECT data->'owner' = '\"张三\"'::jsonb, jsonb_typeof(data->'nothing'), "
            "jsonb_typeof(data->'yes') FROM records WHERE key = '居民-甲'"
        )
    finally:
        await conn.close()
    assert tuple(row) == (True, "null", "boolean")


async def test_what_postgresql_cannot_hold_is_refused_before_any_write(pg: Opened) -> None:
    store = await pg.open()
    plain = store.collection("plain")
    with pytest.raises(ValueError, match="NUL"):
        await plain.put("a", {"text": "a\x00b"})
    with pytest.raises(ValueError, match="NUL"):
        await plain.put("a\x00", {})
    with pytest.raises(ValueError):
        await plain.put("a", {"text": "\ud800"})
    items = store.collection("items")
    with pytest.raises(ValueError, match="refused by PostgreSQL"):
        await items.put("a", {"owner": secrets.token_hex(8000)})  # beyond a btree entry
    assert await plain.size() == 0
    assert await items.size() == 0
    assert await plain.get("a\x00") is None
    assert await store.collection("items").find("by_owner", ["\x00"]) == []


# --- load() for `python -m bot migrate` -------------------------------------------------------


async def test_load_keeps_versions_and_is_idempotent(pg: Opened) -> None:
    store = await pg.open()
    items = store.collection("items")
    await items.put("k0", {"owner": "old"})
    records = [
        Record("k0", 4, {"owner": "ann", "email": "a@x"}),
        Record("k1", 7, {"owner": "ann", "note": "二"}),
        Record("k2", 1, {"owner": "bob"}),
    ]
    assert await store.load("items", records) == 3
    assert await store.load("items", records) == 0  # nothing left to change
    assert [await items.get(r.key) for r in records] == records
    assert keys(await items.find("by_owner", ["ann"])) == ["k0", "k1"]
    assert await store.count_all("items") == 3
    assert (await items.put("k1", {"owner": "carl"}, expect_version=7)).version == 8
    assert await store.load("items", records) == 1  # only k1 differs
    assert await items.get("k1") == records[1]
    with pytest.raises(ConflictError):
        await store.load("items", [Record("k9", 1, {"email": "a@x"})])
    with pytest.raises(ValueError):
        await store.load("items", [records[2], records[2]])
    with pytest.raises(TypeError):
        await store.load("items", [Record("k9", 1, {"owner": ["a"]})])
    with pytest.raises(KeyError):
        await store.load("nope", records)
    assert await store.count_all("items") == 3
    assert await store.load("items", []) == 0


# --- every query is served by its index -----------------------------------------------------

EXPLAIN_SCHEMA = (*SCHEMA, *TEST_SCHEMA)
ROWS = 20_000


def synthetic(collection: str, n: int) -> dict[str, Any]:
    """Documents whose indexed values are selective, as a real community's are."""
    documents: dict[str, dict[str, Any]] = {
        "residents": {"subscribed": n % 10 != 0, "first_seen": n, "last_seen": n},
        "conversations": {"state": "report:location", "data": {}, "updated_at": n},
        "feedback": {"openid": f"o{n % 5000}", "text": "路灯", "created_at": n},
        "counters": {"value": n},
        "audit": {
            "actor": "api",
            "action": "feedback.reply",
            "target": f"feedback/{n}",
            "detail": {},
            "at": n,
        },
        "activities": {
            "number": n,
            "title": "夜跑",
            # Most activities are past; a few dozen are open at any time.
            "status": "open" if n % 500 == 0 else ("done", "cancelled")[n % 2],
        },
        "signups": {"openid": f"o{n % 5000}", "activity": n % 300, "status": "confirmed"},
        "ledger": {
            "account": f"pts:o{n % 5000}",
            "seq": n // 5000 + 1,
            "amount": 10,
            "balance": 10,
            "idem": f"checkin:{n}",
        },
        "balances": {"seq": 1, "balance": n % 300},
        "catalogue": {"name": "环保袋", "cost": 10, "active": True, "created_at": n},
        "redemptions": {
            "openid": f"o{n % 5000}",
            "state": ("issued", "used", "used", "used", "failed")[n % 5] if n % 1000 else "pending",
        },
        "reports": {
            "number": n,
            "reporter": f"o{n % 5000}",
            # Most reports are closed; a few hundred are open at any time.
            "state": ("reported", "accepted")[n % 2]
            if n % 100 == 0
            else ("resolved", "rejected")[n % 2],
            "grid": f"g{n % 40}",
            "category": ("环境卫生", "排水", "车辆停放", "绿化", "治安", "设施损坏", "其他")[n % 7],
            "cell": f"{15335 + n % 50}:{52030 + n // 50 % 50}",
        },
        "follows": {"openid": f"o{n % 5000}", "report": n},
        "grids": {"name": f"网格{n}", "area": {}, "workers": []},
        "alerts": {"report": n, "state": "pending" if n % 1000 == 0 else "sent"},
        "schedules": {"name": f"定时{n}", "cron": "0 9 1 * *", "enabled": True},
        "schedule_runs": {"schedule": f"s{n % 20}", "fire_at": n, "ran_at": n},
        "households": {
            "building": f"{n % 200}",
            "unit": "1",
            "room": f"{n}",
            "grid": f"g{n % 40}",
            "representative": f"o{n}",
            "members": [],
        },
        "memberships": {"household": f"{n % 200}-1-{n}", "at": n},
        "meetings": {
            "number": n,
            "title": "坝坝会",
            # Most meetings are past; one or two are scheduled at any time.
            "status": "scheduled" if n % 500 == 0 else ("done", "cancelled")[n % 2],
        },
        "rsvps": {
            "meeting": n % 300,
            "household": f"h{n}",
            "answer": ("attend", "absent", "maybe", "")[n % 4],
        },
        "agenda": {"meeting": n % 300, "openid": f"o{n % 5000}", "text": "议题"},
        "votes": {
            "number": n,
            "status": "open" if n % 500 == 0 else ("closed" if n % 50 == 0 else "final"),
        },
        "ballots": {"vote": n % 300, "household": f"h{n}", "choice": n % 10},
        "objections": {"vote": n % 300, "openid": f"o{n % 5000}", "text": "异议"},
        "campaigns": {
            "campaign": f"c{n % 50}",
            "period": f"p{n}",
            # Most pushes are done; a few run at any time.
            "state": ("running", "claimed")[n % 2] if n % 500 == 0 else "done",
        },
        "deliveries": {
            "campaign": f"c{n % 40}:p",
            "recipient": f"o{n}",
            "state": ("pending", "sending", "retry")[n % 3]
            if n % 100 == 0
            else ("sent", "sent", "sent", "failed", "unknown")[n % 5],
        },
        "mass_quota": {"openid": f"o{n}", "month": "2026-12", "count": 1, "campaigns": ["c:p"]},
        "users": {"role": ("grid", "admin")[n % 2], "password_hash": "$argon2id$x", "failures": 0},
        "sessions": {"user": f"u{n % 300}", "csrf": "c", "expires_at": n},
        "items": {
            "owner": f"u{n % 4000}",
            "status": ("open", "done", "wait")[n % 3],
            "email": f"{n}@x",
            "day": f"d{n // 10}",
            "seat": n % 10,
        },
        "plain": {"n": n},
    }
    return documents[collection]


def sample_value(field: str) -> Any:
    return {
        "subscribed": True,
        "openid": "o17",
        "account": "pts:o17",
        "idem": "checkin:17",
        "state": "pending",
        "reporter": "o17",
        "grid": "g17",
        "category": "排水",
        "cell": "15336:52031",
        "schedule": "s17",
        "building": "17",
        "meeting": 17,
        "answer": "attend",
        "vote": 17,
        "choice": 1,
        "campaign": "c17:p",
        "owner": "u17",
        "status": "open",
        "email": "17@x",
        "day": "d1",
        "seat": 7,
        "user": "u17",
    }[field]


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def sql_literal(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return "'" + text.replace("'", "''") + "'"


async def explain(conn: Any, sql: str, args: Sequence[object], *, generic: bool) -> list[str]:
    """The plan's node types with their index, for the statement as asyncpg prepares it."""
    mode = "force_generic_plan" if generic else "force_custom_plan"
    await conn.execute(f"SET plan_cache_mode = {mode}")
    await conn.execute(f"PREPARE q AS {sql}")
    try:
        call = ", ".join(sql_literal(arg) for arg in args)
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE q({call})")
    finally:
        await conn.execute("DEALLOCATE q")
    (top,) = json.loads(raw)
    return [f"{node['Node Type']}:{node.get('Index Name', '')}" for node in plan_nodes(top["Plan"])]


def statements(collection: PostgresCollection) -> Iterator[tuple[str, str, list[object]]]:
    """(intended index, sql, arguments) for every look-up the collection makes."""
    sql = collection.sql
    yield "records_pkey", sql.get, ["k17"]
    yield "records_pkey", sql.get_for_update, ["k17"]
    yield "records_pkey", sql.exists, ["k17"]
    yield "records_pkey", sql.update_if, ["k17", 1, "{}"]
    yield "records_pkey", sql.delete, ["k17"]
    yield "records_pkey", sql.delete_if, ["k17", 1]
    yield "records_pkey", sql.scan_first, [100]
    yield "records_pkey", sql.scan_after, ["k17", 100]
    for name, index in sql.indexes.items():
        values: list[object] = [json.dumps(sample_value(field)) for field in index.spec.fields]
        intended = index_name(collection.name, collection.spec.index(name))
        yield intended, index.find, [*values, 100]
        yield intended, index.count, values


@pytest.mark.parametrize("seqscan", ["on", "off"], ids=["planner-choice", "seqscan-off"])
async def test_every_lookup_is_served_by_its_index(pg: Opened, seqscan: str) -> None:
    """Both plan kinds asyncpg can end up with (custom for the first executions, then
    possibly generic) use the intended index. With ``enable_seqscan = on`` the table
    holds 20k records per collection with realistic selectivity and the planner must
    choose the index itself; ``off`` proves each index is usable by the exact SQL."""
    store = await pg.open(EXPLAIN_SCHEMA)
    for spec in EXPLAIN_SCHEMA:
        records = [Record(f"k{n}", 1, synthetic(spec.name, n)) for n in range(ROWS)]
        assert await store.load(spec.name, records, timeout=120) == ROWS
    conn = await pg.connect()
    try:
        await conn.execute("ANALYZE records")
        await conn.execute(f"SET enable_seqscan = {seqscan}")
        checked = 0
        for spec in EXPLAIN_SCHEMA:
            for intended, sql, args in statements(store.collection(spec.name)):
                for generic in (False, True):
                    nodes = await explain(conn, sql, args, generic=generic)
                    kind = "generic" if generic else "custom"
                    assert not any(node.startswith("Seq Scan") for node in nodes), (
                        kind,
                        sql,
                        nodes,
                    )
                    assert any(
                        node
                        in (
                            f"Index Scan:{intended}",
                            f"Index Only Scan:{intended}",
                            f"Bitmap Index Scan:{intended}",
                        )
                        for node in nodes
                    ), (kind, sql, nodes)
                    checked += 1
        assert checked == 2 * sum(8 + 2 * len(spec.indexes) for spec in EXPLAIN_SCHEMA)
    finally:
        await conn.close()


def keys(records: list[Record]) -> list[str]:
    return [record.key for record in records]


async def test_a_hot_counter_takes_a_burst_from_two_processes_without_giving_up() -> None:
    """Regression: the compare-and-set loop gave up at about ten concurrent callers
    ("counters/report stayed contended for 50 attempts", a burst of 报事 on two
    processes); PostgreSQL updates now queue on a row lock instead."""
    async with pg_namespace() as namespace:
        stores = [
            PostgresStore(PG_DSN, TEST_SCHEMA, namespace=namespace, pool_size=20) for _ in range(2)
        ]
        for store in stores:
            await store.open()
        try:

            async def bump(store: PostgresStore) -> int:
                saved = await store.collection("plain").update(
                    "counter", lambda current: {"n": (current.data["n"] if current else 0) + 1}
                )
                return int(saved.data["n"])

            handed_out = await asyncio.gather(*(bump(stores[n % 2]) for n in range(120)))
            assert sorted(handed_out) == list(range(1, 121))
        finally:
            for store in stores:
                await store.close()
