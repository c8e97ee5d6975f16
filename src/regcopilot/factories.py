"""The composition root's parts: the one way to build a directory, a Redis store and the key
layout from settings. The app (web/services.py), the CLI, the preflight and `doctor` all call
these, so a setting such as DATABASE_STATEMENT_CACHE_SIZE (required behind a transaction
pooler) is honoured by every one of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from regcopilot.auth.validator import SessionValidator
from regcopilot.cache.freshness import Freshness
from regcopilot.cache.keys import CacheKeys
from regcopilot.cache.redis import RedisStore
from regcopilot.cache.store import SharedStore, StoreError
from regcopilot.cache.tiers import ValidationCache
from regcopilot.config import Settings
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.users.admin import UserAdmin
from regcopilot.users.backends import open_directory
from regcopilot.users.directory import UserDirectory
from regcopilot.users.sessions import SessionRecords, session_records

# Outside the request path (CLI, doctor) a command may wait longer than a request would.
TOOL_REDIS_TIMEOUT_MS = 1000


def build_directory(settings: Settings, *, pool_size: int | None = None) -> UserDirectory:
    return open_directory(
        settings.DATABASE_URL,
        timeout=settings.DATABASE_TIMEOUT_SECONDS,
        pool_size=settings.DATABASE_POOL_SIZE if pool_size is None else pool_size,
        statement_cache_size=settings.DATABASE_STATEMENT_CACHE_SIZE,
        log_keep_seconds=settings.change_log_keep_seconds,
    )


def build_store(settings: Settings, *, timeout_ms: int | None = None) -> RedisStore | None:
    """The shared store, or None without REDIS_URL."""
    if not settings.REDIS_URL:
        return None
    return RedisStore(
        settings.REDIS_URL,
        timeout_ms=settings.REDIS_TIMEOUT_MS if timeout_ms is None else timeout_ms,
    )


def build_keys(settings: Settings) -> CacheKeys:
    return CacheKeys(settings.REDIS_KEY_PREFIX)


def build_cache(
    settings: Settings, shared: SharedStore | None,
    kind: type[ValidationCache] = ValidationCache,
) -> ValidationCache:
    """`kind`: another cache class composed at build time (bench/variants.py's)."""
    return kind(
        ttl=settings.cache_ttl, max_size=settings.MAX_CACHE_SIZE,
        prefix=settings.REDIS_KEY_PREFIX, shared=shared,
        freshness=Freshness(settings.cache_ttl, settings.cache_max_age),
    )


def build_validator(
    settings: Settings, cache: ValidationCache, directory: UserDirectory, metrics: AuthMetrics,
    kind: type[SessionValidator] = SessionValidator,
) -> SessionValidator:
    return kind(cache, directory, metrics, settings.SUPABASE_DEMO_TENANT_ID)


@dataclass
class AdminGraph:
    """What a shell command acts through: the directory, the Redis store (to drop a changed
    user's entry for instances started later), the session records, and UserAdmin wired to
    both — the same actions the admin API takes, built from the same factories."""

    directory: UserDirectory
    store: RedisStore | None
    records: SessionRecords
    admin: UserAdmin

    async def open(self) -> None:
        await self.directory.open()

    async def close(self) -> None:
        await self.directory.close()
        if self.store is not None:
            await self.store.close()


def build_admin(settings: Settings, warn: Callable[[str], None]) -> AdminGraph:
    """The CLI's graph; `warn` hears what went wrong without failing the command."""
    directory = build_directory(settings)
    store = build_store(settings, timeout_ms=TOOL_REDIS_TIMEOUT_MS)
    keys = build_keys(settings)
    records = session_records(directory)

    async def drop_shared(user_id: str) -> None:
        # Running instances hear the directory's trigger; Redis is cleared here too so an
        # instance started later cannot read the stale entry.
        if store is not None:
            try:
                await store.delete(keys.validation(user_id))
            except StoreError as exc:
                warn(f"Redis not cleared ({exc})")

    async def end_sessions(user_id: str, reason: str) -> int:
        # Written to the session records: the table's trigger tells every running instance.
        return len(await records.revoke_all(user_id, reason))

    return AdminGraph(directory, store, records, UserAdmin(directory, drop_shared, end_sessions))
