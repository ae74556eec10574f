"""Typed configuration loaded from TOML, validated once at start-up.

Every key is documented in ``config.example.toml``. A bad file raises
:class:`ConfigError` with one line that names the key, which the CLI prints
before exiting with status 2.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import ConfigError

_AES_KEY = re.compile(r"^[A-Za-z0-9]{43}$")
_TOKEN = re.compile(r"^[A-Za-z0-9]{3,32}$")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True, slots=True)
class WeChatConfig:
    app_id: str = "wx0000000000demo00"
    app_secret: str = "demo-secret"
    token: str = "gongzhidemo"
    # Empty means plaintext mode; 43 characters means safe (AES) mode is possible.
    encoding_aes_key: str = ""
    api_base_url: str = "https://api.weixin.qq.com"
    api_timeout: float = 5.0
    # Fetch the access token at start-up, so a wrong secret or a missing IP whitelist
    # shows in the log at once rather than at the first late reply.
    check_at_start: bool = True


@dataclass(frozen=True, slots=True)
class StorageConfig:
    backend: str = "tinydb"
    path: str = "./data"
    dsn: str = ""
    pool_size: int = 10
    # One database can hold many communities, one PostgreSQL schema each.
    pg_schema: str = "public"


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str = ""
    # One Redis can serve many communities, each under its own key prefix.
    prefix: str = "gongzhi:"


@dataclass(frozen=True, slots=True)
class AdminConfig:
    api_token: str = ""
    # Staff web pages (/admin/): a login lasts at most session_hours, and ends sooner
    # after session_idle_minutes without a page view.
    session_hours: float = 12.0
    session_idle_minutes: float = 60.0
    login_attempts: int = 5
    lockout_minutes: float = 15.0
    # Behind an HTTPS proxy, mark the session cookie Secure.
    cookie_secure: bool = False


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    timezone: str = "Asia/Shanghai"
    # A run missed while the server was down this long or less runs once when it is back.
    missed_run_grace_hours: float = 6.0


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    max_body_bytes: int = 64 * 1024
    # WeChat gives up at 5 s; answering `success` a little earlier leaves room for the network.
    reply_deadline: float = 4.5
    timestamp_skew: int = 300
    # WeChat retries within ~15 s; keys are kept far longer so a late replay still hits.
    dedup_ttl: int = 300


@dataclass(frozen=True, slots=True)
class ConversationConfig:
    idle_minutes: float = 10.0
    lock_timeout: float = 4.0


@dataclass(frozen=True, slots=True)
class VolunteerConfig:
    # A template message reaches a volunteer outside WeChat's 48-hour reply window;
    # without one, reminders and notices go as customer-service messages.
    reminder_template_id: str = ""
    waitlist_max: int = 200
    # How often the scheduler looks for activities whose reminder is due.
    reminder_check_seconds: int = 60


@dataclass(frozen=True, slots=True)
class ReportsConfig:
    categories: tuple[str, ...] = (
        "环境卫生",
        "排水",
        "车辆停放",
        "绿化",
        "治安",
        "设施损坏",
        "其他",
    )
    # Open reports of the same category this close are offered as "is it one of these?".
    duplicate_radius_m: float = 100.0
    # Not accepted within this long: the grid leader, then the community admins, are alerted.
    accept_within_minutes: int = 120
    # Not resolved within this many working days (Monday to Friday): the same escalation.
    resolve_within_working_days: int = 3
    reopen_days: int = 7
    # Template for alerts to grid workers; empty: customer-service messages (48 h window).
    alert_template_id: str = ""
    # Community admins (openids): may act on every report, and receive the last escalation.
    admin_openids: tuple[str, ...] = ()
    # Where report photos fetched from WeChat are kept; empty: <storage path>/media.
    media_dir: str = ""


# Residents type "3栋2单元501", "3-2-501" or "3 2 501"; Chinese numerals are read as digits
# first. Named groups: building and room (required), unit (optional in a custom pattern).
DEFAULT_ADDRESS_PATTERN = (
    r"(?<![0-9A-Z])(?P<building>[0-9A-Z]{1,6})\s*(?:栋|幢|号楼|座|楼|#|-|/|\s)\s*"
    r"(?P<unit>[0-9A-Z]{1,4})\s*(?:单元|-|/|\s)\s*(?P<room>[0-9A-Z]{1,6})\s*(?:室|号)?$"
)


@dataclass(frozen=True, slots=True)
class AssemblyConfig:
    # How residents write their address (a regular expression, see DEFAULT_ADDRESS_PATTERN)
    # and the example the bot shows them.
    address_pattern: str = DEFAULT_ADDRESS_PATTERN
    address_example: str = "3栋2单元501"
    # true: the first resident to bind an address creates its household; false: only
    # households staff imported can be bound.
    open_binding: bool = True
    max_members: int = 20
    # The quorum the organiser sees: this share of all households answering 参加.
    quorum_ratio: float = 0.5
    # The "rsvp:coming" audience is the households that said 参加/待定, on the day this many
    # days before the assembly (so a daily reminder schedule reminds once, the day before).
    remind_days_before: int = 1
    publicity_days: int = 7
    # Template for notices to representatives (a member's answer); empty: customer-service.
    notice_template_id: str = ""
    # The largest CSV staff may import in one request.
    import_max_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PushConfig:
    # Sends per second across every process (template, custom) and mass-send jobs per second.
    rate_per_second: int = 20
    # Openids per mass-send job (WeChat takes 2 to 10,000).
    mass_batch: int = 10_000
    # WeChat allows a service account 4 mass messages a month per follower.
    mass_monthly_limit: int = 4
    # Attempts per delivery for errors that may pass (system busy, unexpected codes).
    max_attempts: int = 8
    # The pause after WeChat answers -1 (busy) or 45009 (rate or quota); it doubles while
    # WeChat keeps answering so, up to backoff_max_seconds.
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    # How long a process holds a delivery it is sending; a crashed holder's delivery is
    # looked at again after this (longer than any one send can take).
    lease_seconds: float = 60.0
    # Sends in flight at once per campaign in each process.
    concurrency: int = 4


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    wechat: WeChatConfig = field(default_factory=WeChatConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    conversation: ConversationConfig = field(default_factory=ConversationConfig)
    volunteer: VolunteerConfig = field(default_factory=VolunteerConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    assembly: AssemblyConfig = field(default_factory=AssemblyConfig)
    push: PushConfig = field(default_factory=PushConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def aes_enabled(self) -> bool:
        return bool(self.wechat.encoding_aes_key)


# Keys a real account's file must set: the demo values would silently run a dead bot.
REQUIRED = (("wechat", "app_id"), ("wechat", "app_secret"), ("wechat", "token"))
BACKENDS = ("tinydb", "postgres")


def demo_config(data_dir: str = "./data") -> Config:
    """Built-in settings for `python -m bot serve` without `--config`."""
    # The demo account does not exist: asking WeChat for its token would only fail.
    return Config(wechat=WeChatConfig(check_at_start=False), storage=StorageConfig(path=data_dir))


def load_config(path: str | Path) -> Config:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    for section, key in REQUIRED:
        if key not in raw.get(section, {}):
            raise ConfigError(f"{path}: missing required key [{section}] {key}")
    return validate(_build(Config, raw, ""))


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in known:
            place = f"[{where}] {name}" if where else f"[{name}]"
            raise ConfigError(f"unknown config key {place}")
        default = getattr(cls(), name)
        if is_dataclass(default):
            values[name] = _build(type(default), value, name)
        else:
            values[name] = _coerce(value, default, f"[{where}] {name}")
    return cls(**values)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{where} must be a {type(default).__name__}, got {value!r}")
    return value


def validate(config: Config) -> Config:
    w = config.wechat
    if w.encoding_aes_key and not _AES_KEY.match(w.encoding_aes_key):
        raise ConfigError(
            "[wechat] encoding_aes_key must be empty (plaintext mode) or exactly 43 letters "
            f"and digits, got {len(w.encoding_aes_key)} characters"
        )
    if not _TOKEN.match(w.token):
        raise ConfigError("[wechat] token must be 3 to 32 letters and digits")
    if not w.app_id:
        raise ConfigError("[wechat] app_id must not be empty")
    if not w.api_base_url.startswith(("http://", "https://")):
        raise ConfigError("[wechat] api_base_url must start with http:// or https://")
    s = config.storage
    if s.backend not in BACKENDS:
        raise ConfigError(
            f"[storage] backend must be one of {', '.join(BACKENDS)}, got {s.backend!r}"
        )
    if s.backend == "postgres" and not s.dsn:
        raise ConfigError('[storage] dsn is required when backend = "postgres"')
    if s.backend == "tinydb" and not s.path:
        raise ConfigError('[storage] path is required when backend = "tinydb"')
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", s.pg_schema):
        raise ConfigError("[storage] pg_schema must be lower-case letters, digits and _")
    if not 1 <= s.pool_size <= 200:
        raise ConfigError("[storage] pool_size must be between 1 and 200")
    if config.redis.url and not config.redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("[redis] url must start with redis://, rediss:// or unix://")
    if not 1 <= config.server.port <= 65535:
        raise ConfigError("[server] port must be between 1 and 65535")
    try:
        ZoneInfo(config.scheduler.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"[scheduler] timezone {config.scheduler.timezone!r} is unknown") from exc
    if not 0 < config.scheduler.missed_run_grace_hours <= 72:
        raise ConfigError("[scheduler] missed_run_grace_hours must be above 0 and at most 72")
    hook = config.webhook
    if not 0.5 <= hook.reply_deadline < 5.0:
        raise ConfigError("[webhook] reply_deadline must be at least 0.5 and below WeChat's 5 s")
    if hook.dedup_ttl < 300:
        raise ConfigError("[webhook] dedup_ttl must be at least 300 seconds")
    if hook.max_body_bytes < 1024:
        raise ConfigError("[webhook] max_body_bytes must be at least 1024")
    if config.conversation.idle_minutes <= 0:
        raise ConfigError("[conversation] idle_minutes must be positive")
    v = config.volunteer
    if not 1 <= v.waitlist_max <= 10_000:
        raise ConfigError("[volunteer] waitlist_max must be between 1 and 10000")
    if not 5 <= v.reminder_check_seconds <= 3600:
        raise ConfigError("[volunteer] reminder_check_seconds must be between 5 and 3600")
    r = config.reports
    if not r.categories or len(r.categories) > 9 or any(not c.strip() for c in r.categories):
        raise ConfigError("[reports] categories must list 1 to 9 non-empty names")
    if not 10 <= r.duplicate_radius_m <= 5000:
        raise ConfigError("[reports] duplicate_radius_m must be between 10 and 5000")
    if r.accept_within_minutes < 5 or r.resolve_within_working_days < 1 or r.reopen_days < 1:
        raise ConfigError(
            "[reports] accept_within_minutes must be at least 5, "
            "resolve_within_working_days and reopen_days at least 1"
        )
    a = config.admin
    if not (0 < a.session_hours <= 24 * 14 and 0 < a.session_idle_minutes <= 24 * 60):
        raise ConfigError(
            "[admin] session_hours must be above 0 and at most 336, "
            "session_idle_minutes above 0 and at most 1440"
        )
    if not (1 <= a.login_attempts <= 100 and 0 < a.lockout_minutes <= 24 * 60):
        raise ConfigError(
            "[admin] login_attempts must be between 1 and 100, lockout_minutes above 0 and at most 1440"
        )
    _validate_assembly(config.assembly)
    _validate_push(config.push, config.wechat.api_timeout)
    if config.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("[log] level must be DEBUG, INFO, WARNING or ERROR")
    return config


def _validate_assembly(a: AssemblyConfig) -> None:
    try:
        pattern = re.compile(a.address_pattern)
    except re.error as exc:
        raise ConfigError(
            f"[assembly] address_pattern is not a valid regular expression: {exc}"
        ) from exc
    if not {"building", "room"} <= set(pattern.groupindex):
        raise ConfigError("[assembly] address_pattern needs the named groups building and room")
    if not 0 < a.quorum_ratio <= 1:
        raise ConfigError("[assembly] quorum_ratio must be above 0 and at most 1")
    if not 0 <= a.remind_days_before <= 14:
        raise ConfigError("[assembly] remind_days_before must be between 0 and 14")
    if not 0 <= a.publicity_days <= 60:
        raise ConfigError("[assembly] publicity_days must be between 0 and 60")
    if not 1 <= a.max_members <= 100:
        raise ConfigError("[assembly] max_members must be between 1 and 100")
    if not 1024 <= a.import_max_bytes <= 64 * 1024 * 1024:
        raise ConfigError("[assembly] import_max_bytes must be between 1024 and 67108864")


def _validate_push(p: PushConfig, api_timeout: float) -> None:
    if not 1 <= p.rate_per_second <= 10_000:
        raise ConfigError("[push] rate_per_second must be between 1 and 10000")
    if not 2 <= p.mass_batch <= 10_000:
        raise ConfigError("[push] mass_batch must be between 2 and 10000 (WeChat's limits)")
    if not 1 <= p.mass_monthly_limit <= 31:
        raise ConfigError("[push] mass_monthly_limit must be between 1 and 31")
    if not 1 <= p.max_attempts <= 100:
        raise ConfigError("[push] max_attempts must be between 1 and 100")
    if not 0 < p.backoff_seconds <= p.backoff_max_seconds <= 86_400:
        raise ConfigError(
            "[push] backoff_seconds must be above 0 and at most backoff_max_seconds (at most 86400)"
        )
    if p.lease_seconds < 4 * api_timeout:
        raise ConfigError(
            "[push] lease_seconds must be at least 4 × [wechat] api_timeout "
            "(a send with a token refresh and its retry must end within the lease)"
        )
    if not 1 <= p.concurrency <= 100:
        raise ConfigError("[push] concurrency must be between 1 and 100")


def with_overrides(config: Config, **sections: Any) -> Config:
    """A copy with whole sections replaced (tests and the chat simulator)."""
    return replace(config, **sections)
