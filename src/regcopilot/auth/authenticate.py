"""The `authenticate` use case: is the session a request carries still good, and whose is it?

Token → decoded (cached) → the user validated (near tier, shared tier, directory) → not
revoked → the SessionUser, with a Renewal when the cookie must be re-issued. Validation only
reads; the rare workspace writes it asks for are made here, after its answer
(auth/session_workspace.py). No HTTP here: the
session middleware finds the cookie and turns the answer into a scope entry or a refusal.
The warm path (everything cached) awaits nothing that does I/O.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from types import CoroutineType
from typing import Any

from regcopilot.auth.identity import DOWN, ENDED, INVALID, Refusal, Renewal, SessionUser
from regcopilot.auth.revocations import RevocationList
from regcopilot.auth.session_workspace import SessionWorkspace
from regcopilot.auth.sessions import SessionService
from regcopilot.auth.tokens import (
    Claims,
    InvalidToken,
    TokenFormat,
    now_ms,
)
from regcopilot.auth.validator import SessionValidator
from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.memory import Held, Memo, MemoryStore
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.metrics.security import SecurityLog
from regcopilot.names import Reason
from regcopilot.users.directory import DirectoryUnavailable

log = logging.getLogger("regcopilot.auth")

# Sessions already counted as migrated in this process (parallel first requests, retries).
COUNTED_MAX = 100_000
# How much of a token's end keys its answer: 32 characters of a signature (HMAC-SHA256 in
# base64url, or a JWE's tag) are as unique as the token.
SERVED_KEY = 32
NO_WORKSPACE = Reason.NO_WORKSPACE
REFUSED = {
    Reason.NOT_FOUND: Refusal(401, "account not_found"),
    Reason.DELETED: Refusal(401, "account deleted"),
    Reason.BANNED: Refusal(401, "account banned"),
    Reason.NO_WORKSPACE: Refusal(401, "no accessible workspace"),
}
UNKNOWN = Refusal(401, "account invalid")
Answer = SessionUser | Refusal


@dataclass(slots=True)  # not frozen: made on every request, and a frozen __init__ costs ~1 µs
class Credentials:
    """A session token as a request presented it: in which format, whether that is the other
    format (to be re-issued in the configured one), and from which client address (for the
    security log)."""

    token: str
    format: TokenFormat
    upgrade: bool = False
    client: str | None = None


@dataclass(frozen=True, slots=True)
class Served:
    """A token's last answer, the claims it was made from, and the near tier's handle on the
    cached validation it was made from (reused while that handle is live)."""

    token: str
    claims: Claims
    held: Held
    user: SessionUser


class Authenticator:
    def __init__(
        self,
        *,
        primary: TokenFormat,
        validator: SessionValidator,
        revocations: RevocationList,
        sessions: SessionService,
        metrics: AuthMetrics,
        security: SecurityLog,
        workspace: SessionWorkspace,
        served_max: int,
    ) -> None:
        self.primary = primary  # the format SESSION_COOKIE_FORMAT issues
        self.validator = validator
        self.workspace = workspace  # the writes validation leaves to us (rare)
        self.revocations = revocations
        self.sessions = sessions
        self._used = sessions.used  # written on every served request: no lookup for it
        self.metrics = metrics
        self.security = security
        self._counted = MemoryStore(COUNTED_MAX)
        # Answers reused per token: as many as the near tier keeps users (MAX_CACHE_SIZE); an
        # answer is only reused while its user's entry is there.
        self._served = Memo(served_max)

    async def authenticate(self, credentials: Credentials) -> SessionUser | Refusal:
        answer = self.answer(credentials)
        if type(answer) is CoroutineType:
            return await answer
        return answer  # type: ignore[return-value]

    def answer(self, credentials: Credentials) -> Answer | Coroutine[Any, Any, Answer]:
        """authenticate()'s answer, or, when it has to wait for I/O (the shared tier or the
        directory, Redis's revocation list, a workspace write), the coroutine that finishes
        it. The warm request awaits nothing: it is answered here, with no coroutine made and
        awaited for it (the session guard calls this; bench/ab.py against the version that
        awaited authenticate(): 0.6 µs of the server's CPU a request less on /api/me, 1.0 µs
        on the session read, ~1 % more req/s)."""
        token = credentials.token
        # Keyed by the token's last characters (its signature's), the whole token compared:
        # hashing a ~500-character token on every request cost ~1,900 instructions. A reused
        # answer is read from its SessionUser alone (id, jti, exp), which the route reads next:
        # with 1,000 users in turn, each object touched is a likely cache miss.
        served = None if credentials.upgrade else self._served.get(token[-SERVED_KEY:])
        if served is not None and (served.token != token or served.user.exp <= time.time()):
            served = None  # another token that ends alike, or expired: judged from scratch
        if served is None:
            try:
                claims = credentials.format.decode(token)
            except InvalidToken as exc:
                self.security.invalid_token(str(exc), credentials.client)
                return INVALID
            return self._judged_unless_revoked(claims, self.validator.cached(claims.sub),
                                               credentials)
        user = served.user
        held = served.held
        if not held.live or held.deadline <= time.monotonic():
            # The near tier dropped or replaced that validation (a ban, a delete, a change
            # logged, its TTL, eviction): judged again from what it holds now.
            return self._judged_unless_revoked(served.claims, self.validator.cached(user.id),
                                               credentials)
        # The same token judged from the same cached validation is the same user: only what
        # changes on its own, the revocation list, is asked again. The handle answers without
        # a lookup in the near tier (bench/ab.py, 1,000 users, 5 rounds: +2.6 % req/s on
        # /api/me, +2.0 % on the session read; 1,478 -> 1,438 bytecodes on /api/me).
        held.used = True
        self.validator.near_hit()
        revoked = self.revocations.known(user.jti)
        if revoked is False:
            self._used[user.jti] = user.id  # _settled's, written out: one call less
            return user
        if revoked is None:
            return self._unless_revoked(user, credentials)
        return self._settled(user, revoked, credentials)

    async def _judged_unless_revoked(self, claims: Claims, entry: CacheEntry | None,
                                     credentials: Credentials) -> Answer:
        answer = await self._judged(claims, entry, credentials)
        if isinstance(answer, Refusal):
            return answer
        return await self._unless_revoked(answer, credentials)

    async def _unless_revoked(self, user: SessionUser, credentials: Credentials) -> Answer:
        revoked = self.revocations.known(user.jti)
        if revoked is None:
            revoked = await self.revocations.is_revoked(user.jti)
        return self._settled(user, revoked, credentials)

    def _settled(self, user: SessionUser, revoked: bool, credentials: Credentials) -> Answer:
        if revoked:
            self.security.invalid_token("revoked", credentials.client)
            return ENDED
        # One dict store: last_seen_at and the active-users stamp, both once a minute.
        self._used[user.jti] = user.id
        return user

    async def _judged(self, claims: Claims, entry: CacheEntry | None,
                      credentials: Credentials) -> SessionUser | Refusal:
        """The user the claims name, judged from the validation (`entry`: the near tier's,
        if it had one), before the revocation check."""
        validator = self.validator
        try:
            if entry is None:
                entry = await validator.validate(claims.sub)
            if entry.is_valid:
                if entry.tenant_id != claims.tenant and entry.timestamp < claims.tenant_at:
                    # The session was moved to this workspace after the cached answer was
                    # made.
                    entry = await validator.refresh(claims.sub)
            elif entry.reason == NO_WORKSPACE and not entry.workspace_moved:
                # A user who never had a workspace recorded (a session minted before
                # workspaces, or by another front end) is given the personal one a sign-in
                # would give; its answer, read after that write, replaces the refusal.
                asked = validator.mark()
                provisioned = await self.workspace.provision(claims.sub)
                if provisioned is not None:
                    entry = await validator.settle(claims.sub, *provisioned, asked)
        except DirectoryUnavailable as exc:
            log.warning("User directory unavailable: %s", exc)
            return DOWN
        if not entry.is_valid:
            # Before the revocation check: a ban or delete also revokes the user's sessions,
            # and the user's state is the more telling answer (and the guide's
            # deleted/banned-detected counts come from here).
            return REFUSED.get(entry.reason, UNKNOWN) if entry.reason else UNKNOWN
        if entry.sessions_after is not None and claims.auth_at < entry.sessions_after:
            # Signed in before the password changed (by anyone, anywhere: users/schema.py).
            self.security.invalid_token("password-changed", credentials.client)
            return ENDED
        if entry.workspace_moved:
            # Served elsewhere than the recorded current workspace: record it, after the
            # answer (validation never writes).
            await self.workspace.record(claims.sub, entry)
        # Seen at once when first judged here; while the answer is reused, the minute's
        # sessions keep the stamp fresh (flush_seen).
        self.metrics.seen(claims.sub)
        user = SessionUser(
            id=claims.sub,
            email=claims.email,
            tenant_id=entry.tenant_id or claims.tenant,
            role=entry.role,
            jti=claims.jti,
            exp=claims.exp,
            name=claims.name,
            tenant_role=entry.tenant_role,
            tenant_name=entry.tenant_name,
            issued_at=claims.iat,
        )
        moved = bool(entry.tenant_id and entry.tenant_id != claims.tenant)
        if credentials.upgrade:
            user.renewal = self._upgrade(claims, user, moved)
        elif moved:
            assert entry.tenant_id is not None
            user.renewal = Renewal(
                self.primary.move(claims, entry.tenant_id),
                max(0, claims.exp - int(time.time())),
                moved_to=entry.tenant_id,
            )
        elif not entry.workspace_moved:
            # All of the above follows from the claims and the entry alone: while the near
            # tier holds this entry, the next request with this token is this user again.
            # (bench.wire_cost, warm /api/me: ~1 µs a request less.)
            held = self.validator.held(claims.sub)
            if held is not None and held.value is entry:  # not when the near tier has none
                self._served.put(credentials.token[-SERVED_KEY:],
                                 Served(credentials.token, claims, held, user))
        return user

    def _upgrade(self, claims: Claims, user: SessionUser, moved: bool) -> Renewal | None:
        """The validated session in the configured format, straight into the workspace it is
        served in: one new cookie. None when it is about to expire anyway."""
        validated = replace(
            claims, sub=user.id, email=user.email or claims.email, tenant=user.tenant_id,
            role=user.role, tenant_at=now_ms() if moved else claims.tenant_at,
        )
        token, fresh = self.primary.reissue(validated)
        max_age = fresh.exp - int(time.time())
        if max_age <= 0:
            return None
        if self._counted.get_now(claims.jti) is None:
            self._counted.set_now(claims.jti, True, max_age)
            self.metrics.migrated()
        return Renewal(token, max_age, upgraded=True)
