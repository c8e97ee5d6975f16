"""The composition root's parts: the one way to build a directory, a Redis store and the key
layout from settings. The app (web/services.py), the CLI, the preflight and `doctor` all call
these, so a setting such as DATABASE_STATEMENT_CACHE_SIZE (required behind a transaction
pooler) is honoured by every one of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regcopilot.auth.validator import SessionValidator
from regcopilot.cache.freshness import Freshness
from regcopilot.cache.keys import CacheKeys
from regcopilot.cache.redis import RedisStore
from regcopilot.cache.store import SharedStore, StoreError
from regcopilot.cache.tiers import ValidationCache
from regcopilot.config import Settings, load_settings
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.users.admin import UserAdmin
from regcopilot.users.backends import backend_of, open_directory
from regcopilot.users.directory import UserDirectory
from regcopilot.users.session_stores import session_records
from regcopilot.users.sessions import SessionRecords

if TYPE_CHECKING:
    from regcopilot.ops.doctor.report import Parts

# Outside the request path (CLI, doctor) a command may wait longer than a request would.
TOOL_REDIS_TIMEOUT_MS = 1000


def build_directory(settings: Settings, *, pool_size: int | None = None) -> UserDirectory:
    return open_directory(
        settings.DATABASE_URL,
        timeout=settings.DATABASE_TIMEOUT_SECONDS,
        pool_size=settings.DATABASE_POOL_SIZE if pool_size is None else pool_size,
        statement_cache_size=settings.DATABASE_STATEMENT_CACHE_SIZE,
        log_keep_seconds=settings.change_log_keep_seconds,
        direct_url=settings.DATABASE_DIRECT_URL,
        poll_seconds=settings.CHANGE_FEED_POLL_SECONDS,
    )


def build_store(settings: Settings, *, timeout_ms: int | None = None) -> RedisStore | None:
    """The shared store, or None without REDIS_URL."""
    if not settings.REDIS_URL:
        return None
    return store_at(
        settings.REDIS_URL, settings.REDIS_TIMEOUT_MS if timeout_ms is None else timeout_ms
    )


def store_at(url: str, timeout_ms: int) -> RedisStore:
    """The store for a REDIS_URL: contacts nothing until its first command (`doctor` builds it
    from the raw URL too, when another setting does not validate)."""
    return RedisStore(url, timeout_ms=timeout_ms)


def read_settings() -> Settings:
    """The settings as the app reads them, for checks that must leave nothing behind: no
    secret file generated, nothing logged (`doctor` reports those on their own lines)."""
    return load_settings(create_secret=False, warn=False)


def doctor_parts() -> Parts:
    """What `doctor` reads, opened as the app opens it and creating nothing: the settings,
    the Redis store, the directory backend a DATABASE_URL names (doctor then reads that
    directory read-only: the app's open() would create its schema)."""
    from regcopilot.ops.doctor.report import Parts  # the CLI's, not the app's, start-up

    return Parts(
        settings=read_settings,
        store=lambda url, timeout_s: store_at(url, int(timeout_s * 1000)),
        backend=backend_of,
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
        # The schema is known now: the session store for it (auth.sessions on GoTrue's).
        self.records = session_records(self.directory)

    async def close(self) -> None:
        await self.directory.close()
        if self.store is not None:
            await self.store.close()


def build_admin(settings: Settings, warn: Callable[[str], None]) -> AdminGraph:
    """The CLI's graph; `warn` hears what went wrong without failing the command."""
    directory = build_directory(settings)
    store = build_store(settings, timeout_ms=TOOL_REDIS_TIMEOUT_MS)
    keys = build_keys(settings)

    async def drop_shared(user_id: str) -> None:
        # Running instances hear the directory's trigger; Redis is cleared here too so an
        # instance started later cannot read the stale entry.
        if store is not None:
            try:
                await store.delete(keys.validation(user_id))
            except StoreError as exc:
                warn(f"Redis not cleared ({exc})")

    async def end_sessions(user_id: str, reason: str) -> int:
        # Written to the session records (picked at open): the table's trigger tells every
        # running instance.
        return len(await graph.records.revoke_all(user_id, reason))

    graph = AdminGraph(directory, store, session_records(directory),
                       UserAdmin(directory, drop_shared, end_sessions))
    return graph
