"""Everything a running instance holds, built from settings alone. Only this module knows
which backends were picked; the rest talks to protocols."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from regcopilot.auth.password_pool import PasswordPool, default_workers
from regcopilot.auth.passwords import Hasher
from regcopilot.auth.rate_limit import LoginLimiter
from regcopilot.auth.revocations import RevocationList
from regcopilot.auth.tokens import SessionTokens
from regcopilot.auth.validator import SessionValidator
from regcopilot.background import stop
from regcopilot.cache.bus import EventBus
from regcopilot.cache.redis import RedisStore
from regcopilot.cache.tiers import ValidationCache
from regcopilot.config import Settings
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.metrics.cluster import ClusterMetrics
from regcopilot.metrics.security import SecurityLog
from regcopilot.users.directory import DirectoryUnavailable, UserDirectory, open_directory

log = logging.getLogger("regcopilot")


@dataclass
class Services:
    settings: Settings
    directory: UserDirectory
    cache: ValidationCache
    tokens: SessionTokens
    revocations: RevocationList
    validator: SessionValidator
    metrics: AuthMetrics
    limiter: LoginLimiter
    passwords: PasswordPool
    bus: EventBus | None = None
    security: SecurityLog = field(default_factory=SecurityLog)
    feed_connected: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        await self.directory.open()
        await self.cache.start()
        if self.bus is not None:
            self.bus.start()
        self.metrics.start(lambda: self.cache.backend)
        self._tasks.append(
            asyncio.create_task(
                self.directory.watch(self.validator.user_changed, self._feed_state),
                name="user-changes",
            )
        )
        with contextlib.suppress(DirectoryUnavailable):
            if await self.directory.count() == 0:
                log.warning(
                    "No users yet - create the first one with: regcopilot users add "
                    "--email admin@example.com --password '<password>' --admin "
                    "(from a checkout: ./dev users add ...)"
                )

    def _feed_state(self, connected: bool) -> None:
        self.feed_connected = connected
        self.cache.set_feed_connected(connected)

    async def close(self) -> None:
        for task in self._tasks:
            await stop(task)
        await self.metrics.close()
        if self.bus is not None:
            await self.bus.close()
        await self.cache.close()
        await self.directory.close()
        self.passwords.close()


def build_services(settings: Settings) -> Services:
    prefix = settings.REDIS_KEY_PREFIX
    url = settings.REDIS_URL
    shared = RedisStore(url, timeout_ms=settings.REDIS_TIMEOUT_MS) if url else None
    bus = EventBus(url, f"{prefix}events") if url else None
    cache = ValidationCache(
        ttl=settings.cache_ttl, max_size=settings.MAX_CACHE_SIZE, prefix=prefix, shared=shared,
        mode=settings.CACHE_MODE,
    )
    directory = open_directory(
        settings.DATABASE_URL,
        timeout=settings.DATABASE_TIMEOUT_SECONDS,
        pool_size=settings.DATABASE_POOL_SIZE,
        statement_cache_size=settings.DATABASE_STATEMENT_CACHE_SIZE,
    )
    metrics = AuthMetrics(
        ClusterMetrics(url, prefix) if url else None, active_cap=settings.ACTIVE_USERS_TRACKED
    )
    assert settings.NEXTAUTH_SECRET is not None
    return Services(
        settings=settings,
        directory=directory,
        cache=cache,
        tokens=SessionTokens(
            settings.NEXTAUTH_SECRET, settings.SESSION_MAX_AGE_SECONDS,
            leeway=settings.TOKEN_CLOCK_LEEWAY_SECONDS,
            cache_size=settings.DECODED_TOKEN_CACHE_SIZE,
        ),
        revocations=RevocationList(
            prefix, shared, bus, max_local=settings.REVOCATIONS_KEPT_LOCALLY
        ),
        validator=SessionValidator(cache, directory, metrics, settings.SUPABASE_DEMO_TENANT_ID),
        metrics=metrics,
        limiter=LoginLimiter(
            prefix,
            shared,
            account_limit=settings.LOGIN_MAX_FAILURES_PER_ACCOUNT,
            address_limit=settings.LOGIN_MAX_FAILURES_PER_ADDRESS,
            window=settings.LOGIN_LOCKOUT_SECONDS,
        ),
        passwords=PasswordPool(
            Hasher(settings.PASSWORD_HASH_ROUNDS),
            workers=settings.PASSWORD_WORKERS or default_workers(),
            queue_size=settings.PASSWORD_QUEUE_SIZE,
        ),
        bus=bus,
    )
