"""``python -m bot admin ...``: staff accounts for the ``/admin/`` pages, from the shell.

Opens the configured store directly, so on the embedded (TinyDB) store run it while
the server is stopped; the error says so if the store is in use.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time

from bot.backends import build_store
from bot.config import Config
from bot.domain.accounts import ROLES, AccountDesk
from bot.domain.errors import DomainError
from storage.accounts import SessionRepo, UserRepo
from storage.repos import AuditRepo

ACTOR = "cli"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    admin = sub.add_parser("admin", help="staff accounts for the /admin/ pages")
    admin.add_argument("--config", help="TOML settings; without it, demo settings and ./data")
    acts = admin.add_subparsers(dest="action", required=True)
    create = acts.add_parser("create-user", help="create a staff account")
    create.add_argument("name", help="login name: 2-32 letters, digits, _ . -")
    create.add_argument("--role", choices=sorted(ROLES), default="admin")
    create.add_argument("--openid", default="", help="a grid worker's WeChat openid")
    create.add_argument("--display", default="", help="the name shown on pages (e.g. 张敏)")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    password = acts.add_parser("set-password", help="set a new password (also unlocks)")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true")
    unlock = acts.add_parser("unlock", help="unlock an account locked by failed logins")
    unlock.add_argument("name")
    acts.add_parser("list-users", help="list staff accounts")
    return admin


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("密码（至少10位）：")
    if getpass.getpass("再输入一次：") != first:
        raise DomainError("两次输入的密码不一样")
    return first


async def _run(config: Config, args: argparse.Namespace, password: str) -> str:
    store = build_store(config)
    await store.open()
    try:
        accounts = AccountDesk(
            UserRepo(store), SessionRepo(store), AuditRepo(store), config.admin, time.time
        )
        if args.action == "create-user":
            user = await accounts.create_user(
                args.name,
                password,
                args.role,
                actor=ACTOR,
                display=args.display,
                openid=args.openid,
            )
            return f"created {user.name} ({user.role})"
        if args.action == "set-password":
            await accounts.set_password(args.name, password, actor=ACTOR)
            return f"password of {args.name} changed"
        if args.action == "unlock":
            await accounts.unlock(args.name, actor=ACTOR)
            return f"{args.name} unlocked"
        users = await accounts.users()
        now = time.time()
        lines = [
            f"{u.name}\t{u.role}\t{u.label}\t{'locked' if u.locked_until > now else 'ok'}"
            for u in users
        ]
        return "\n".join(lines) if lines else "no staff accounts yet"
    finally:
        await store.close()


def run(config: Config, args: argparse.Namespace) -> int:
    try:
        password = _password(args) if args.action in ("create-user", "set-password") else ""
        print(asyncio.run(_run(config, args, password)))
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
