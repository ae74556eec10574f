"""Webhook throughput and CPU cost, as ratios measured in one run on this machine.

Configurations (server pinned to core 0, wrk pinned to core 1, 50 connections):
  (a) bare      a bare aiohttp handler returning a fixed XML reply
  (b) wechatpy  wechatpy's minimal safe-mode pipeline, no store
  (c) ours-aes  our real server, safe mode: each message reads the resident's
                conversation state and writes it to the embedded store
  (d) ours-raw  the same in plaintext mode
and, for several processes (which need PostgreSQL; unpinned, since two server
processes cannot share one pinned core):
  pg-1p         ours, safe mode, on PostgreSQL, one server process
  pg-2p         the same with `serve --workers 2` (SO_REUSEPORT)
Every request is a distinct message (its own MsgId) from one of --users residents,
so WeChat-retry de-duplication never shortcuts the work.

Usage: python bench/webhook.py [--duration 10] [--runs 3] [--users 1000]
Needs wrk and taskset (Debian: apt-get install wrk util-linux).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procstat import cpu_seconds, free_port  # noqa: E402

from bot.wechat.crypto import MessageCrypto  # noqa: E402
from bot.wechat.signature import msg_signature, url_signature  # noqa: E402

TOKEN = "benchToken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx1234567890abcdef"
PG_DSN = os.environ.get("GONGZHI_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Run:
    rps: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    non2xx: int


def build_requests(path: Path, count: int, *, aes: bool, users: int, first_id: int) -> None:
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    timestamp = str(int(time.time()))
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            msg_id = first_id + i
            nonce = str(100000 + i % 900000)
            xml = (
                "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
                f"<FromUserName><![CDATA[o_bench_{i % users:06d}]]></FromUserName>"
                f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                f"<Content><![CDATA[留言]]></Content><MsgId>{msg_id}</MsgId></xml>"
            )
            query = f"signature={url_signature(TOKEN, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}"
            if aes:
                enc = crypto.encrypt_payload(xml.encode())
                query += (
                    f"&encrypt_type=aes&msg_signature={msg_signature(TOKEN, timestamp, nonce, enc)}"
                )
                body = f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
            else:
                body = xml
            out.write(f"/wechat?{query}\t{body}\n")


def start_server(name: str, port: int, workdir: Path, pg_schema: str) -> subprocess.Popen[bytes]:
    py = sys.executable
    pin = ["taskset", "-c", "0"]
    if name in ("bare", "wechatpy"):
        cmd = [
            py,
            str(ROOT / "bench" / "baselines.py"),
            "--mode",
            name,
            "--port",
            str(port),
            "--token",
            TOKEN,
            "--aes-key",
            AES_KEY,
            "--app-id",
            APP_ID,
        ]
    else:
        data = workdir / f"data-{name}-{port}"
        config = workdir / f"{name}-{port}.toml"
        key = "" if name == "ours-raw" else AES_KEY
        storage = f'[storage]\npath = "{data}"\n'
        if name.startswith("pg-"):
            storage = (
                f'[storage]\nbackend = "postgres"\ndsn = "{PG_DSN}"\npg_schema = "{pg_schema}"\n'
            )
            pin = []
        config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
            f'[wechat]\napp_id = "{APP_ID}"\napp_secret = "x"\ntoken = "{TOKEN}"\n'
            f'encoding_aes_key = "{key}"\napi_base_url = "http://127.0.0.1:9"\n'
            f"check_at_start = false\n"
            f'{storage}[log]\nlevel = "WARNING"\n'
        )
        cmd = [py, "-m", "bot", "serve", "--config", str(config)]
        if name == "pg-2p":
            cmd += ["--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*pin, *cmd], cwd=workdir, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/wechat", data=b"x", timeout=1)
        except urllib.error.HTTPError:
            return proc  # it answers (with a refusal for our junk): it is up
        except OSError:
            time.sleep(0.1)
            continue
        return proc
    proc.kill()
    raise RuntimeError(f"{name} did not start")


def check_reply(port: int, requests_file: Path) -> str:
    path, body = requests_file.read_text(encoding="utf-8").split("\n", 1)[0].split("\t", 1)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body.encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = str(resp.read().decode())
    if "<xml>" not in text:
        raise RuntimeError(f"unexpected reply: {text[:200]}")
    return text


def wrk(
    port: int, requests_file: Path, duration: int, connections: int, *, pinned: bool = True
) -> dict[str, int]:
    env = {**os.environ, "BENCH_REQUESTS": str(requests_file)}
    pin = ["taskset", "-c", "1"] if pinned else []
    out = subprocess.run(
        [
            *pin,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "requests.lua"),
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=duration + 60,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


# Distinct messages each configuration can use up in one run (req/s ceiling x seconds).
# The baselines do no de-duplication, so one small file serves them.
EXPECTED_RPS = {"ours-aes": 3500, "ours-raw": 4500, "pg-1p": 1500, "pg-2p": 2500}


class Target:
    """One configuration's server, started once and loaded again in every round."""

    def __init__(self, name: str, args: argparse.Namespace, workdir: Path) -> None:
        self.name = name
        self.args = args
        self.port = free_port()
        self.pinned = not name.startswith("pg-")
        self.pg_schema = f"bench_{name.replace('-', '_')}_{self.port}"
        self.aes = name != "ours-raw"
        self.workdir = workdir
        # Only our servers de-duplicate; the baselines can cycle through a small file.
        self.distinct = name in EXPECTED_RPS
        self.per_file = int(EXPECTED_RPS[name] * (args.duration + 2)) if self.distinct else 5000
        if name.startswith("pg-"):
            psql(f"DROP SCHEMA IF EXISTS {self.pg_schema} CASCADE; CREATE SCHEMA {self.pg_schema}")
        self.proc = start_server(name, self.port, workdir, self.pg_schema)
        self.runs: list[Run] = []
        warm = self.requests(0)
        check_reply(self.port, warm)
        wrk(self.port, warm, 2, args.connections, pinned=self.pinned)

    def requests(self, number: int) -> Path:
        """Freshly signed requests: WeChat signatures go stale after 5 minutes (403)."""
        f = self.workdir / f"{self.name}-{number}.txt"
        first_id = 10**12 + number * 10**7
        build_requests(f, self.per_file, aes=self.aes, users=self.args.users, first_id=first_id)
        return f

    def run_once(self) -> None:
        f = self.requests(len(self.runs) + 1)
        before = cpu_seconds(self.proc.pid)
        result = wrk(self.port, f, self.args.duration, self.args.connections, pinned=self.pinned)
        used = cpu_seconds(self.proc.pid) - before
        requests = result["requests"]
        if self.distinct and requests >= self.per_file:
            print(
                f"  warning: {self.name} sent {requests} requests, more than its {self.per_file} distinct ones"
            )
        run = Run(
            rps=requests / (result["duration_us"] / 1e6),
            cpu_us=used * 1e6 / requests,
            p50_ms=result["p50_us"] / 1000,
            p99_ms=result["p99_us"] / 1000,
            non2xx=result["non2xx"] + result["socket_errors"],
        )
        self.runs.append(run)
        f.unlink()
        if run.non2xx:
            print(
                f"  warning: {self.name} had {run.non2xx} failed requests: this round is not valid"
            )
        print(
            f"  {self.name}: {run.rps:8.0f} req/s  {run.cpu_us:6.0f} µs CPU/req  "
            f"p50 {run.p50_ms:6.1f} ms  p99 {run.p99_ms:6.1f} ms  errors {run.non2xx}",
            flush=True,
        )

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        if self.name.startswith("pg-"):
            psql(f"DROP SCHEMA IF EXISTS {self.pg_schema} CASCADE")


def psql(sql: str) -> None:
    subprocess.run(["psql", PG_DSN, "-q", "-c", sql], check=True, capture_output=True)


def median(runs: list[Run], field: str) -> float:
    return float(statistics.median(float(getattr(r, field)) for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--only", nargs="*", default=["bare", "wechatpy", "ours-aes", "ours-raw", "pg-1p", "pg-2p"]
    )
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install wrk util-linux)")
    results: dict[str, dict[str, float]] = {}
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="gongzhi-bench-") as tmp:
        try:
            for name in args.only:
                print(f"starting {name} ...", flush=True)
                targets.append(Target(name, args, Path(tmp)))
            # Rounds interleave the configurations, so a machine that drifts (it does, by
            # 10-15 % over minutes here) moves every configuration alike and ratios hold.
            for round_no in range(args.runs):
                print(f"round {round_no + 1} of {args.runs}", flush=True)
                for target in targets:
                    target.run_once()
        finally:
            for target in targets:
                target.close()
        for target in targets:
            runs = target.runs
            results[target.name] = {
                f: median(runs, f) for f in ("rps", "cpu_us", "p50_ms", "p99_ms")
            }
            results[target.name]["errors"] = sum(r.non2xx for r in runs)
    labels = {
        "bare": "(a) bare aiohttp",
        "wechatpy": "(b) wechatpy safe, no store",
        "ours-aes": "(c) ours, safe mode + store",
        "ours-raw": "(d) ours, plaintext + store",
        "pg-1p": "ours, safe, PostgreSQL, 1 process",
        "pg-2p": "ours, safe, PostgreSQL, 2 processes",
    }
    print(
        f"\nmedian of {args.runs} interleaved rounds x {args.duration}s, c{args.connections}, server on core 0, wrk on core 1"
    )
    print(
        f"{'config':32} {'req/s':>8} {'CPU µs/req':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    for name, r in results.items():
        print(
            f"{labels[name]:32} {r['rps']:8.0f} {r['cpu_us']:11.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:7.0f}"
        )
    by_name = {t.name: t for t in targets}

    def ratio(top: str, bottom: str, field: str = "rps") -> str:
        """Median of the per-round ratios (each round saw one machine state), and their range."""
        pairs = zip(by_name[top].runs, by_name[bottom].runs, strict=True)
        values = sorted(getattr(t, field) / getattr(b, field) for t, b in pairs)
        return f"{statistics.median(values):.2f} (rounds {values[0]:.2f}-{values[-1]:.2f})"

    if {"bare", "wechatpy", "ours-aes"} <= by_name.keys():
        print(f"\n(c)/(b) throughput: {ratio('ours-aes', 'wechatpy')}   goal >= 0.8")
        print(f"(c)/(a) throughput: {ratio('ours-aes', 'bare')}")
        print(f"(b)/(a) throughput: {ratio('wechatpy', 'bare')}   anchor measured 0.29")
        print(f"(c)/(b) CPU per request: {ratio('ours-aes', 'wechatpy', 'cpu_us')}")
    if {"pg-1p", "pg-2p"} <= by_name.keys():
        print(f"2-process/1-process throughput on PostgreSQL: {ratio('pg-2p', 'pg-1p')}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"webhook-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
