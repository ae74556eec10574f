"""Several real server processes on one PostgreSQL database (and Redis, where configured)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from bot.simulator import SimulatedResident, reply_text
from bot.wechat.fake_api import FakeWeChatAPI
from storage.postgres_store import PostgresStore
from storage.schema import SCHEMA
from tests.conftest import APP_ID, APP_SECRET, TOKEN
from tests.services import PG_DSN, REDIS_URL, pg_namespace, redis_prefix

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """Server processes started with `python -m bot serve` on one shared config."""

    def __init__(self, tmp: Path, api_url: str, namespace: str, redis: str | None) -> None:
        self.config = tmp / "cluster.toml"
        redis_section = f'[redis]\nurl = "{REDIS_URL}"\nprefix = "{redis}"\n' if redis else ""
        self.config.write_text(
            f'[wechat]\napp_id = "{APP_ID}"\napp_secret = "{APP_SECRET}"\ntoken = "{TOKEN}"\n'
            f'api_base_url = "{api_url}"\n'
            f'[storage]\nbackend = "postgres"\ndsn = "{PG_DSN}"\npg_schema = "{namespace}"\n'
            f"pool_size = 3\n{redis_section}"
            '[log]\nlevel = "WARNING"\n',
            encoding="utf-8",
        )
        self.namespace = namespace
        self.tmp = tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, count: int) -> list[int]:
        ports = [free_port() for _ in range(count)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for port in ports:
            self.procs[port] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bot",
                    "serve",
                    "--config",
                    str(self.config),
                    "--port",
                    str(port),
                ],
                cwd=self.tmp,
                env=env,
                stderr=subprocess.DEVNULL,
            )
        return ports

    async def wait_healthy(self, ports: list[int], timeout: float = 60) -> None:
        async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
            for port in ports:
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)

    async def health(self, port: int) -> dict[str, str]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as r,
        ):
            return dict(await r.json())

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@pytest_asyncio.fixture(params=["postgres", "postgres+redis"])
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, running_fake: tuple[FakeWeChatAPI, str]
) -> AsyncIterator[Cluster]:
    async with pg_namespace() as namespace:
        prefix = redis_prefix() if "redis" in request.param else None
        group = Cluster(tmp_path, running_fake[1], namespace, prefix)
        try:
            yield group
        finally:
            group.stop_all()


def resident_at(http: aiohttp.ClientSession, port: int, openid: str) -> SimulatedResident:
    return SimulatedResident(
        http, f"http://127.0.0.1:{port}/wechat", token=TOKEN, app_id=APP_ID, openid=openid
    )


async def test_one_retry_delivered_to_different_processes_runs_the_handler_once(
    cluster: Cluster,
) -> None:
    a, b = cluster.start(2)
    await cluster.wait_healthy([a, b])
    async with aiohttp.ClientSession() as http:
        on_a, on_b = resident_at(http, a, "o_multi_1"), resident_at(http, b, "o_multi_1")
        assert "请直接输入" in (await on_a.say("留言") or "")
        # The flow's state lives in the shared store: the next step may land anywhere.
        assert "1. 确认提交" in (await on_b.say("消防通道被堵") or "")
        confirm = on_a.xml("text", {"Content": "1"})
        results = await asyncio.gather(on_a.post(confirm), on_b.post(confirm), on_a.post(confirm))
        answers = [reply_text(r) for r in results]
        done = "留言已提交，编号 1。社区工作人员会尽快查看。"
        assert answers.count(done) >= 1 and set(answers) <= {done, None}
        other = resident_at(http, b, "o_multi_2")
        await other.say("留言")
        await other.say("另一件事")
        assert await other.say("1") == "留言已提交，编号 2。社区工作人员会尽快查看。"
    store = PostgresStore(PG_DSN, SCHEMA, namespace=cluster.namespace)
    await store.open()
    try:
        assert await store.collection("feedback").size() == 2
    finally:
        await store.close()


async def test_eight_processes_starting_cold_fetch_the_token_once(
    cluster: Cluster, fake_api: FakeWeChatAPI
) -> None:
    ports = cluster.start(8)
    await cluster.wait_healthy(ports, timeout=120)
    async with asyncio.timeout(30):
        while len(fake_api.calls_to("stable_token")) < 1:
            await asyncio.sleep(0.1)
    await asyncio.sleep(2)  # every process has had time to ask
    assert fake_api.token_fetches == 1


async def test_exactly_one_process_runs_the_scheduler_and_another_takes_over(
    cluster: Cluster,
) -> None:
    ports = cluster.start(2)
    await cluster.wait_healthy(ports)

    async def roles() -> dict[int, str]:
        return {p: (await cluster.health(p))["scheduler"] for p in cluster.procs}

    async with asyncio.timeout(30):
        while sorted((await roles()).values()) != ["leader", "standby"]:
            await asyncio.sleep(0.2)
    leader = next(p for p, role in (await roles()).items() if role == "leader")
    cluster.kill(leader)
    survivor = next(iter(cluster.procs))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(40):
        while (await cluster.health(survivor))["scheduler"] != "leader":
            await asyncio.sleep(0.2)
    took = loop.time() - started
    # The lease bound (Redis: its TTL; PostgreSQL: the session ends with the process)
    # plus one poll of the survivor.
    assert took < 15, f"takeover took {took:.1f}s"


@contextmanager
def serving(args: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)


async def test_serve_workers_runs_several_processes_on_one_port(cluster: Cluster) -> None:
    port = free_port()
    with serving(
        ["serve", "--config", str(cluster.config), "--port", str(port), "--workers", "2"],
        cluster.tmp,
    ) as proc:
        await cluster.wait_healthy([port])
        async with aiohttp.ClientSession() as http:
            resident = resident_at(http, port, "o_workers")
            replies = await asyncio.gather(*(resident.say("菜单") for _ in range(10)))
            assert all(r is not None and "请回复数字选择" in r for r in replies)
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == 2
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_workers_need_postgres(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--workers", "2", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert 'needs [storage] backend = "postgres"' in result.stderr


def _migrate(source: Path, namespace: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "migrate",
            "--from",
            f"tinydb:{source}",
            "--to",
            f"postgres:{PG_DSN}",
            "--pg-schema",
            namespace,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_migrate_moves_a_community_into_postgres_once_and_verifies(tmp_path: Path) -> None:
    from storage.tinydb_store import TinyDBStore

    data = tmp_path / "data"
    source = TinyDBStore(data, SCHEMA)
    await source.open()
    residents = source.collection("residents")
    for i in range(250):
        await residents.put(
            f"o_{i:04d}", {"subscribed": i % 3 != 0, "first_seen": 1.0, "last_seen": 2.0}
        )
    await residents.put("o_0001", {"subscribed": False, "first_seen": 1.0, "last_seen": 3.0})
    await source.collection("feedback").insert(
        "0000000001", {"openid": "o_0001", "text": "路灯", "created_at": 1.0}
    )
    await source.close()
    async with pg_namespace() as namespace:
        first = await asyncio.to_thread(_migrate, data, namespace, tmp_path)
        assert first.returncode == 0, first.stderr
        assert (
            "residents: 250 records in the embedded store, 250 written to PostgreSQL, verified ok"
            in first.stdout
        )
        assert "feedback: 1 records" in first.stdout
        again = await asyncio.to_thread(_migrate, data, namespace, tmp_path)
        assert again.returncode == 0, again.stderr
        target = PostgresStore(PG_DSN, SCHEMA, namespace=namespace)
        await target.open()
        try:
            assert await target.collection("residents").size() == 250
            moved = await target.collection("residents").get("o_0001")
            assert moved is not None and moved.version == 2 and moved.data["last_seen"] == 3.0
            assert (
                await target.collection("residents").count("by_subscribed", (True,)) == 165
            )  # o_0001 left
        finally:
            await target.close()
        # While a server holds the embedded store, migrate refuses to touch it.
        holder = TinyDBStore(data, SCHEMA)
        await holder.open()
        try:
            locked = await asyncio.to_thread(_migrate, data, namespace, tmp_path)
        finally:
            await holder.close()
        assert locked.returncode == 2
        assert "in use by another process" in locked.stderr
        assert "Traceback" not in locked.stderr
