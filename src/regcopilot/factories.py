"""The composition root's parts: the one way to build a directory, a Redis store and the key
layout from settings. The app (web/services.py), the CLI, the preflight and `doctor` all call
these, so a setting such as DATABASE_STATEMENT_CACHE_SIZE (required behind a transaction
pooler) is honoured by every one of them."""

from __future__ import annotations

from regcopilot.auth.validator import DirectValidator, SessionValidator
from regcopilot.cache.freshness import Freshness
from regcopilot.cache.keys import CacheKeys
from regcopilot.cache.redis import RedisStore
from regcopilot.cache.store import SharedStore
from regcopilot.cache.tiers import SharedOnlyCache, UncachedCache, ValidationCache
from regcopilot.config import Settings
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.users.directory import UserDirectory, open_directory

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


# CACHE_MODE picks a class here, once: the request path has no branch on it.
_CACHES: dict[str, type[ValidationCache]] = {
    "tiered": ValidationCache,
    "redis-only": SharedOnlyCache,
    "none": UncachedCache,
}


def build_cache(settings: Settings, shared: SharedStore | None) -> ValidationCache:
    return _CACHES[settings.CACHE_MODE](
        ttl=settings.cache_ttl, max_size=settings.MAX_CACHE_SIZE,
        prefix=settings.REDIS_KEY_PREFIX, shared=shared,
        freshness=Freshness(settings.cache_ttl, settings.cache_max_age),
    )


def build_validator(
    settings: Settings, cache: ValidationCache, directory: UserDirectory, metrics: AuthMetrics
) -> SessionValidator:
    kind = DirectValidator if settings.CACHE_MODE == "none" else SessionValidator
    return kind(cache, directory, metrics, settings.SUPABASE_DEMO_TENANT_ID)
