"""Sliding sessions: a session in use is re-issued with a fresh expiry, within an absolute
lifetime counted from its sign-in.

After NextAuth's `updateAge`: a session is re-issued only once its token is older than
SESSION_UPDATE_AGE_SECONDS, not on every read, because a re-issue costs a signature (or, in
NextAuth's format, an encryption) and one write of the session record's expiry: the record is
what "sign out everywhere", a ban and the revocation list take a session's expiry from, so a
cookie living longer than its record could outlive its own revocation. The record is written
first, and only while the session is not revoked; then the cookie is made.
"""

from __future__ import annotations

import time
from typing import Protocol

from regcopilot.auth.sessions import SessionService
from regcopilot.auth.tokens import Claims


class Renewing(Protocol):
    max_age: int

    def renewed(self, claims: Claims) -> Claims: ...
    def encode(self, claims: Claims) -> str: ...


class SessionRenewal:
    def __init__(self, tokens: Renewing, sessions: SessionService, update_age: int) -> None:
        self.tokens = tokens
        self.sessions = sessions
        self.update_age = update_age

    def due(self, claims: Claims, now: float | None = None) -> bool:
        """Old enough to be re-issued (an integer comparison: free on every session read)."""
        return self.due_at(claims.iat, now)

    def due_at(self, issued_at: int, now: float | None = None) -> bool:
        """As `due`, for a token issued at `issued_at` (Unix seconds)."""
        return (time.time() if now is None else now) - issued_at >= self.update_age

    async def renew(self, claims: Claims) -> tuple[str, Claims] | None:
        """The re-issued session, or None: not due, nothing to gain (the absolute lifetime
        leaves no later expiry), or revoked since it was validated. May raise
        DirectoryUnavailable (the record cannot be written): the session stays as it was."""
        if not self.due(claims):
            return None
        fresh = self.tokens.renewed(claims)
        if fresh.exp <= claims.exp:
            return None
        if not await self.sessions.extend(claims.jti, claims.sub, fresh.exp):
            return None
        return self.tokens.encode(fresh), fresh
