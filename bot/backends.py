"""Choosing the store and the coordinator from the configuration."""

from __future__ import annotations

from pathlib import Path

from bot.config import Config
from bot.coordination.base import Coordinator
from bot.coordination.local import LocalCoordinator
from bot.errors import ConfigError
from storage.contract import Store
from storage.schema import SCHEMA


def build_store(config: Config) -> Store:
    s = config.storage
    if s.backend == "tinydb":
        from storage.tinydb_store import TinyDBStore

        return TinyDBStore(Path(s.path), SCHEMA)
    if s.backend == "postgres":
        from storage.postgres_store import PostgresStore

        return PostgresStore(s.dsn, SCHEMA, pool_size=s.pool_size, namespace=s.pg_schema)
    raise ConfigError(f"[storage] backend {s.backend!r} is not available")


def build_coordinator(config: Config) -> Coordinator:
    """Redis when configured, else PostgreSQL with the postgres store, else in-process.

    The embedded store admits one process, so there is nothing to share with it.
    """
    if config.redis.url:
        from bot.coordination.redis_backend import RedisCoordinator

        return RedisCoordinator(
            config.redis.url, prefix=config.redis.prefix, app_id=config.wechat.app_id
        )
    if config.storage.backend == "postgres":
        from bot.coordination.pg_backend import PostgresCoordinator

        return PostgresCoordinator(
            config.storage.dsn, namespace=config.storage.pg_schema, app_id=config.wechat.app_id
        )
    return LocalCoordinator()
