"""The commands a community office runs: serve, bad configs, a locked data directory, chat."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from bot.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GOOD = """
[wechat]
app_id = "wx1234567890abcdef"
app_secret = "s3cret"
token = "goodToken1"
"""


def run_bot(
    *args: str, cwd: Path, stdin: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_example_config_documents_and_loads_every_key() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.server.port == 8080
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    for section in config.__dataclass_fields__:
        for key in getattr(config, section).__dataclass_fields__:
            assert f"\n{key} = " in text, f"[{section}] {key} is not documented"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "[wechat]\napp_id = 'wx1'\ntoken = 'abc123'\n",
            "missing required key [wechat] app_secret",
        ),
        (GOOD + "encoding_aes_key = '" + "a" * 42 + "!'\n", "encoding_aes_key must be empty"),
        (GOOD + "encoding_aes_key = 'short'\n", "got 5 characters"),
        (GOOD + "[storage]\nbackend = 'mongodb'\n", "[storage] backend must be one of"),
        (GOOD + "[server]\nprot = 80\n", "unknown config key [server] prot"),
        (GOOD + "[server]\nport = 'eighty'\n", "[server] port must be a int"),
        ("this is = = not toml", "is not valid TOML"),
    ],
)
def test_a_bad_config_stops_start_up_with_one_line_and_status_2(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    result = run_bot("serve", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run_bot("serve", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert result.returncode == 2 and "config file not found" in result.stderr


def _wait_healthy(port: int, deadline: float = 20) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                return str(resp.read().decode())
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def test_serve_without_config_runs_the_demo_on_the_embedded_store(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert '"status": "ok"' in _wait_healthy(port)
        assert (tmp_path / "data").is_dir()
        # A second server on the same data directory refuses to start, clearly.
        second = run_bot("serve", "--port", str(free_port()), cwd=tmp_path)
        assert second.returncode == 2
        assert "in use by another process" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "bot.app" in err and "store closed" in err


def test_chat_simulator_talks_to_the_real_webhook(tmp_path: Path) -> None:
    script = "菜单\n留言\n门口的路灯坏了\n1\n/voice 帮助。\n/quit\n"
    result = run_bot("chat", "--aes", cwd=tmp_path, stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "安全模式（AES 加密）" in out
    assert "欢迎关注社区共治服务号" in out
    assert "“门口的路灯坏了”" in out
    assert "留言已提交，编号 1" in out
    assert out.count("请回复数字选择") >= 3  # welcome, 菜单, and the spoken 帮助


def test_admin_create_user_makes_an_account_that_can_log_in(tmp_path: Path) -> None:
    made = run_bot(
        "admin",
        "create-user",
        "wangfang",
        "--display",
        "王芳",
        "--password-stdin",
        cwd=tmp_path,
        stdin="a-long-password-1\n",
    )
    assert made.returncode == 0, made.stderr
    assert "created wangfang (admin)" in made.stdout
    again = run_bot(
        "admin",
        "create-user",
        "wangfang",
        "--password-stdin",
        cwd=tmp_path,
        stdin="a-long-password-1\n",
    )
    assert again.returncode == 1
    assert "用户 wangfang 已存在" in again.stderr
    short = run_bot("admin", "create-user", "li", "--password-stdin", cwd=tmp_path, stdin="short\n")
    assert short.returncode == 1
    assert "密码至少 10 位" in short.stderr
    worker = run_bot(
        "admin",
        "create-user",
        "lijun",
        "--role",
        "grid",
        "--password-stdin",
        cwd=tmp_path,
        stdin="a-long-password-2\n",
    )
    assert worker.returncode == 1
    assert "网格员账号需要 openid" in worker.stderr
    listed = run_bot("admin", "list-users", cwd=tmp_path)
    assert listed.stdout.split() == ["wangfang", "admin", "王芳", "ok"]
    assert "Traceback" not in again.stderr + short.stderr + worker.stderr

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_healthy(port)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}/admin"
        form = opener.open(f"{base}/login", timeout=10).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        body = urllib.parse.urlencode(
            {"csrf_token": token.group(1), "username": "wangfang", "password": "a-long-password-1"}
        ).encode()
        home = opener.open(f"{base}/login", data=body, timeout=10)
        assert home.geturl() == f"{base}/"
        assert "王芳（管理员）" in home.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
