"""Which directory a DATABASE_URL names: the one place that knows both backends."""

from __future__ import annotations

from regcopilot.users.directory import DEFAULT_LOG_KEEP_SECONDS, UserDirectory
from regcopilot.users.postgres import PostgresDirectory
from regcopilot.users.sqlite import SqliteDirectory


def open_directory(
    url: str,
    *,
    timeout: float = 2.0,
    pool_size: int = 10,
    statement_cache_size: int = 100,
    log_keep_seconds: float = DEFAULT_LOG_KEEP_SECONDS,
) -> UserDirectory:
    if url.startswith("sqlite:"):
        return SqliteDirectory(
            url.removeprefix("sqlite:///"), timeout=timeout, log_keep_seconds=log_keep_seconds
        )
    return PostgresDirectory(
        url, timeout=timeout, pool_size=pool_size, statement_cache_size=statement_cache_size,
        log_keep_seconds=log_keep_seconds,
    )
