"""Staff accounts: who may log in to the admin pages, with which role, for how long.

Passwords are hashed with Argon2id (``argon2-cffi``); hashing runs in a thread so a
login never stalls the webhook. Five wrong passwords in a row lock the account for
``[admin] lockout_minutes``. Sessions are random tokens; the store keeps only their
SHA-256, so a copy of the database does not log anyone in.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bot.config import AdminConfig
from bot.domain.errors import Invalid, Refused
from bot.errors import ConflictError
from storage.accounts import Session, SessionRepo, User, UserRepo
from storage.repos import AuditRepo

log = logging.getLogger("bot.accounts")

ADMIN = "admin"
GRID = "grid"
ROLES = {ADMIN: "管理员", GRID: "网格员"}
MIN_PASSWORD = 10
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{2,32}$")
# A session's last-seen time is written at most this often (a page view is then a read).
_TOUCH_EVERY = 60.0


class LoginRefused(Refused):
    """Wrong name or password, or a locked account (the message says which, for staff)."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session: Session
    token: str  # goes to the browser's cookie, never to the store or a log


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountDesk:
    def __init__(
        self,
        users: UserRepo,
        sessions: SessionRepo,
        audit: AuditRepo,
        config: AdminConfig,
        clock: Callable[[], float],
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._users = users
        self._sessions = sessions
        self._audit = audit
        self.config = config
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        # Verifying against this keeps an unknown name as slow as a wrong password.
        self._decoy: str | None = None

    # --- accounts -----------------------------------------------------------------

    async def create_user(
        self,
        name: str,
        password: str,
        role: str,
        *,
        actor: str,
        display: str = "",
        openid: str = "",
    ) -> User:
        if not _NAME.match(name):
            raise Invalid("用户名只能用 2–32 个英文字母、数字或 _ . -")
        if role not in ROLES:
            raise Invalid(f"角色必须是 {' / '.join(ROLES)} 之一")
        if role == GRID and not openid:
            raise Invalid("网格员账号需要 openid（网格里登记的微信 openid），才能知道负责哪些网格")
        _check_password(password)
        now = self._clock()
        user = User(
            name,
            role,
            await asyncio.to_thread(self._hasher.hash, password),
            display=display.strip()[:32],
            openid=openid.strip(),
            created_at=now,
            created_by=actor,
        )
        try:
            saved = await self._users.insert(user)
        except ConflictError as exc:
            raise Refused(f"用户 {name} 已存在") from exc
        await self._audit.add(actor, "user.create", f"user/{name}", {"role": role}, now)
        return saved

    async def set_password(self, name: str, password: str, *, actor: str) -> User:
        _check_password(password)
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        user = await self._change(
            name, lambda u: replace(u, password_hash=hashed, failures=0, locked_until=0.0)
        )
        await self._audit.add(actor, "user.password", f"user/{name}", {}, self._clock())
        return user

    async def unlock(self, name: str, *, actor: str) -> User:
        user = await self._change(name, lambda u: replace(u, failures=0, locked_until=0.0))
        await self._audit.add(actor, "user.unlock", f"user/{name}", {}, self._clock())
        return user

    async def user(self, name: str) -> User | None:
        return await self._users.get(name)

    async def users(self) -> list[User]:
        return await self._users.all()

    async def _change(self, name: str, change: Callable[[User], User]) -> User:
        try:
            return await self._users.update(name, change)
        except KeyError as exc:
            raise Invalid(f"没有用户 {name}") from exc

    # --- logging in ---------------------------------------------------------------

    async def log_in(self, name: str, password: str) -> SignedIn:
        """A new session for the right password; :class:`LoginRefused` otherwise."""
        now = self._clock()
        user = await self._users.get(name) if _NAME.match(name) else None
        if user is None:
            if self._decoy is None:
                self._decoy = await asyncio.to_thread(self._hasher.hash, secrets.token_hex(16))
            await asyncio.to_thread(self._matches, self._decoy, password)
            log.warning("login refused: no user %r", name[:32])
            raise LoginRefused("用户名或密码不对")
        if user.locked_until > now:
            log.warning("login refused: %s is locked", name)
            raise LoginRefused(_locked_text(user.locked_until - now))
        if not await asyncio.to_thread(self._matches, user.password_hash, password):
            await self._failed(user, now)
        if user.failures:
            await self._users.update(name, lambda u: replace(u, failures=0))
        token = secrets.token_urlsafe(32)
        session = Session(
            token_key(token),
            name,
            secrets.token_urlsafe(24),
            created_at=now,
            seen_at=now,
            expires_at=now + self.config.session_hours * 3600,
        )
        await self._sessions.insert(session)
        log.info("%s logged in", name)
        return SignedIn(user, session, token)

    def _matches(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _failed(self, user: User, now: float) -> None:
        limit = self.config.login_attempts
        lock_for = self.config.lockout_minutes * 60

        def count(current: User) -> User:
            failures = current.failures + 1
            if failures >= limit:
                return replace(current, failures=0, locked_until=now + lock_for)
            return replace(current, failures=failures)

        after = await self._users.update(user.name, count)
        if after.locked_until > now:
            log.warning(
                "%s locked for %.0f min after %s failed logins", user.name, lock_for / 60, limit
            )
            await self._audit.add(
                "system", "user.locked", f"user/{user.name}", {"failures": limit}, now
            )
            raise LoginRefused(_locked_text(lock_for))
        log.warning(
            "login refused: wrong password for %s (%s of %s)", user.name, after.failures, limit
        )
        left = limit - after.failures
        raise LoginRefused(f"用户名或密码不对（再错 {left} 次账号将被锁定）")

    async def session(self, token: str) -> tuple[User, Session] | None:
        """The live session and its user for a cookie's token, or ``None``.

        A session ends at its absolute expiry, after ``session_idle_minutes`` without a
        request, or when its user is gone or locked.
        """
        if not token or len(token) > 100:
            return None
        now = self._clock()
        found = await self._sessions.get(token_key(token))
        if found is None:
            return None
        if found.ended(now, self._idle_limit):
            await self._sessions.delete(found.key)
            return None
        user = await self._users.get(found.user)
        if user is None or user.locked_until > now:
            return None
        if now - found.seen_at > _TOUCH_EVERY:
            found = found.seen(now)
            await self._sessions.put(found)
        return user, found

    @property
    def _idle_limit(self) -> float:
        return self.config.session_idle_minutes * 60

    async def log_out(self, token: str) -> None:
        await self._sessions.delete(token_key(token))

    async def purge_expired(self) -> int:
        """Delete ended sessions (the scheduler calls this; a page view also removes its own)."""
        now = self._clock()
        removed = 0
        after: str | None = None
        while True:
            page = await self._sessions.page(after=after, limit=500)
            for s in page:
                if s.ended(now, self._idle_limit):
                    await self._sessions.delete(s.key)
                    removed += 1
            if len(page) < 500:
                return removed
            after = page[-1].key


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"密码至少 {MIN_PASSWORD} 位")
    if len(password) > 256:
        raise Invalid("密码太长")


def _locked_text(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"密码错误次数过多，账号已锁定，请 {minutes} 分钟后再试，或请管理员解锁"
