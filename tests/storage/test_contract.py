"""The storage contract: every backend must pass these, unchanged."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from bot.errors import ConflictError, StorageError
from storage.contract import Record, Store
from storage.schema import SCHEMA

if TYPE_CHECKING:
    from tests.storage.conftest import Stores

Reopen = Callable[[Store], Awaitable[Store]]


def keys(records: list[Record]) -> list[str]:
    return [record.key for record in records]


# --- get / put / insert / delete ------------------------------------------------------


async def test_missing_key_reads_as_none(store: Store) -> None:
    assert await store.collection("plain").get("nobody") is None


async def test_insert_creates_version_1(store: Store) -> None:
    plain = store.collection("plain")
    record = await plain.insert("a", {"n": 1, "nested": {"list": [1, "two", None]}})
    assert record == Record("a", 1, {"n": 1, "nested": {"list": [1, "two", None]}})
    assert await plain.get("a") == record


async def test_put_upserts_and_each_write_bumps_the_version(store: Store) -> None:
    plain = store.collection("plain")
    assert (await plain.put("a", {"n": 1})).version == 1
    assert (await plain.put("a", {"n": 2})).version == 2
    record = await plain.get("a")
    assert record is not None
    assert (record.version, record.data) == (2, {"n": 2})


async def test_insert_of_an_existing_key_conflicts_and_changes_nothing(store: Store) -> None:
    plain = store.collection("plain")
    await plain.insert("a", {"n": 1})
    with pytest.raises(ConflictError):
        await plain.insert("a", {"n": 2})
    assert await plain.get("a") == Record("a", 1, {"n": 1})


async def test_expect_version_must_match_exactly(store: Store) -> None:
    plain = store.collection("plain")
    with pytest.raises(ConflictError):
        await plain.put("a", {"n": 1}, expect_version=1)  # does not exist yet
    assert await plain.get("a") is None
    await plain.put("a", {"n": 1}, expect_version=0)
    await plain.put("a", {"n": 2}, expect_version=1)
    for stale in (0, 1, 3):
        with pytest.raises(ConflictError):
            await plain.put("a", {"n": 99}, expect_version=stale)
    assert await plain.get("a") == Record("a", 2, {"n": 2})
    assert (await plain.put("a", {"n": 3}, expect_version=2)).version == 3


async def test_delete_reports_whether_the_key_existed(store: Store) -> None:
    plain = store.collection("plain")
    await plain.put("a", {"n": 1})
    assert await plain.delete("a") is True
    assert await plain.get("a") is None
    assert await plain.delete("a") is False


async def test_a_deleted_key_starts_again_at_version_1(store: Store) -> None:
    plain = store.collection("plain")
    await plain.put("a", {"n": 1})
    await plain.put("a", {"n": 2})
    await plain.delete("a")
    assert (await plain.insert("a", {"n": 3})).version == 1


async def test_conditional_delete(store: Store) -> None:
    plain = store.collection("plain")
    await plain.put("a", {"n": 1})
    await plain.put("a", {"n": 2})
    with pytest.raises(ConflictError):
        await plain.delete("a", expect_version=1)
    with pytest.raises(ConflictError):
        await plain.delete("a", expect_version=0)
    assert (await plain.get("a")) == Record("a", 2, {"n": 2})
    assert await plain.delete("a", expect_version=2) is True
    assert await plain.delete("a", expect_version=0) is False  # 0 means "must not exist"
    with pytest.raises(ConflictError):
        await plain.delete("a", expect_version=2)


async def test_writes_to_one_collection_do_not_touch_another(store: Store) -> None:
    await store.collection("plain").put("a", {"owner": "x"})
    assert await store.collection("items").get("a") is None
    assert await store.collection("items").size() == 0


# --- what may be stored ----------------------------------------------------------------


async def test_chinese_and_other_unicode_round_trip(store: Store, reopen: Reopen) -> None:
    text = "小区东门路灯坏了，请尽快维修 🙏 — ümlaut \u2028 end\n"
    await store.collection("items").put("居民-甲", {"owner": "张三", "note": text})
    store = await reopen(store)
    items = store.collection("items")
    assert await items.get("居民-甲") == Record("居民-甲", 1, {"owner": "张三", "note": text})
    assert keys(await items.find("by_owner", ["张三"])) == ["居民-甲"]


async def test_data_comes_back_as_json(store: Store, reopen: Reopen) -> None:
    plain = store.collection("plain")
    record = await plain.put("a", {"tuple": (1, 2), "float": 1.5, "big": 2**62, "f": False})
    expected = {"tuple": [1, 2], "float": 1.5, "big": 2**62, "f": False}
    assert record.data == expected
    store = await reopen(store)
    fresh = await store.collection("plain").get("a")
    assert fresh is not None and fresh.data == expected


async def test_caller_mutation_after_a_write_does_not_leak_in(store: Store) -> None:
    plain = store.collection("plain")
    data: dict[str, Any] = {"n": 1, "nested": {"tags": ["a"]}}
    returned = await plain.put("a", data)
    data["n"] = 2
    data["nested"]["tags"].append("b")
    data["extra"] = True
    stored = await plain.get("a")
    assert stored is not None
    assert stored.data == {"n": 1, "nested": {"tags": ["a"]}}
    assert returned.data == {"n": 1, "nested": {"tags": ["a"]}}


@pytest.mark.parametrize(
    ("key", "data", "error"),
    [
        (123, {"n": 1}, TypeError),
        ("", {"n": 1}, ValueError),
        ("a", ["not", "an", "object"], TypeError),
        ("a", "text", TypeError),
        ("a", {"when": object()}, TypeError),
        ("a", {"ratio": math.nan}, ValueError),
        ("a", {"ratio": math.inf}, ValueError),
    ],
)
async def test_unstorable_writes_are_refused_and_leave_nothing(
    store: Store, key: Any, data: Any, error: type[Exception]
) -> None:
    plain = store.collection("plain")
    with pytest.raises(error):
        await plain.put(key, data)
    assert await plain.size() == 0
    await plain.put("ok", {"n": 1})  # the store is still healthy
    await store.ping()


async def test_an_index_field_must_hold_a_scalar(store: Store) -> None:
    items = store.collection("items")
    with pytest.raises(TypeError):
        await items.put("a", {"owner": ["x", "y"]})
    assert await items.get("a") is None
    assert await items.count("by_owner", ["x"]) == 0


async def test_undeclared_collection_and_index_are_key_errors(store: Store) -> None:
    with pytest.raises(KeyError):
        store.collection("nope")
    with pytest.raises(KeyError):
        await store.collection("items").find("nope", ["x"])
    with pytest.raises(KeyError):
        await store.collection("plain").count("by_owner", ["x"])


async def test_lookup_needs_one_value_per_indexed_field(store: Store) -> None:
    items = store.collection("items")
    with pytest.raises(ValueError):
        await items.find("by_owner_status", ["x"])
    with pytest.raises(ValueError):
        await items.count("by_owner", ["x", "y"])


# --- indexes -----------------------------------------------------------------------------


async def fill_items(store: Store) -> None:
    items = store.collection("items")
    rows = {
        "k05": {"owner": "ann", "status": "open"},
        "k01": {"owner": "ann", "status": "done"},
        "k03": {"owner": "bob", "status": "open"},
        "k04": {"owner": "ann", "status": "open"},
        "k02": {"owner": "ann", "status": "open"},
        "k06": {"status": "open"},  # no owner: in neither owner index
    }
    await asyncio.gather(*(items.put(key, data) for key, data in rows.items()))


async def test_find_returns_matches_in_key_order_up_to_limit(store: Store) -> None:
    await fill_items(store)
    items = store.collection("items")
    assert keys(await items.find("by_owner", ["ann"])) == ["k01", "k02", "k04", "k05"]
    assert keys(await items.find("by_owner", ["ann"], limit=2)) == ["k01", "k02"]
    assert keys(await items.find("by_owner", ["ann"], limit=0)) == []
    assert keys(await items.find("by_owner_status", ["ann", "open"])) == ["k02", "k04", "k05"]
    assert keys(await items.find("by_owner_status", ["ann", "open"], limit=1)) == ["k02"]
    assert await items.find("by_owner", ["nobody"]) == []
    record = (await items.find("by_owner_status", ["bob", "open"]))[0]
    assert record == Record("k03", 1, {"owner": "bob", "status": "open"})


async def test_count_matches_find(store: Store) -> None:
    await fill_items(store)
    items = store.collection("items")
    assert await items.count("by_owner", ["ann"]) == 4
    assert await items.count("by_owner_status", ["ann", "open"]) == 3
    assert await items.count("by_owner_status", ["open", "ann"]) == 0
    assert await items.count("by_owner", ["nobody"]) == 0


async def test_a_record_missing_an_indexed_field_is_not_in_that_index(store: Store) -> None:
    await fill_items(store)
    items = store.collection("items")
    assert await items.count("by_owner", [None]) == 0
    assert await items.count("by_owner_status", [None, "open"]) == 0
    assert await items.size() == 6


async def test_null_and_booleans_are_indexed_as_json_values(store: Store) -> None:
    items = store.collection("items")
    await items.put("null", {"owner": None})
    await items.put("true", {"owner": True})
    await items.put("one", {"owner": 1})
    await items.put("text", {"owner": "1"})
    assert keys(await items.find("by_owner", [None])) == ["null"]
    assert keys(await items.find("by_owner", [True])) == ["true"]
    assert keys(await items.find("by_owner", [1])) == ["one"]
    assert keys(await items.find("by_owner", ["1"])) == ["text"]


async def test_an_update_moves_the_record_between_index_entries(store: Store) -> None:
    await fill_items(store)
    items = store.collection("items")
    await items.put("k02", {"owner": "bob", "status": "done"})
    assert keys(await items.find("by_owner", ["ann"])) == ["k01", "k04", "k05"]
    assert keys(await items.find("by_owner", ["bob"])) == ["k02", "k03"]
    assert keys(await items.find("by_owner_status", ["ann", "open"])) == ["k04", "k05"]
    await items.put("k03", {"status": "open"})  # the field is dropped
    assert keys(await items.find("by_owner", ["bob"])) == ["k02"]
    await items.put("k06", {"owner": "bob", "status": "open"})  # the field is added
    assert keys(await items.find("by_owner", ["bob"])) == ["k02", "k06"]


async def test_a_delete_leaves_every_index(store: Store) -> None:
    await fill_items(store)
    items = store.collection("items")
    await items.delete("k04")
    assert keys(await items.find("by_owner", ["ann"])) == ["k01", "k02", "k05"]
    assert await items.count("by_owner_status", ["ann", "open"]) == 2


async def test_indexes_survive_a_restart(store: Store, reopen: Reopen) -> None:
    await fill_items(store)
    items = store.collection("items")
    await items.put("k02", {"owner": "bob", "status": "done", "email": "b@x"})
    await items.delete("k05")
    store = await reopen(store)
    items = store.collection("items")
    assert keys(await items.find("by_owner", ["ann"])) == ["k01", "k04"]
    assert keys(await items.find("by_owner_status", ["bob", "done"])) == ["k02"]
    with pytest.raises(ConflictError):
        await items.put("k09", {"email": "b@x"})


# --- unique indexes -----------------------------------------------------------------------


async def test_a_unique_value_can_be_held_by_one_record_only(store: Store, reopen: Reopen) -> None:
    items = store.collection("items")
    await items.put("a", {"owner": "ann", "email": "x@example.org"})
    with pytest.raises(ConflictError):
        await items.put("b", {"owner": "bob", "email": "x@example.org"})
    assert await items.get("b") is None
    assert await items.size() == 1
    assert keys(await items.find("by_owner", ["bob"])) == []
    assert keys(await items.find("by_email", ["x@example.org"])) == ["a"]
    store = await reopen(store)
    items = store.collection("items")
    assert await items.get("b") is None
    assert await items.size() == 1


async def test_a_record_may_keep_its_own_unique_value(store: Store) -> None:
    items = store.collection("items")
    await items.put("a", {"email": "x@example.org", "n": 1})
    assert (await items.put("a", {"email": "x@example.org", "n": 2})).version == 2


async def test_a_conflicting_update_keeps_the_old_record(store: Store) -> None:
    items = store.collection("items")
    await items.put("a", {"owner": "ann", "email": "a@example.org"})
    await items.put("b", {"owner": "bob", "email": "b@example.org"})
    with pytest.raises(ConflictError):
        await items.put("b", {"owner": "carl", "email": "a@example.org"})
    assert await items.get("b") == Record("b", 1, {"owner": "bob", "email": "b@example.org"})
    assert keys(await items.find("by_owner", ["carl"])) == []
    assert keys(await items.find("by_email", ["b@example.org"])) == ["b"]


async def test_a_unique_value_is_free_again_once_released(store: Store) -> None:
    items = store.collection("items")
    await items.put("a", {"email": "x@example.org"})
    await items.put("a", {"email": "y@example.org"})
    await items.put("b", {"email": "x@example.org"})
    await items.delete("a")
    await items.put("c", {"email": "y@example.org"})
    assert keys(await items.find("by_email", ["x@example.org"])) == ["b"]
    assert keys(await items.find("by_email", ["y@example.org"])) == ["c"]


async def test_a_multi_field_unique_index_compares_the_whole_tuple(store: Store) -> None:
    items = store.collection("items")
    await items.put("a", {"day": "2026-11-21", "seat": 1})
    await items.put("b", {"day": "2026-11-21", "seat": 2})
    await items.put("c", {"day": "2026-11-22", "seat": 1})
    with pytest.raises(ConflictError):
        await items.put("d", {"day": "2026-11-21", "seat": 2})
    assert await items.size() == 3


async def test_records_without_the_field_do_not_collide_on_a_unique_index(store: Store) -> None:
    items = store.collection("items")
    for key in "abc":
        await items.put(key, {"owner": "ann"})
    assert await items.size() == 3


# --- scan / size ------------------------------------------------------------------------------


async def test_scan_pages_through_everything_in_key_order(store: Store) -> None:
    plain = store.collection("plain")
    names = [f"k{n:03d}" for n in range(25)]
    await asyncio.gather(*(plain.put(key, {"n": key}) for key in reversed(names)))
    seen: list[str] = []
    after: str | None = None
    while True:
        page = await plain.scan(after=after, limit=10)
        if not page:
            break
        assert len(page) <= 10
        seen.extend(keys(page))
        after = page[-1].key
    assert seen == names
    assert keys(await plain.scan(after="k0095", limit=3)) == ["k010", "k011", "k012"]
    assert keys(await plain.scan(after="k024")) == []
    assert (await plain.scan(limit=1))[0] == Record("k000", 1, {"n": "k000"})


async def test_scan_reflects_inserts_and_deletes(store: Store) -> None:
    plain = store.collection("plain")
    await plain.put("b", {})
    assert keys(await plain.scan()) == ["b"]
    await plain.put("a", {})
    await plain.put("c", {})
    await plain.delete("b")
    assert keys(await plain.scan()) == ["a", "c"]


async def test_size_counts_records(store: Store) -> None:
    plain = store.collection("plain")
    assert await plain.size() == 0
    await plain.put("a", {})
    await plain.put("b", {})
    await plain.put("a", {"n": 2})
    assert await plain.size() == 2
    await plain.delete("a")
    assert await plain.size() == 1


# --- durability across restarts ------------------------------------------------------------


async def test_everything_survives_close_and_reopen(store: Store, reopen: Reopen) -> None:
    plain = store.collection("plain")
    for n in range(20):
        await plain.put(f"k{n:02d}", {"n": n})
    for n in range(0, 20, 2):
        await plain.put(f"k{n:02d}", {"n": n, "updated": True})
    for n in range(0, 20, 5):
        await plain.delete(f"k{n:02d}")
    expected = {record.key: record for record in await plain.scan()}
    store = await reopen(store)
    plain = store.collection("plain")
    assert {record.key: record for record in await plain.scan()} == expected
    assert await plain.size() == 16
    store = await reopen(store)  # and again, now from whatever the first reopen left
    assert {r.key: r for r in await store.collection("plain").scan()} == expected


async def test_many_concurrent_writers_survive_a_restart(store: Store, reopen: Reopen) -> None:
    plain = store.collection("plain")

    async def writer(n: int) -> None:
        for step in range(10):
            await plain.put(f"w{n:02d}-{step % 4}", {"n": n, "step": step})
        await plain.delete(f"w{n:02d}-3")

    await asyncio.gather(*(writer(n) for n in range(30)))
    store = await reopen(store)
    plain = store.collection("plain")
    assert await plain.size() == 90
    record = await plain.get("w07-1")
    assert record == Record("w07-1", 3, {"n": 7, "step": 9})


async def test_a_closed_store_refuses_work_and_close_is_idempotent(stores: Stores) -> None:
    store = await stores.open()
    await store.ping()
    plain = store.collection("plain")
    await plain.put("a", {})
    await store.close()
    await store.close()
    with pytest.raises(StorageError):
        await plain.put("b", {})
    with pytest.raises(StorageError):
        await plain.get("a")
    with pytest.raises(StorageError):
        await store.ping()


async def test_the_production_schema_opens_and_works(stores: Stores) -> None:
    store = await stores.open(SCHEMA)
    residents = store.collection("residents")
    await residents.put("o_1", {"subscribed": True, "first_seen": 1, "last_seen": 2})
    await residents.put("o_2", {"subscribed": False, "first_seen": 1, "last_seen": 2})
    await store.collection("conversations").put(
        "o_1", {"state": "report:location", "data": {"text": "路灯"}, "updated_at": 3}
    )
    store = await stores.reopen(store, SCHEMA)
    residents = store.collection("residents")
    assert keys(await residents.find("by_subscribed", [True])) == ["o_1"]
    conversation = await store.collection("conversations").get("o_1")
    assert conversation is not None and conversation.data["data"] == {"text": "路灯"}


# --- concurrency ---------------------------------------------------------------------------------


async def test_only_one_of_many_concurrent_inserts_wins(store: Store) -> None:
    plain = store.collection("plain")
    results = await asyncio.gather(
        *(plain.insert("claim", {"by": n}) for n in range(100)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, Record)]
    assert len(winners) == 1
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, Record))
    assert await plain.get("claim") == winners[0]


async def test_compare_and_set_increments_are_never_lost(store: Store, reopen: Reopen) -> None:
    plain = store.collection("plain")
    await plain.insert("counter", {"n": 0})

    async def increment() -> None:
        for _ in range(1000):
            current = await plain.get("counter")
            assert current is not None
            try:
                await plain.put(
                    "counter", {"n": current.data["n"] + 1}, expect_version=current.version
                )
                return
            except ConflictError:
                await asyncio.sleep(0)
        raise AssertionError("no progress after 1000 attempts")

    await asyncio.gather(*(increment() for _ in range(100)))
    final = await plain.get("counter")
    assert final is not None and final.data == {"n": 100} and final.version == 101
    store = await reopen(store)
    assert await store.collection("plain").get("counter") == final


async def test_only_one_concurrent_claim_of_a_unique_value_wins(store: Store) -> None:
    items = store.collection("items")
    results = await asyncio.gather(
        *(items.insert(f"k{n:02d}", {"email": "same@example.org"}) for n in range(50)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Record) for r in results) == 1
    assert await items.size() == 1
    assert await items.count("by_email", ["same@example.org"]) == 1


async def test_update_applies_every_concurrent_change_once(store: Store) -> None:
    plain = store.collection("plain")

    def bump(current: Record | None) -> dict[str, Any]:
        return {"n": (current.data["n"] if current else 0) + 1}

    await asyncio.gather(*(plain.update("counter", bump) for _ in range(100)))
    saved = await plain.get("counter")
    assert saved is not None and saved.data == {"n": 100} and saved.version == 100


async def test_update_that_raises_writes_nothing(store: Store) -> None:
    plain = store.collection("plain")
    await plain.put("a", {"n": 1})

    def refuse(current: Record | None) -> dict[str, Any]:
        raise ValueError("not allowed")

    with pytest.raises(ValueError, match="not allowed"):
        await plain.update("a", refuse)
    with pytest.raises(ValueError):
        await plain.update("missing", refuse)
    kept = await plain.get("a")
    assert kept is not None and kept.data == {"n": 1} and kept.version == 1
    assert await plain.get("missing") is None
