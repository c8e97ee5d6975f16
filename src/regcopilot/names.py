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
