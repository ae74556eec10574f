"""``python -m bot serve|chat``: the commands a community office runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from bot.config import Config, demo_config, load_config
from bot.errors import BotError

log = logging.getLogger("bot.cli")

EXIT_USAGE = 2


def setup_logging(level: str) -> None:
    # One line per event on stderr, named by subsystem, so `journalctl` or a file tail reads well.
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _config(path: str | None) -> Config:
    return load_config(path) if path else demo_config()


def _serve(args: argparse.Namespace) -> int:
    from bot.app import create_app
    from bot.workers import check_can_fork, supervise

    config = _config(args.config)
    setup_logging(config.log.level)
    if args.config is None:
        log.info("no --config given: running on demo settings with the store in ./data")
    host = args.host or config.server.host
    port = args.port or config.server.port
    if args.workers > 1:
        check_can_fork(config, args.workers)
        worker = ["serve", "--host", host, "--port", str(port), "--reuse-port"]
        if args.config:
            worker += ["--config", args.config]
        log.info("listening on http://%s:%s with %s workers", host, port, args.workers)
        return supervise(worker, args.workers)
    app = create_app(config)
    log.info("listening on http://%s:%s (webhook /wechat)", host, port)
    web.run_app(
        app,
        host=host,
        port=port,
        print=None,
        access_log=None,
        shutdown_timeout=10,
        reuse_port=args.reuse_port or None,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from bot.migrate import check_source, migrate, parse_target

    setup_logging("WARNING")
    source = parse_target(args.source, "tinydb")
    check_source(source)
    dsn = parse_target(args.target, "postgres")
    results = asyncio.run(migrate(source, dsn, pg_schema=args.pg_schema, say=print))
    return 0 if all(r.verified for r in results) else 1


def _chat(args: argparse.Namespace) -> int:
    from bot.simulator import run_chat

    config = _config(args.config)
    setup_logging("WARNING" if not args.verbose else "INFO")
    return asyncio.run(run_chat(config, aes=args.aes, openid=args.openid, data_dir=args.data))


def _admin(args: argparse.Namespace) -> int:
    from bot import accounts_cli

    setup_logging("WARNING")
    return accounts_cli.run(_config(args.config), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="共治 bot")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (webhook, health, metrics)")
    serve.add_argument("--config", help="TOML settings; without it, demo settings and ./data")
    serve.add_argument("--host", help="override [server] host")
    serve.add_argument("--port", type=int, help="override [server] port")
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes on one port (needs postgres)"
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    move = sub.add_parser("migrate", help="copy the embedded store into PostgreSQL")
    move.add_argument("--from", dest="source", required=True, help="tinydb:PATH")
    move.add_argument("--to", dest="target", required=True, help="postgres:DSN")
    move.add_argument("--pg-schema", default="public", help="PostgreSQL schema to write into")
    move.set_defaults(run=_migrate)

    chat = sub.add_parser("chat", help="talk to the bot as a resident, no WeChat account needed")
    chat.add_argument("--config", help="TOML settings to simulate (token, AES key...)")
    chat.add_argument("--aes", action="store_true", help="send encrypted (safe mode) messages")
    chat.add_argument("--openid", default="o_sim_resident_0001", help="the resident's openid")
    chat.add_argument("--data", help="keep the simulated store here (default: a temporary folder)")
    chat.add_argument("--verbose", action="store_true", help="show the server's log lines")
    chat.set_defaults(run=_chat)

    from bot import accounts_cli

    accounts_cli.add_parser(sub).set_defaults(run=_admin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except BotError as exc:
        # Bad config, a locked data directory...: one clear line, never a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return result
