"""``serve --workers N``: N server processes sharing one port (SO_REUSEPORT).

The parent only supervises: it starts the workers, restarts one that dies (with a
pause, so a worker that cannot start does not spin), and on SIGINT/SIGTERM stops
them all within a deadline. Everything the workers must share lives in
PostgreSQL and Redis, so the embedded store (one process only) is refused.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from bot.config import Config
from bot.errors import ConfigError

log = logging.getLogger("bot.workers")

RESTART_PAUSE = 2.0
STOP_DEADLINE = 20.0


def check_can_fork(config: Config, workers: int) -> None:
    if workers > 1 and config.storage.backend != "postgres":
        raise ConfigError(
            f'--workers {workers} needs [storage] backend = "postgres": '
            "the embedded store admits one server process"
        )


def supervise(worker_argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` copies of ``python -m bot <worker_argv>`` until told to stop."""
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("signal %s: stopping %s workers", signum, workers)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "bot", *worker_argv])

    procs = [start() for _ in range(workers)]
    log.info("started %s workers: %s", workers, " ".join(str(p.pid) for p in procs))
    while not stopping:
        time.sleep(0.2)
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is not None and not stopping:
                log.error("worker %s exited with status %s; restarting it", proc.pid, code)
                time.sleep(RESTART_PAUSE)
                procs[i] = start()
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_DEADLINE
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker %s did not stop in time; killing it", proc.pid)
            proc.kill()
            proc.wait()
    return 0
