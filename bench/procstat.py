"""What the benchmarks share about the servers they run: a port, start-up, CPU time from
/proc, the server's log, and how a conversation's failure and a quantile are reported."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the workers of ``--workers N``)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def wait_until_up(port: int, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/wechat", data=b"x", timeout=1)
        except urllib.error.HTTPError:
            return  # it answers (with a refusal for our junk): it is up
        except OSError:
            time.sleep(0.1)
            continue
        return
    raise RuntimeError(f"the server on port {port} did not start within {seconds:.0f} s")


def server_log_problems(log: Path, limit: int = 20) -> list[str]:
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    # The start-up probe's junk POST is refused by design; everything else is news.
    return [ln for ln in lines if ln.strip() and "bad_timestamp: ''" not in ln][:limit]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class Failure:
    """A conversation step whose reply was not the one expected."""

    conversation: int
    resident: str
    step: str
    status: int
    reply: str
