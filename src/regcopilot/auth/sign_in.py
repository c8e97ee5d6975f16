"""The `sign_in` use case: an email and a password in, a new session (or why not) out.

Rate limits → the password pool's room → the account → the password → the verdict → the
session's workspace → a stale cached refusal dropped → the token → the session's durable
record → the sign-in counted. Every door (the JSON login, the form, NextAuth's callback, …)
translates HTTP and calls this; none repeats a step. No HTTP here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from regcopilot.auth.identity import (
    DIRECTORY_DOWN,
    RETRY_AFTER_SECONDS,
    Refusal,
    SessionUser,
)
from regcopilot.auth.password_pool import PasswordBusy, PasswordPool
from regcopilot.auth.rate_limit import LoginLimiter, RateLimited
from regcopilot.auth.sessions import SessionService
from regcopilot.auth.tokens import Claims, TokenFormat
from regcopilot.auth.validator import SessionValidator
from regcopilot.cache.tiers import ValidationCache
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.metrics.security import SecurityLog
from regcopilot.names import Door, Reason
from regcopilot.users.audit import AuditTrail, NoAuditTrail
from regcopilot.users.directory import (
    Accounts,
    DirectoryUnavailable,
    judge,
    normalize_email,
)
from regcopilot.users.gotrue_rules import (
    EMAIL_NOT_CONFIRMED,
    email_unconfirmed,
    password_usable,
)
from regcopilot.workspaces.store import WorkspaceStore

log = logging.getLogger("regcopilot.auth")

BAD_CREDENTIALS = "Invalid email or password"
BANNED = Refusal(403, "This account is banned")
UNCONFIRMED = Refusal(403, EMAIL_NOT_CONFIRMED)
NO_WORKSPACE = Refusal(403, "no accessible workspace")
WRONG = Refusal(401, BAD_CREDENTIALS)
BUSY = Refusal(503, "too many sign-ins in progress, try again shortly",
               PasswordBusy.retry_after)
DOWN = Refusal(503, DIRECTORY_DOWN, RETRY_AFTER_SECONDS)
LIMITED = "Too many failed sign-in attempts, try again later"


@dataclass(frozen=True, slots=True)
class SignInContext:
    """Where a sign-in comes from: the client's address (rate limits, the security log, the
    session's record), its User-Agent (the session's record) and the door it came through."""

    client: str | None
    user_agent: str | None
    door: Door = Door.API


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What a door needs to answer: the token to set as cookie `cookie_name` for `max_age`
    seconds, and who is signed in (user.jti is the session's id, user.exp its expiry)."""

    token: str
    cookie_name: str
    max_age: int
    user: SessionUser
    claims: Claims

    @property
    def session_id(self) -> str:
        return self.user.jti

    @property
    def expires(self) -> int:
        """Unix seconds."""
        return self.user.exp


class SignIn:
    def __init__(
        self,
        *,
        accounts: Accounts,
        workspaces: WorkspaceStore,
        tokens: TokenFormat,
        cookie_name: str,
        limiter: LoginLimiter,
        passwords: PasswordPool,
        cache: ValidationCache,
        validator: SessionValidator,
        sessions: SessionService,
        metrics: AuthMetrics,
        security: SecurityLog,
        default_tenant: str,
        autoconfirm: bool = False,
    ) -> None:
        self.accounts = accounts
        self.workspaces = workspaces
        self.tokens = tokens
        self.cookie_name = cookie_name
        self.limiter = limiter
        self.passwords = passwords
        self.cache = cache
        self.validator = validator
        self.sessions = sessions
        self.metrics = metrics
        self.security = security
        self.default_tenant = default_tenant
        self.autoconfirm = autoconfirm  # GOTRUE_MAILER_AUTOCONFIRM
        # Picked with the session store once the directory knows its schema (Services.start).
        self.audit: AuditTrail = NoAuditTrail()

    async def sign_in(
        self, email: str, password: str, context: SignInContext
    ) -> SignedIn | Refusal:
        ip = context.client
        email = normalize_email(email)
        try:
            await self.limiter.check(email, ip)
        except RateLimited as limited:
            self.security.rate_limited(limited.what, ip)
            return Refusal(429, LIMITED, limited.retry_after)
        if self.passwords.full:  # refused before asking the directory anything
            return BUSY
        try:
            user = await self.accounts.find_by_email(email)
        except DirectoryUnavailable:
            return DOWN
        verdict = judge(user, self.default_tenant)
        usable = password_usable(user)  # GoTrue's rules: no SSO-only, anonymous, broken rows
        try:
            password_ok = await self.passwords.verify(
                password, user.password_hash if user and usable else None
            )
        except PasswordBusy:
            return BUSY
        if (user is None or not usable or not password_ok
                or verdict.reason in (Reason.DELETED, Reason.NOT_FOUND)):
            self.security.failed_login(email, ip)
            await self.limiter.failed(email, ip)
            return WRONG
        if verdict.reason == Reason.BANNED:
            self.security.failed_login(email, ip)
            return BANNED
        if email_unconfirmed(user, self.autoconfirm):
            return UNCONFIRMED  # only now: the password was right
        await self.limiter.succeeded(email, ip)
        try:  # the first sign-in makes a personal workspace; the session starts in the current
            workspace = await self.workspaces.ensure_personal(user)
        except DirectoryUnavailable:
            return DOWN
        if workspace.tenant_id is None:
            return NO_WORKSPACE
        cached = await self.cache.get(user.id)
        if cached is not None and not cached.is_valid:
            # The directory just said yes (e.g. unbanned a moment ago, before the change feed
            # reached us): a stale refusal must not log the new session straight out again.
            await self.validator.user_changed(user.id)
        token, claims = self.tokens.issue(
            sub=user.id, email=user.email, tenant=workspace.tenant_id, role=user.role,
            name=user.full_name,
        )
        try:
            await self.sessions.issued(claims.jti, user.id, claims.exp, context.user_agent, ip)
        except DirectoryUnavailable:
            # A session without its record could not be listed nor revoked by "sign out
            # everywhere": no record, no session.
            return DOWN
        self.metrics.login(user.id)
        self.audit.login(user, ip)  # queued: written off the request's path
        try:
            await self.accounts.record_sign_in(user.id)
        except DirectoryUnavailable:
            log.debug("Sign-in stamp of %s skipped: directory unavailable", user.id)
        signed = SessionUser(
            id=user.id, email=user.email, tenant_id=workspace.tenant_id, role=user.role,
            jti=claims.jti, exp=claims.exp, name=user.full_name,
            tenant_role=workspace.role, tenant_name=workspace.name, issued_at=claims.iat,
        )
        log.debug("Signed in %s through %s", user.id, context.door)
        return SignedIn(token, self.cookie_name, self.tokens.max_age, signed, claims)
