"""What only the embedded TinyDB backend promises: its files, its lock, its crashes."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tinydb import TinyDB
from tinydb.storages import JSONStorage

from bot.errors import StorageError, StoreLockedError
from storage.contract import CollectionSpec, IndexSpec, Record
from storage.tinydb_store import TinyDBStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCHEMA = (
    CollectionSpec("items", indexes=(IndexSpec("by_owner", ("owner",)),)),
    CollectionSpec("plain"),
)
LOGGER = "storage.tinydb"


def load_crash_writer() -> ModuleType:
    """The child script as a module, whatever import mode pytest runs in."""
    spec = importlib.util.spec_from_file_location("crash_writer", HERE / "crash_writer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def journals(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f"{name}.*.log"), key=lambda p: int(p.name.split(".")[1]))


async def opened(directory: Path, **options: Any) -> TinyDBStore:
    store = TinyDBStore(directory, SCHEMA, **options)
    await store.open()
    return store


async def fill(directory: Path, count: int = 5) -> None:
    """Write ``k1..k<count>`` and close without compacting: they stay in the journal."""
    store = await opened(directory)
    for n in range(1, count + 1):
        await store.collection("items").put(f"k{n}", {"owner": "ann", "n": n})
    await store.close()
    assert not (directory / "items.json").exists()


# --- the lock --------------------------------------------------------------------------


async def test_a_second_store_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = await opened(tmp_path)
    with pytest.raises(StoreLockedError) as refused:
        await opened(tmp_path)
    assert str(refused.value) == (
        f"data directory {tmp_path} is in use by another process (pid {os.getpid()}); "
        "stop it first or use another [storage] path"
    )
    await first.collection("plain").put("still", {"ok": True})  # the first one is unharmed
    await first.close()
    second = await opened(tmp_path)
    assert await second.collection("plain").get("still") is not None
    await second.close()


async def test_another_process_holding_the_directory_is_named(tmp_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "crash_writer.py"),
        "hold",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"READY\n"
        with pytest.raises(StoreLockedError, match=rf"\(pid {child.pid}\); stop it first"):
            await opened(tmp_path)
    finally:
        child.kill()
        await asyncio.wait_for(child.wait(), 30)
    # The kernel drops a dead process's lock: no stale lock file to clean up by hand.
    store = await opened(tmp_path)
    await store.close()


# --- the files ---------------------------------------------------------------------------


async def test_the_snapshot_is_a_plain_tinydb_database(tmp_path: Path) -> None:
    store = await opened(tmp_path, compact_after=5)
    items = store.collection("items")
    for n in range(30):
        await items.put(f"k{n:02d}", {"owner": "张三", "n": n})
    await items.delete("k00")
    await store.close()
    with TinyDB(
        tmp_path / "items.json", storage=JSONStorage, access_mode="r", encoding="utf-8"
    ) as db:
        docs = {doc["k"]: doc for doc in db.table("items").all()}
        assert len(docs) == 29 and "k00" not in docs
        assert docs["k07"] == {"k": "k07", "v": 1, "d": {"owner": "张三", "n": 7}}
        (meta,) = db.table("_meta").all()
        assert isinstance(meta["replay_from"], int)


async def test_the_journal_is_compacted_away(tmp_path: Path) -> None:
    store = await opened(tmp_path, compact_after=10)
    for n in range(100):
        await store.collection("plain").put(f"k{n % 7}", {"n": n})
    await store.close()
    remaining = sum(len(path.read_bytes().splitlines()) for path in journals(tmp_path, "plain"))
    assert remaining <= 10
    store = await opened(tmp_path)
    assert await store.collection("plain").get("k6") == Record("k6", 14, {"n": 97})
    await store.close()


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b'0badf00d {"k":"k6","v":1,"d":{"ow', id="no-newline"),
        pytest.param(b'00000000 {"k":"k6","v":1,"d":{}}\n', id="bad-crc"),
        pytest.param(b"\x00\x00\x00\x00\x00\x00", id="zeros"),
    ],
)
async def test_an_unfinished_last_write_is_dropped_and_logged(
    tmp_path: Path, tail: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    await fill(tmp_path)
    (log,) = journals(tmp_path, "items")
    with log.open("ab") as handle:
        handle.write(tail)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store = await opened(tmp_path)
    assert any(
        record.levelno == logging.WARNING and str(log) in record.getMessage()
        for record in caplog.records
    )
    items = store.collection("items")
    assert await items.size() == 5 and await items.get("k6") is None
    await items.put("k7", {"owner": "bob"})  # appends after the cut, not after the garbage
    await store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store = await opened(tmp_path)
    assert not caplog.records
    assert [r.key for r in await store.collection("items").scan()] == [
        "k1",
        "k2",
        "k3",
        "k4",
        "k5",
        "k7",
    ]
    await store.close()


async def test_a_corrupt_line_followed_by_others_refuses_to_start(tmp_path: Path) -> None:
    await fill(tmp_path)
    (log,) = journals(tmp_path, "items")
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"n":2', b'"n":9')  # a flipped bit in an acknowledged write
    log.write_bytes(b"".join(lines))
    with pytest.raises(StorageError, match=rf"{log}.* line 2 is corrupt \(checksum mismatch\)"):
        await opened(tmp_path)
    assert log.read_bytes() == b"".join(lines)  # left as found, for whoever restores it
    with pytest.raises(StorageError, match="is corrupt"):  # not "locked": it let go
        await opened(tmp_path)


async def test_a_corrupt_snapshot_refuses_to_start(tmp_path: Path) -> None:
    store = await opened(tmp_path, compact_after=2)
    for n in range(10):
        await store.collection("items").put(f"k{n}", {"n": n})
    await store.close()
    snapshot = tmp_path / "items.json"
    snapshot.write_bytes(snapshot.read_bytes()[:-20])
    with pytest.raises(StorageError, match=rf"snapshot {snapshot} is corrupt"):
        await opened(tmp_path)


async def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    await fill(tmp_path)
    (tmp_path / "items.json.tmp").write_text('{"items": {"1": ', encoding="utf-8")
    store = await opened(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))
    assert await store.collection("items").size() == 5
    await store.close()


async def test_a_journal_already_in_the_snapshot_is_not_replayed(tmp_path: Path) -> None:
    """A compaction that died between writing its snapshot and deleting the old
    journal must not roll records back to that journal's older values."""
    await fill(tmp_path)
    (old,) = journals(tmp_path, "items")
    saved = old.read_bytes()
    store = await opened(tmp_path, compact_after=2)
    for n in range(1, 6):
        await store.collection("items").put(f"k{n}", {"owner": "bob", "n": n * 10})
    await store.close()
    assert not old.exists()
    old.write_bytes(saved)
    store = await opened(tmp_path)
    assert await store.collection("items").get("k3") == Record("k3", 2, {"owner": "bob", "n": 30})
    assert await store.collection("items").count("by_owner", ["ann"]) == 0
    await store.close()
    assert not old.exists()


async def test_a_new_unique_index_over_duplicates_refuses_to_start(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await store.collection("plain").put("a", {"email": "same@example.org"})
    await store.collection("plain").put("b", {"email": "same@example.org"})
    await store.close()
    stricter = (
        SCHEMA[0],
        CollectionSpec("plain", indexes=(IndexSpec("by_email", ("email",), unique=True),)),
    )
    store = TinyDBStore(tmp_path, stricter)
    with pytest.raises(StorageError, match=r"unique index 'by_email' holds .* 'a' and 'b'"):
        await store.open()
    store = TinyDBStore(tmp_path, SCHEMA)  # the refused open let go of the directory
    await store.open()
    await store.close()


async def test_a_new_index_leaves_out_records_it_cannot_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await opened(tmp_path)
    await store.collection("plain").put("a", {"owner": ["x", "y"]})
    await store.collection("plain").put("b", {"owner": "x"})
    await store.close()
    indexed = (SCHEMA[0], CollectionSpec("plain", indexes=(IndexSpec("by_owner", ("owner",)),)))
    store = TinyDBStore(tmp_path, indexed)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await store.open()
    assert any("left out of index by_owner" in r.getMessage() for r in caplog.records)
    plain = store.collection("plain")
    assert [r.key for r in await plain.find("by_owner", ["x"])] == ["b"]
    assert await plain.get("a") is not None
    await store.close()


# --- while running -------------------------------------------------------------------------


async def test_compaction_under_concurrent_writes_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = await opened(tmp_path, compact_after=25)
    items = store.collection("items")
    expected: dict[str, Record | None] = {}

    async def writer(n: int) -> None:
        rng = random.Random(n)
        for step in range(60):
            key = f"k{rng.randrange(150):03d}"
            if rng.random() < 0.15:
                await items.delete(key)
                expected[key] = None
            else:
                expected[key] = await items.put(key, {"owner": f"o{n % 3}", "step": step})

    await asyncio.gather(*(writer(n) for n in range(40)))
    compactions = sum("compacted items" in record.getMessage() for record in caplog.records)
    assert compactions >= 5
    survivors = {key: record for key, record in expected.items() if record is not None}
    assert {r.key: r for r in await items.scan(limit=1000)} == survivors
    await store.close()
    store = await opened(tmp_path)
    items = store.collection("items")
    assert {r.key: r for r in await items.scan(limit=1000)} == survivors
    owners = {
        f"o{n}": sorted(k for k, r in survivors.items() if r.data["owner"] == f"o{n}")
        for n in range(3)
    }
    for owner, keys in owners.items():
        assert [r.key for r in await items.find("by_owner", [owner], limit=1000)] == keys
    await store.close()


async def test_close_waits_for_writes_in_flight(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    plain = store.collection("plain")
    writes = [asyncio.ensure_future(plain.put(f"k{n:03d}", {"n": n})) for n in range(300)]
    await asyncio.sleep(0)
    await store.close()
    assert all(write.done() and write.exception() is None for write in writes)
    store = await opened(tmp_path)
    assert await store.collection("plain").size() == 300
    await store.close()


async def test_a_failed_disk_write_fails_the_store_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = await opened(tmp_path)
    plain = store.collection("plain")
    await plain.put("before", {"n": 1})

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", disk_full)
    with (
        caplog.at_level(logging.ERROR, logger=LOGGER),
        pytest.raises(StorageError, match="No space left on device"),
    ):
        await plain.put("during", {"n": 2})
    assert any("failed" in record.getMessage() for record in caplog.records)
    monkeypatch.undo()
    with pytest.raises(StorageError, match="refuses reads and writes"):
        await plain.put("after", {"n": 3})
    with pytest.raises(StorageError):
        await plain.get("before")
    with pytest.raises(StorageError):
        await store.ping()
    await store.close()
    store = await opened(tmp_path)
    assert await store.collection("plain").get("before") == Record("before", 1, {"n": 1})
    assert await store.collection("plain").get("after") is None
    await store.close()


async def test_a_hung_disk_fails_writers_instead_of_hanging_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await opened(tmp_path)
    monkeypatch.setattr(store, "WRITE_DEADLINE", 0.2)
    monkeypatch.setattr(store, "_WATCHDOG_PERIOD", 0.05)
    await store.collection("plain").put("before", {})  # the watchdog now ticks fast
    real_fdatasync = os.fdatasync

    def hang(fd: int) -> None:
        time.sleep(1.0)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", hang)
    started = time.monotonic()
    with pytest.raises(StorageError, match="has not finished after"):
        await store.collection("plain").put("stuck", {})
    assert time.monotonic() - started < 0.9
    with pytest.raises(StorageError):
        await store.ping()
    await store.close()


# --- the crash test ----------------------------------------------------------------------------

State = tuple[int, str] | None
"""A key's state: (version, seq of the write) or None when absent."""

CRASH_ROUNDS = 100
CRASH_COMPACT_AFTER = 40


def read_child_output(path: Path) -> Iterator[list[str]]:
    text = path.read_bytes().decode("utf-8")
    lines = text.split("\n")
    # The last element is "" after a complete line, or a line cut by the kill.
    for line in lines[:-1]:
        yield line.split(" ")


def expected_states(
    before: dict[tuple[str, str], State], output: Path
) -> tuple[dict[tuple[str, str], set[State]], int]:
    """For every key the child touched: the states a correct recovery may show."""
    acked: dict[tuple[str, str], State] = {}
    pending: dict[tuple[str, str], State] = {}
    acks = 0
    for fields in read_child_output(output):
        if fields == ["READY"]:
            continue
        kind, name, key, op = fields[:4]
        state: State = (int(fields[4]), fields[5]) if op == "put" else None
        slot = (name, key)
        if kind == "I":
            assert slot not in pending, f"two writes of {slot} in flight"
            pending[slot] = state
        else:
            assert kind == "A" and pending.pop(slot) == state
            acked[slot] = state
            acks += 1
    allowed: dict[tuple[str, str], set[State]] = {}
    for slot in acked.keys() | pending.keys():
        base = acked[slot] if slot in acked else before.get(slot)
        allowed[slot] = {base} | ({pending[slot]} if slot in pending else set())
    return allowed, acks


async def recovered_state(directory: Path, schema: Any) -> dict[tuple[str, str], State]:
    store = TinyDBStore(directory, schema)
    await store.open()
    try:
        state: dict[tuple[str, str], State] = {}
        for spec in schema:
            collection = store.collection(spec.name)
            page = await collection.scan(limit=100_000)
            assert len(page) == await collection.size()
            for record in page:
                state[(spec.name, record.key)] = (record.version, record.data["seq"])
            if spec.name == "a":  # the index agrees with the data it was rebuilt from
                grouped = sum([await collection.count("by_group", [f"g{g}"]) for g in range(5)])
                assert grouped == len(page)
        return state
    finally:
        await store.close()


def wait_for_ready(child: subprocess.Popen[bytes], output: Path, stderr: Path) -> None:
    deadline = time.monotonic() + 60
    while not output.read_bytes().startswith(b"READY\n"):
        if child.poll() is not None:
            raise AssertionError(f"the writer died on its own:\n{stderr.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError("the writer did not start within 60 s")
        time.sleep(0.002)


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """Kill a writer at random moments, over and over, on one growing store: every
    acknowledged write must be there after each restart, and nothing else may change."""
    writer = load_crash_writer()
    data = tmp_path / "data"
    rng = random.Random(20261121)
    model: dict[tuple[str, str], State] = {}
    total_acks = 0
    mid_compaction = 0
    started = time.monotonic()
    for round_no in range(CRASH_ROUNDS):
        output, stderr = tmp_path / "out.txt", tmp_path / "err.txt"
        with output.open("wb") as out, stderr.open("wb") as err:
            child = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "crash_writer.py"),
                    "write",
                    str(data),
                    str(rng.randrange(1 << 30)),
                    str(round_no),
                    str(CRASH_COMPACT_AFTER),
                ],
                stdout=out,
                stderr=err,
                env=child_env(),
                cwd=REPO,
            )
            try:
                wait_for_ready(child, output, stderr)
                time.sleep(rng.uniform(0.005, 0.08))
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait(30)
        assert child.returncode == -signal.SIGKILL, stderr.read_text()
        if any(len(journals(data, name)) > 1 for name in ("a", "b")) or list(data.glob("*.tmp")):
            mid_compaction += 1
        allowed, acks = expected_states(model, output)
        total_acks += acks
        recovered = asyncio.run(recovered_state(data, writer.CRASH_SCHEMA))
        for slot in allowed.keys() | model.keys() | recovered.keys():
            options = allowed.get(slot, {model.get(slot)})
            assert recovered.get(slot) in options, (
                f"round {round_no}: {slot} recovered as {recovered.get(slot)}, "
                f"expected one of {options}"
            )
        model = recovered
    elapsed = time.monotonic() - started
    print(
        f"\n{CRASH_ROUNDS} kills, {total_acks} acknowledged writes checked, {len(model)} keys, "
        f"{mid_compaction} kills left a compaction unfinished, {elapsed:.1f} s"
    )
    assert total_acks > CRASH_ROUNDS  # the kills did land while writing
    assert mid_compaction > 0
    assert len(model) > 500  # the store grew across rounds
    for name in ("a", "b"):  # whatever the kills left, the snapshots are TinyDB files
        if (data / f"{name}.json").exists():
            with TinyDB(data / f"{name}.json", access_mode="r", encoding="utf-8") as db:
                assert db.table(name).all() is not None
    shutil.rmtree(data)
