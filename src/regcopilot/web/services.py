"""Everything a running instance holds, built from settings alone. Only this module knows
which backends were picked; the rest talks to protocols."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from regcopilot import where
from regcopilot.auth.authenticate import Authenticator, Credentials
from regcopilot.auth.cookies import cookie_name
from regcopilot.auth.identity import Refusal, SessionUser
from regcopilot.auth.nextauth import NextAuthTokens
from regcopilot.auth.password_pool import PasswordPool, default_workers
from regcopilot.auth.passwords import Hasher
from regcopilot.auth.rate_limit import LoginLimiter
from regcopilot.auth.renewal import SessionRenewal
from regcopilot.auth.revocations import RevocationList
from regcopilot.auth.session_workspace import SessionWorkspace
from regcopilot.auth.sessions import SessionService
from regcopilot.auth.sign_in import SignedIn, SignIn, SignInContext
from regcopilot.auth.tokens import SessionTokens
from regcopilot.auth.validator import SessionValidator
from regcopilot.background import stop
from regcopilot.cache.bus import EventBus
from regcopilot.cache.store import SharedStore
from regcopilot.cache.tiers import ValidationCache
from regcopilot.config import Settings
from regcopilot.factories import (
    build_cache,
    build_directory,
    build_keys,
    build_store,
    build_validator,
)
from regcopilot.feed import FeedState
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.metrics.cluster import ClusterMetrics
from regcopilot.metrics.security import SecurityLog
from regcopilot.users.audit import AuditTrail, NoAuditTrail, audit_trail
from regcopilot.users.directory import DirectoryUnavailable, UserDirectory
from regcopilot.users.recognise import describe
from regcopilot.users.session_stores import session_records
from regcopilot.web.migration import ForeignSessions
from regcopilot.workspaces.store import WorkspaceStore

log = logging.getLogger("regcopilot")

FEED_RETRY_SECONDS = 0.5


@dataclass
class Services:
    settings: Settings
    directory: UserDirectory
    cache: ValidationCache
    tokens: SessionTokens | NextAuthTokens  # the format SESSION_COOKIE_FORMAT issues
    revocations: RevocationList
    validator: SessionValidator
    metrics: AuthMetrics
    limiter: LoginLimiter
    foreign: ForeignSessions  # the other format's cookies (web/migration.py)
    passwords: PasswordPool
    sessions: SessionService
    security: SecurityLog
    authenticator: Authenticator
    signer: SignIn
    renewal: SessionRenewal  # sliding sessions (auth/renewal.py)
    bus: EventBus | None = None
    audit: AuditTrail = field(default_factory=NoAuditTrail)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def feed(self) -> FeedState:
        """The directory's change feed: one state, written by its listener (feed.py)."""
        return self.cache.freshness.feed

    async def authenticate(self, credentials: Credentials) -> SessionUser | Refusal:
        """The use case every request's session goes through (auth/authenticate.py)."""
        return await self.authenticator.authenticate(credentials)

    async def sign_in(
        self, email: str, password: str, context: SignInContext
    ) -> SignedIn | Refusal:
        """The use case every sign-in door calls (auth/sign_in.py)."""
        return await self.signer.sign_in(email, password, context)

    async def start(self) -> None:
        # Which directory, cache and feed this process serves from, before anything else.
        log.info(where.start_line(self.settings, self.directory.kind))
        await self.directory.open()
        # The schema is known now: the session store and the audit trail are picked for it.
        self.sessions.records = session_records(self.directory)
        self.audit = self.signer.audit = audit_trail(self.directory)
        log.info("User directory: %s", describe(self.directory.schema, self.directory.kind))
        # Before the first request: an entry in Redis can only be checked against the log.
        with contextlib.suppress(DirectoryUnavailable):
            self.cache.freshness.load(await self.directory.read_log())
        await self.sessions.start()  # the revoked set is in memory before any request
        await self.cache.start()
        if self.bus is not None:
            self.bus.start()
        self.audit.start()
        self.metrics.start(lambda: self.cache.backend)
        self._tasks.append(asyncio.create_task(self._follow_changes(), name="user-changes"))
        with contextlib.suppress(DirectoryUnavailable):
            if await self.directory.count() == 0:
                log.warning(
                    "No users yet - create the first one with: regcopilot users add "
                    "--email admin@example.com --password '<password>' --admin "
                    "(from a checkout: ./dev users add ...)"
                )

    async def _follow_changes(self) -> None:
        """Read the retained change log once (what an entry may be checked against), then
        follow it from its head; until then nothing is provable and the short TTL applies."""
        freshness = self.cache.freshness
        while freshness.floor is None:
            try:
                freshness.load(await self.directory.read_log())
            except DirectoryUnavailable as exc:
                log.warning("Change log unreadable (%s) - retrying", exc)
                await asyncio.sleep(FEED_RETRY_SECONDS)
        await self.directory.watch(
            freshness.cursor, self.validator.changed, freshness.feed, self.sessions.on_revoked
        )

    async def close(self) -> None:
        for task in self._tasks:
            await stop(task)
        await self.sessions.close()
        await self.audit.close()
        await self.metrics.close()
        if self.bus is not None:
            await self.bus.close()
        await self.cache.close()
        await self.directory.close()
        self.passwords.close()


def build_services(
    settings: Settings,
    *,
    shared: SharedStore | None = None,
    cache_kind: type[ValidationCache] = ValidationCache,
    validator_kind: type[SessionValidator] = SessionValidator,
) -> Services:
    """The instance's graph. `shared` stands in for the Redis store (a MemoryStore, in the use
    cases' unit tests); otherwise REDIS_URL decides. The kinds are the classes composed
    (bench/variants.py passes its benchmark variants; the product never does)."""
    prefix = settings.REDIS_KEY_PREFIX
    url = settings.REDIS_URL
    if shared is None:
        shared = build_store(settings)
    bus = EventBus(url, build_keys(settings).events_channel) if url else None
    cache = build_cache(settings, shared, cache_kind)
    directory = build_directory(settings)
    metrics = AuthMetrics(
        ClusterMetrics(url, prefix) if url else None, active_cap=settings.ACTIVE_USERS_TRACKED
    )
    assert settings.NEXTAUTH_SECRET is not None
    secret, max_age = settings.NEXTAUTH_SECRET, settings.SESSION_MAX_AGE_SECONDS
    # Both formats judge clocks alike and share the decoded-token budget (issue 9).
    clock = {"leeway": settings.TOKEN_CLOCK_LEEWAY_SECONDS,
             "cache_size": settings.DECODED_TOKEN_CACHE_SIZE,
             "absolute": settings.SESSION_ABSOLUTE_MAX_AGE_SECONDS}
    ours = SessionTokens(secret, max_age, **clock)
    nextauth = NextAuthTokens(secret, max_age, **clock)
    tokens = nextauth if settings.SESSION_COOKIE_FORMAT == "nextauth" else ours
    revocations = RevocationList(prefix, shared, bus, max_local=settings.REVOCATIONS_KEPT_LOCALLY,
                                 feed=cache.freshness.feed)
    validator = build_validator(settings, cache, directory, metrics, validator_kind)
    limiter = LoginLimiter(
        prefix,
        shared,
        account_limit=settings.LOGIN_MAX_FAILURES_PER_ACCOUNT,
        address_limit=settings.LOGIN_MAX_FAILURES_PER_ADDRESS,
        window=settings.LOGIN_LOCKOUT_SECONDS,
    )
    passwords = PasswordPool(
        Hasher(settings.PASSWORD_HASH_ROUNDS),
        workers=settings.PASSWORD_WORKERS or default_workers(),
        queue_size=settings.PASSWORD_QUEUE_SIZE,
    )
    sessions = SessionService(session_records(directory), revocations, metrics)
    security = SecurityLog()
    workspaces = WorkspaceStore(directory)
    return Services(
        settings=settings,
        directory=directory,
        cache=cache,
        tokens=tokens,
        revocations=revocations,
        validator=validator,
        metrics=metrics,
        limiter=limiter,
        foreign=ForeignSessions(settings, ours=ours, nextauth=nextauth),
        passwords=passwords,
        sessions=sessions,
        security=security,
        authenticator=Authenticator(
            primary=tokens, validator=validator, revocations=revocations, sessions=sessions,
            metrics=metrics, security=security,
            workspace=SessionWorkspace(directory, workspaces, metrics),
            served_max=settings.MAX_CACHE_SIZE,
        ),
        signer=SignIn(
            accounts=directory, workspaces=workspaces, tokens=tokens,
            cookie_name=cookie_name(settings),
            limiter=limiter, passwords=passwords, cache=cache, validator=validator,
            sessions=sessions, metrics=metrics, security=security,
            default_tenant=settings.SUPABASE_DEMO_TENANT_ID,
            autoconfirm=settings.GOTRUE_MAILER_AUTOCONFIRM,
        ),
        renewal=SessionRenewal(tokens, sessions, settings.SESSION_UPDATE_AGE_SECONDS),
        bus=bus,
    )
