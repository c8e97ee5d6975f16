"""Which directory a DATABASE_URL names: the one place that knows both backends."""

from __future__ import annotations

from regcopilot.users.directory import DEFAULT_LOG_KEEP_SECONDS, UserDirectory
from regcopilot.users.postgres import PostgresDirectory
from regcopilot.users.sqlite import SqliteDirectory


def backend_of(url: str) -> str | None:
    """The backend a DATABASE_URL names (its `kind`), or None when it names neither."""
    if url.startswith("sqlite:///"):
        return SqliteDirectory.kind
    if url.split(":", 1)[0] in ("postgres", "postgresql"):
        return PostgresDirectory.kind
    return None


def open_directory(
    url: str,
    *,
    timeout: float = 2.0,
    pool_size: int = 10,
    statement_cache_size: int = 100,
    log_keep_seconds: float = DEFAULT_LOG_KEEP_SECONDS,
    direct_url: str | None = None,
    poll_seconds: float = 1.0,
) -> UserDirectory:
    if backend_of(url) == SqliteDirectory.kind:
        return SqliteDirectory(
            url.removeprefix("sqlite:///"), timeout=timeout, log_keep_seconds=log_keep_seconds
        )
    return PostgresDirectory(
        url, timeout=timeout, pool_size=pool_size, statement_cache_size=statement_cache_size,
        log_keep_seconds=log_keep_seconds, direct_url=direct_url, poll_seconds=poll_seconds,
    )
