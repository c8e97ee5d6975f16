"""Names that travel between modules and out to clients, metrics and the log: one StrEnum
each, so a typo is an AttributeError rather than a branch that never matches. They are str:
JSON, comparisons with plain strings and the Redis entry format are unchanged."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why the directory says a user may not come in (Verdict.reason, CacheEntry.reason)."""

    NOT_FOUND = "not_found"
    DELETED = "deleted"
    BANNED = "banned"
    NO_WORKSPACE = "no_workspace"  # a valid account with no active workspace left


class Backend(StrEnum):
    """Which tier answers for the validation cache (/api/ready, /api/observability)."""

    REDIS = "redis"
    IN_MEMORY = "in-memory"
    REDIS_DISCONNECTED = "redis-disconnected"
    REDIS_ERROR = "redis-error"


class Source(StrEnum):
    """Where a validation's answer came from."""

    CACHED = "cached"  # a tier of the cache
    COALESCED = "coalesced"  # another process's load, waited for
    DIRECTORY = "directory"  # the directory itself


class Door(StrEnum):
    """Which sign-in door a session was opened through (SignInContext.door)."""

    API = "api"  # POST /api/auth/login with JSON
    FORM = "form"  # the sign-in page's form
    NEXTAUTH = "nextauth"  # NextAuth's credentials callback
    GOTRUE = "gotrue"  # a GoTrue-compatible token endpoint
    INVITATION = "invitation"  # accepting an invitation


class Count(StrEnum):
    """The process counters (metrics/counters.py), as they are named in Redis, in
    /api/observability's `process` totals and, translated, in /metrics."""

    LOGINS = "logins"
    VALIDATIONS = "validations"
    CACHE_HITS = "cacheHits"
    CACHE_MISSES = "cacheMisses"
    DATABASE_QUERIES = "databaseQueries"
    FAILURES = "failures"
    DELETED_DETECTED = "deletedDetected"
    BANNED_DETECTED = "bannedDetected"
    COALESCED = "coalesced"
    # Sessions moved from the other cookie format on first use (auth/authenticate.py).
    MIGRATED_SESSIONS = "migratedSessions"
    # Session records (auth/sessions.py): issued, and revoked by the reason given.
    SESSIONS_ISSUED = "sessionsIssued"
    SESSIONS_REVOKED_LOGOUT = "sessionsRevokedLogout"
    SESSIONS_REVOKED_USER = "sessionsRevokedUser"
    SESSIONS_REVOKED_ADMIN = "sessionsRevokedAdmin"
    SESSIONS_REVOKED_BAN_OR_DELETE = "sessionsRevokedBanOrDelete"
    # Workspaces: switches asked for; sessions moved off a workspace they lost; lost access.
    WORKSPACE_SWITCHES = "workspaceSwitches"
    WORKSPACE_AUTO_SWITCHES = "workspaceAutoSwitches"
    WORKSPACE_ACCESS_LOST = "workspaceAccessLost"


class Revocation(StrEnum):
    """Why a session was revoked (regcopilot_sessions.revoked_reason)."""

    LOGOUT = "logout"  # signed out
    USER = "user"  # the user ended it (one session, or "everywhere else")
    ADMIN = "admin"  # an admin ended it
    BAN = "ban"  # the account was banned
    DELETE = "delete"  # the account was deleted
