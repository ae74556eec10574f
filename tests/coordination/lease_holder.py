"""A child process for ``test_leader.py``: takes a lease, keeps renewing it, says LEADER.

Run as ``python -m tests.coordination.lease_holder BACKEND LOCATION NAME TTL`` from the
repository root. It prints ``LEADER`` once it holds the lease and renews every TTL/4
until it is killed, or until its own deadline so that a broken test never leaves
it running.
"""

from __future__ import annotations

import asyncio
import sys

from tests.coordination.conftest import make_coordinator

LIFETIME = 30.0


async def main(backend: str, location: str, name: str, ttl: float) -> int:
    coordinator = make_coordinator(backend, location, lease_ttl=ttl)
    await coordinator.open()
    try:
        lease = coordinator.lease(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIFETIME
        announced = False
        while loop.time() < deadline:
            if await lease.try_acquire() and not announced:
                print("LEADER", flush=True)
                announced = True
            await asyncio.sleep(ttl / 4)
        return 0
    finally:
        await coordinator.close()


if __name__ == "__main__":
    backend, location, name, ttl = sys.argv[1:5]
    sys.exit(asyncio.run(main(backend, location, name, float(ttl))))
