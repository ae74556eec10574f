"""The embedded, durable default backend: memory for reads, a journal for durability.

Every collection lives in memory (a dict of immutable :class:`Record` plus one
dict per declared index), so reads never touch the disk. Writes are checked and
applied to memory synchronously, which makes each conditional write an atomic
check-and-set on the single event loop, then queued to the journal thread and
acknowledged once their line is fsynced (group commit: one write and one
fdatasync per touched journal per batch, whatever the number of writers).

A collection's journal is folded into its TinyDB snapshot once it exceeds
``compact_after`` lines, in a separate thread, so a write costs the size of the
write and not the size of the collection. See :mod:`storage.tinydb_journal` for
the files and why each step is crash-safe.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import json
import logging
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import ConflictError, StorageError
from storage.contract import (
    Collection,
    CollectionSpec,
    Doc,
    IndexSpec,
    JSONScalar,
    Record,
    Store,
)
from storage.schema import SCHEMA
from storage.tinydb_journal import (
    Barrier,
    JournalThread,
    LoadedCollection,
    QueueItem,
    Rotate,
    Stop,
    Waiter,
    acquire_lock,
    load_collection,
    release_lock,
    remove_temp_files,
    write_snapshot,
)

logger = logging.getLogger("storage.tinydb")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_MISSING = object()

IndexKey = tuple[Hashable, ...]


def _index_value(value: object) -> Hashable:
    """The hashable form of one indexed value; ``TypeError`` if it is not a JSON scalar."""
    # True == 1 and hash(True) == hash(1) in Python, but not in JSON: keep bools apart.
    if isinstance(value, bool):
        return ("bool", value)
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"indexed values must be JSON scalars, not {type(value).__name__}")


class _Index:
    __slots__ = ("entries", "fields", "spec", "unique")

    def __init__(self, spec: IndexSpec) -> None:
        self.spec = spec
        self.fields = spec.fields
        self.unique = spec.unique
        self.entries: dict[IndexKey, set[str]] = {}

    def key_of(self, data: Doc) -> IndexKey | None:
        """The entry ``data`` belongs to; ``None`` if an indexed field is missing."""
        values = []
        for name in self.fields:
            value = data.get(name, _MISSING)
            if value is _MISSING:
                return None
            values.append(_index_value(value))
        return tuple(values)

    def lenient_key_of(self, data: Doc) -> IndexKey | None:
        """Like :meth:`key_of`, but a non-scalar value (written before the index was
        declared) just leaves the record out of the index."""
        try:
            return self.key_of(data)
        except TypeError:
            return None

    def add(self, key: str, entry: IndexKey) -> None:
        holders = self.entries.get(entry)
        if holders is None:
            self.entries[entry] = {key}
        else:
            holders.add(key)

    def remove(self, key: str, entry: IndexKey) -> None:
        holders = self.entries[entry]
        holders.discard(key)
        if not holders:
            del self.entries[entry]


class _Memory:
    """One collection's in-memory state. Only the event loop thread mutates it."""

    __slots__ = (
        "compacting",
        "gen",
        "index_by_name",
        "indexes",
        "name",
        "pending_lines",
        "records",
        "sorted_keys",
        "spec",
    )

    def __init__(self, spec: CollectionSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.records: dict[str, Record] = {}
        self.indexes = [_Index(index) for index in spec.indexes]
        self.index_by_name = {index.spec.name: index for index in self.indexes}
        self.sorted_keys: list[str] | None = None
        """Keys in order for ``scan``, rebuilt lazily after an insert or a delete."""
        self.gen = 0
        self.pending_lines = 0
        self.compacting = False

    def index(self, name: str) -> _Index:
        index = self.index_by_name.get(name)
        if index is None:
            raise KeyError(f"collection {self.name!r} has no index {name!r}")
        return index

    def fill(self, loaded: LoadedCollection) -> None:
        """Take a loaded collection and build its indexes (runs in the loader thread)."""
        self.records = loaded.records
        self.gen = loaded.gen
        self.pending_lines = loaded.pending_lines
        for index in self.indexes:
            skipped = 0
            for key, record in self.records.items():
                try:
                    entry = index.key_of(record.data)
                except TypeError:
                    skipped += 1
                    continue
                if entry is None:
                    continue
                if index.unique and entry in index.entries:
                    (other,) = index.entries[entry]
                    raise StorageError(
                        f"collection {self.name!r}: unique index {index.spec.name!r} holds "
                        f"{list(entry)!r} for both {other!r} and {key!r}; fix the data or "
                        "the schema before starting"
                    )
                index.add(key, entry)
            if skipped:
                logger.warning(
                    "%s records of %s are left out of index %s: its fields hold lists or objects",
                    skipped,
                    self.name,
                    index.spec.name,
                )


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class _Opened:
    lock_fd: int
    memories: dict[str, _Memory]


class TinyDBCollection(Collection):
    """A declared collection of a :class:`TinyDBStore`."""

    def __init__(self, store: TinyDBStore, memory: _Memory) -> None:
        self.spec = memory.spec
        self._store = store
        self._memory = memory

    async def get(self, key: str) -> Record | None:
        self._store._check_usable()
        return self._memory.records.get(key)

    async def put(self, key: str, data: Doc, *, expect_version: int | None = None) -> Record:
        record, waiter = self._store._put(self._memory, key, data, expect_version)
        await waiter
        return record

    async def delete(self, key: str, *, expect_version: int | None = None) -> bool:
        waiter = self._store._delete(self._memory, key, expect_version)
        if waiter is None:
            return False
        await waiter
        return True

    async def find(
        self, index: str, values: Sequence[JSONScalar], *, limit: int = 100
    ) -> list[Record]:
        keys = self._lookup(index, values)
        if limit < 0:
            raise ValueError("limit must not be negative")
        if not keys or limit == 0:
            return []
        ordered = sorted(keys) if len(keys) <= limit else heapq.nsmallest(limit, keys)
        records = self._memory.records
        return [records[key] for key in ordered]

    async def count(self, index: str, values: Sequence[JSONScalar]) -> int:
        return len(self._lookup(index, values))

    async def scan(self, *, after: str | None = None, limit: int = 1000) -> list[Record]:
        self._store._check_usable()
        if limit < 0:
            raise ValueError("limit must not be negative")
        memory = self._memory
        if memory.sorted_keys is None:
            memory.sorted_keys = sorted(memory.records)
        keys = memory.sorted_keys
        start = 0 if after is None else bisect_right(keys, after)
        records = memory.records
        return [records[key] for key in keys[start : start + limit]]

    async def size(self) -> int:
        self._store._check_usable()
        return len(self._memory.records)

    def _lookup(self, index: str, values: Sequence[JSONScalar]) -> set[str] | frozenset[str]:
        self._store._check_usable()
        spec = self._memory.index(index)
        if isinstance(values, str | bytes) or len(values) != len(spec.fields):
            raise ValueError(
                f"index {index!r} of {self.name!r} needs {len(spec.fields)} value(s) "
                f"for {list(spec.fields)}, got {values!r}"
            )
        entry = tuple(_index_value(value) for value in values)
        return spec.entries.get(entry, frozenset())


class TinyDBStore(Store):
    """The embedded store: one process, one data directory, durable writes.

    ``compact_after`` is how many journal lines a collection may accumulate
    before they are folded into its snapshot (which bounds replay at open).
    """

    backend = "tinydb"

    WRITE_DEADLINE = 30.0
    """A journal batch still unwritten after this long fails the store (hung disk)."""
    OPEN_DEADLINE = 600.0
    CLOSE_DEADLINE = 120.0
    PING_DEADLINE = 5.0
    _WATCHDOG_PERIOD = 1.0
    _JOIN_TIMEOUT = 5.0

    def __init__(
        self,
        path: Path,
        schema: Sequence[CollectionSpec] = SCHEMA,
        *,
        compact_after: int = 20_000,
    ) -> None:
        if compact_after < 1:
            raise ValueError("compact_after must be at least 1")
        self._dir = Path(path)
        self._compact_after = compact_after
        self._memories: dict[str, _Memory] = {}
        for spec in schema:
            if not _NAME.fullmatch(spec.name):
                raise ValueError(
                    f"collection name {spec.name!r} must be letters, digits, '_' or '-' "
                    "and start with a letter or digit (it names files)"
                )
            if spec.name in self._memories:
                raise ValueError(f"collection {spec.name!r} is declared twice")
            names = [index.name for index in spec.indexes]
            if len(set(names)) != len(names):
                raise ValueError(f"collection {spec.name!r} declares an index name twice")
            if any(not index.fields for index in spec.indexes):
                raise ValueError(f"collection {spec.name!r} has an index without fields")
            self._memories[spec.name] = _Memory(spec)
        self._collections = {
            name: TinyDBCollection(self, memory) for name, memory in self._memories.items()
        }
        self._state = _State.NEW
        self._unusable: str | None = "the store is not open yet"
        """Why reads and writes are refused right now; ``None`` when they are not."""
        self._failure: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._journal: JournalThread | None = None
        self._snapshots: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        self._inflight: set[Waiter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._submit: Callable[[QueueItem], None] = _refuse_submit
        encoder = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
        )
        self._encode = encoder.encode
        self._decode = json.JSONDecoder().decode

    @property
    def path(self) -> Path:
        return self._dir

    # --- lifetime -------------------------------------------------------------------

    async def open(self) -> None:
        if self._state is not _State.NEW:
            raise StorageError("a TinyDBStore opens once; create a new one to reopen the directory")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._snapshots = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinydb-snapshot")
        job: ThreadFuture[_Opened] = self._snapshots.submit(self._load)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.OPEN_DEADLINE):
                opened = await asyncio.wrap_future(job)
        except TimeoutError as exc:
            # The loader cannot be interrupted; release the lock whenever it ends.
            job.add_done_callback(_release_lock_of)
            self._abandon_open()
            raise StorageError(
                f"loading the store at {self._dir} took longer than {self.OPEN_DEADLINE:.0f} s"
            ) from exc
        except StorageError:
            self._abandon_open()
            raise
        except OSError as exc:
            self._abandon_open()
            raise StorageError(f"cannot open the store at {self._dir}: {exc}") from exc
        self._lock_fd = opened.lock_fd
        for name, memory in opened.memories.items():
            self._memories[name] = memory
            self._collections[name]._memory = memory
        self._journal = JournalThread(
            self._dir,
            {name: memory.gen for name, memory in self._memories.items()},
            loop,
            self._batch_done,
        )
        self._journal.start()
        self._submit = self._journal.submit
        self._watchdog = loop.create_task(self._watch(), name="tinydb-store-watchdog")
        self._state = _State.OPEN
        self._unusable = None
        logger.info(
            "opened the store at %s in %.0f ms: %s",
            self._dir,
            (time.perf_counter() - started) * 1000,
            ", ".join(f"{m.name}={len(m.records)}" for m in self._memories.values()),
        )
        for memory in self._memories.values():
            if memory.pending_lines > self._compact_after:
                self._start_compaction(memory)

    def _load(self) -> _Opened:
        """Lock the directory and load every collection (in the snapshot thread)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        lock_fd = acquire_lock(self._dir)
        try:
            remove_temp_files(self._dir)
            memories = {}
            for name, empty in self._memories.items():
                memory = _Memory(empty.spec)
                memory.fill(load_collection(self._dir, name))
                memories[name] = memory
        except BaseException:
            release_lock(lock_fd)
            raise
        return _Opened(lock_fd, memories)

    def _abandon_open(self) -> None:
        if self._snapshots is not None:
            self._snapshots.shutdown(wait=False)
        self._state = _State.CLOSED
        self._unusable = "the store failed to open"

    async def close(self) -> None:
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            self._unusable = "the store is closed"
            return
        if self._state is not _State.OPEN:
            return
        self._state = _State.CLOSING
        if self._failure is None:
            self._unusable = "the store is closing"
        # A failed store has nothing left to flush: do not wait long on a hung disk.
        deadline = self.CLOSE_DEADLINE if self._failure is None else self._JOIN_TIMEOUT
        try:
            async with asyncio.timeout(deadline):
                await self._drain_tasks()
                if self._failure is None:
                    # Fold big journals into snapshots so the next start replays little;
                    # small ones are left, to keep shutdown quick.
                    threshold = max(1, self._compact_after // 10)
                    for memory in self._memories.values():
                        if memory.pending_lines >= threshold and not memory.compacting:
                            self._start_compaction(memory)
                    await self._drain_tasks()
                await self._queue_and_wait(Stop)
        except TimeoutError:
            logger.error(
                "closing the store at %s took longer than %.0f s; unfinished writes may be lost",
                self._dir,
                deadline,
            )
        except StorageError:
            pass  # the failure was logged when it happened
        finally:
            await self._finish_close()

    async def _finish_close(self) -> None:
        leftovers = list(self._tasks)
        if self._watchdog is not None:
            leftovers.append(self._watchdog)
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=self._JOIN_TIMEOUT)
        stopped = await self._join_journal()
        for waiter in self._inflight:
            if not waiter.done():
                waiter.set_exception(StorageError("the store closed before this write was durable"))
        self._inflight.clear()
        if self._snapshots is not None:
            self._snapshots.shutdown(wait=False, cancel_futures=True)
        if self._lock_fd is not None:
            if stopped:
                release_lock(self._lock_fd)
            else:
                # Keep the directory locked while our thread may still write to it.
                logger.error("the journal thread of %s did not stop; keeping its lock", self._dir)
            self._lock_fd = None
        self._state = _State.CLOSED
        self._unusable = "the store is closed"

    async def _join_journal(self) -> bool:
        """Wait (without blocking the loop) for the journal thread to end."""
        journal = self._journal
        if journal is None:
            return True
        deadline = time.monotonic() + self._JOIN_TIMEOUT
        while not journal.join(0):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _drain_tasks(self) -> None:
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def collection(self, name: str) -> TinyDBCollection:
        try:
            return self._collections[name]
        except KeyError:
            raise KeyError(
                f"collection {name!r} is not declared in the schema "
                f"(declared: {', '.join(self._collections)})"
            ) from None

    async def ping(self) -> None:
        self._check_usable()
        try:
            async with asyncio.timeout(self.PING_DEADLINE):
                await self._queue_and_wait(Barrier)
        except TimeoutError as exc:
            raise StorageError(
                f"the store at {self._dir} did not complete a journal round trip "
                f"within {self.PING_DEADLINE:.0f} s"
            ) from exc

    async def _queue_and_wait(self, kind: type[Barrier] | type[Stop]) -> None:
        assert self._loop is not None
        waiter: Waiter = self._loop.create_future()
        self._inflight.add(waiter)
        self._submit(kind(waiter))
        try:
            await waiter
        finally:
            self._inflight.discard(waiter)

    # --- the write path -----------------------------------------------------------

    def _check_usable(self) -> None:
        if self._unusable is not None:
            raise StorageError(self._unusable)

    def _put(
        self, memory: _Memory, key: str, data: Doc, expect_version: int | None
    ) -> tuple[Record, Waiter]:
        if self._unusable is not None:
            raise StorageError(self._unusable)
        if not isinstance(key, str):
            raise TypeError(f"keys are strings, not {type(key).__name__}")
        if not key:
            raise ValueError("keys must not be empty")
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a JSON object (a dict), not {type(data).__name__}")
        current = memory.records.get(key)
        current_version = _check_version(memory.name, key, current, expect_version)
        version = current_version + 1
        try:
            # Serialising once gives both the journal line and, decoded, a private
            # copy of the caller's dict, normalised exactly as a reload would see it.
            text = self._encode({"k": key, "v": version, "d": data})
            payload = text.encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            error = TypeError if isinstance(exc, TypeError) else ValueError
            raise error(f"{memory.name}/{key}: data is not storable as JSON: {exc}") from exc
        stored: dict[str, Any] = self._decode(text)["d"]
        old_entries: list[IndexKey | None] = []
        new_entries: list[IndexKey | None] = []
        for index in memory.indexes:
            try:
                entry = index.key_of(stored)
            except TypeError as exc:
                raise TypeError(
                    f"{memory.name}/{key}: field(s) {list(index.fields)} of index "
                    f"{index.spec.name!r}: {exc}"
                ) from None
            if index.unique and entry is not None:
                holders = index.entries.get(entry)
                if holders and key not in holders:
                    raise ConflictError(
                        f"{memory.name}/{key}: unique index {index.spec.name!r} already has "
                        f"{list(entry)!r} (at {min(holders)!r})"
                    )
            new_entries.append(entry)
            old_entries.append(None if current is None else index.lenient_key_of(current.data))
        # Nothing has changed so far; from here on the write cannot fail on the loop.
        record = Record(key, version, stored)
        memory.records[key] = record
        if current is None:
            memory.sorted_keys = None
        for index, old, new in zip(memory.indexes, old_entries, new_entries, strict=True):
            if old != new:
                if old is not None:
                    index.remove(key, old)
                if new is not None:
                    index.add(key, new)
        return record, self._enqueue(memory, payload)

    def _delete(self, memory: _Memory, key: str, expect_version: int | None) -> Waiter | None:
        if self._unusable is not None:
            raise StorageError(self._unusable)
        current = memory.records.get(key)
        _check_version(memory.name, key, current, expect_version)
        if current is None:
            return None
        payload = self._encode({"k": key, "del": True}).encode("utf-8")
        del memory.records[key]
        memory.sorted_keys = None
        for index in memory.indexes:
            entry = index.lenient_key_of(current.data)
            if entry is not None:
                index.remove(key, entry)
        return self._enqueue(memory, payload)

    def _enqueue(self, memory: _Memory, payload: bytes) -> Waiter:
        assert self._loop is not None
        waiter: Waiter = self._loop.create_future()
        self._inflight.add(waiter)
        self._submit((memory.name, payload, waiter))
        memory.pending_lines += 1
        if memory.pending_lines > self._compact_after and not memory.compacting:
            self._start_compaction(memory)
        return waiter

    def _batch_done(self, waiters: list[Waiter], error: BaseException | None) -> None:
        """Called on the loop by the journal thread once a batch is durable or failed."""
        if error is not None:
            self._fail(f"writing the journal failed: {error}", error)
        inflight = self._inflight
        for waiter in waiters:
            inflight.discard(waiter)
            if waiter.done():  # the caller was cancelled, or the store already failed
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(self._failure_error(error))

    def _failure_error(self, cause: BaseException | None) -> StorageError:
        error = StorageError(self._failure or "the store failed")
        error.__cause__ = cause
        return error

    def _fail(self, reason: str, cause: BaseException | None) -> None:
        """Refuse every read and write from now on, and fail every unfinished write."""
        if self._failure is not None:
            return
        self._failure = (
            f"the store at {self._dir} failed and refuses reads and writes until the "
            f"process restarts: {reason}"
        )
        self._unusable = self._failure
        logger.error("%s", self._failure, exc_info=cause)
        for waiter in self._inflight:
            if not waiter.done():
                waiter.set_exception(self._failure_error(cause))
        self._inflight.clear()

    async def _watch(self) -> None:
        """Fail the store if a journal batch hangs, so writers get an error, not a hang."""
        while True:
            await asyncio.sleep(self._WATCHDOG_PERIOD)
            journal = self._journal
            since = None if journal is None else journal.busy_since
            if since is not None and time.monotonic() - since > self.WRITE_DEADLINE:
                self._fail(
                    f"a journal write has not finished after {self.WRITE_DEADLINE:.0f} s "
                    "(is the disk hung?)",
                    None,
                )
                return

    # --- compaction -----------------------------------------------------------------

    def _start_compaction(self, memory: _Memory) -> None:
        assert self._loop is not None
        memory.compacting = True
        memory.gen += 1
        memory.pending_lines = 0
        rotated: Waiter = self._loop.create_future()
        self._inflight.add(rotated)
        self._submit(Rotate(memory.name, memory.gen, rotated))
        # Records are immutable, so a list of them is a consistent cut at the point
        # where the journal rotates: every line before it is covered by this list,
        # every line after it goes to the new generation and is replayed on top.
        records = list(memory.records.values())
        task = self._loop.create_task(
            self._compact(memory, memory.gen, rotated, records), name=f"compact-{memory.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compact(
        self, memory: _Memory, gen: int, rotated: Waiter, records: list[Record]
    ) -> None:
        assert self._loop is not None and self._snapshots is not None
        started = time.perf_counter()
        try:
            # The rotation's waiter resolves once the old journals are complete; the
            # snapshot may then supersede them.
            await rotated
            await self._loop.run_in_executor(
                self._snapshots, write_snapshot, self._dir, memory.name, gen, records
            )
        except StorageError:
            return  # the store failed and said why
        except OSError as exc:
            logger.error(
                "compacting %s failed; its journals are kept and it will be retried: %s",
                memory.name,
                exc,
            )
            return
        except Exception:
            # A bug, not the disk: the journals still hold everything, so say it loudly
            # and keep serving.
            logger.exception("compacting %s failed; its journals are kept", memory.name)
            return
        finally:
            memory.compacting = False
        logger.info(
            "compacted %s: %s records into its snapshot in %.0f ms",
            memory.name,
            len(records),
            (time.perf_counter() - started) * 1000,
        )


def _refuse_submit(item: QueueItem) -> None:
    raise StorageError("the store is not open")


def _release_lock_of(job: ThreadFuture[_Opened]) -> None:
    if not job.cancelled() and job.exception() is None:
        release_lock(job.result().lock_fd)


def _check_version(collection: str, key: str, current: Record | None, expected: int | None) -> int:
    """The current version (0: no record); :class:`ConflictError` unless it is ``expected``."""
    current_version = 0 if current is None else current.version
    if expected is not None and expected != current_version:
        raise ConflictError(
            f"{collection}/{key}: expected version {expected}, "
            f"found {current_version or 'no record'}"
        )
    return current_version
