"""Child process for the TinyDB durability tests; it is killed, never stopped.

    python crash_writer.py write DATA_DIR SEED ROUND COMPACT_AFTER
    python crash_writer.py hold DATA_DIR

``write`` opens the store, prints ``READY`` and writes until it is killed,
printing one line per step to stdout, each flushed at once::

    I <collection> <key> put <version> <seq>    about to write (the intent)
    I <collection> <key> del
    A <collection> <key> put <version> <seq>    that write was acknowledged
    A <collection> <key> del

Each key belongs to one worker, which writes it one step at a time, so at most
one write per key is in flight: its last intent without an acknowledgement.

``hold`` opens the store, prints ``READY`` and sleeps (for the lock test).
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from storage.contract import CollectionSpec, IndexSpec
from storage.tinydb_store import TinyDBStore

CRASH_SCHEMA = (
    CollectionSpec("a", indexes=(IndexSpec("by_group", ("group",)),)),
    CollectionSpec("b"),
)
WORKERS = 8
BASE_KEYS = 6
"""Keys per worker per collection that every round writes."""
NEW_KEYS = 4
"""Keys per worker that each round adds, so the store grows round after round."""


def worker_keys(worker: int, round_no: int) -> list[tuple[str, str]]:
    keys = [(name, f"w{worker}-{n}") for name in ("a", "b") for n in range(BASE_KEYS)]
    keys += [("a", f"r{round_no}-w{worker}-{n}") for n in range(NEW_KEYS)]
    keys.append(("b", f"big-w{worker}"))
    return keys


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def work(store: TinyDBStore, worker: int, round_no: int, seed: int) -> None:
    rng = random.Random(seed * 1000 + worker)
    keys = worker_keys(worker, round_no)
    step = 0
    while True:
        name, key = rng.choice(keys)
        collection = store.collection(name)
        current = await collection.get(key)
        if current is not None and rng.random() < 0.2:
            say(f"I {name} {key} del")
            await collection.delete(key, expect_version=current.version)
            say(f"A {name} {key} del")
            continue
        step += 1
        seq = f"{round_no}.{worker}.{step}"
        version = 1 if current is None else current.version + 1
        data: dict[str, object] = {"seq": seq, "group": f"g{step % 5}", "text": "住户反馈" * 3}
        if key.startswith("big"):
            data["blob"] = "大" * rng.randint(5_000, 60_000)
        say(f"I {name} {key} put {version} {seq}")
        await collection.put(key, data, expect_version=0 if current is None else current.version)
        say(f"A {name} {key} put {version} {seq}")


async def main(argv: list[str]) -> None:
    mode, directory = argv[0], Path(argv[1])
    if mode == "hold":
        store = TinyDBStore(directory, CRASH_SCHEMA)
        await store.open()
        say("READY")
        await asyncio.sleep(3600)
        return
    seed, round_no, compact_after = int(argv[2]), int(argv[3]), int(argv[4])
    store = TinyDBStore(directory, CRASH_SCHEMA, compact_after=compact_after)
    await store.open()
    say("READY")
    await asyncio.gather(*(work(store, w, round_no, seed) for w in range(WORKERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
