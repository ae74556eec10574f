"""Background tasks that are tracked and awaited at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("bot.tasks")


class TaskTracker:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def wait_idle(self, timeout: float, *, besides: tuple[str, ...] = ()) -> bool:
        """Wait until no task runs but those named in ``besides`` (long-lived loops),
        including tasks started meanwhile; False if ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while running := {t for t in self._tasks if t.get_name() not in besides}:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(running, timeout=left)
        return True

    async def close(self, timeout: float) -> None:
        """Let running tasks finish for up to ``timeout`` seconds, then cancel the rest."""
        if not self._tasks:
            return
        pending = set(self._tasks)
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            log.warning("cancelling background task %s at shutdown", task.get_name())
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)
