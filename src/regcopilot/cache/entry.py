"""A cached validation result and its JSON form (never pickle: Redis is shared).

The key `copilot:auth:validation:<user id>` is shared with the upstream Node tier during a move
(docs/migration.md). It writes `{"isValid", "timestamp", "tenantId"?}` and reads only those,
so ours carry the same three with the same meanings plus fields of our own. Reading, an entry
without `reason` and `role` (always written here, null when none) is the upstream's: a miss,
never a pass and never a refusal — it has no role (reading it as valid would demote an admin)
and it writes `isValid:false` after any Supabase error, which must not sign people out here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_ENTRY_BYTES = 4096
MAX_CLOCK_SKEW_MS = 30_000
UPSTREAM_FIELDS = frozenset({"isValid", "timestamp", "tenantId"})


@dataclass(frozen=True, slots=True)
class CacheEntry:
    is_valid: bool
    timestamp: int  # ms since the epoch, when the directory answered
    tenant_id: str | None
    reason: str | None
    role: str | None = None
    # ms since the epoch: the end of the ban this entry reports. Every tier's copy must be
    # gone by then, including copies taken from Redis by other instances.
    banned_until: int | None = None
    # The change-log position this answer reflects (cache/freshness.py); None from a writer
    # that does not know the log (the upstream tier): such an entry lives the short TTL only.
    seq: int | None = None
    # The session's workspace (tenant_id is its id, the upstream's meaning): the user's role
    # in it and its name. A valid entry without them was not written by this version.
    tenant_role: str | None = None
    tenant_name: str | None = None
    # ms since the epoch: sessions signed in before this are void (the password changed).
    sessions_after: int | None = None
    # The current workspace the directory holds is not the one this answer serves (access to
    # it was lost, or none was recorded yet): `stored_tenant_id` is what it holds. Validation
    # only reports it; the write that records the served one is authenticate()'s, afterwards.
    workspace_moved: bool = False
    stored_tenant_id: str | None = None

    def fresh(self, ttl_s: float, now: int) -> bool:
        """Written within the last TTL, and not from the future (allowing for clock skew
        between hosts): an entry outside that window was not written by a sane instance."""
        return -MAX_CLOCK_SKEW_MS <= now - self.timestamp <= ttl_s * 1000

    def encode(self) -> str:
        body: dict[str, Any] = {
            "isValid": self.is_valid,
            "timestamp": self.timestamp,
            "tenantId": self.tenant_id,
            "reason": self.reason,
            "role": self.role,
        }
        if self.banned_until is not None:
            body["bannedUntil"] = self.banned_until
        if self.seq is not None:
            body["seq"] = self.seq
        if self.tenant_role is not None:
            body["tenantRole"] = self.tenant_role
        if self.tenant_name is not None:
            body["tenantName"] = self.tenant_name
        if self.sessions_after is not None:
            body["sessionsAfter"] = self.sessions_after
        if self.workspace_moved:
            body["storedTenantId"] = self.stored_tenant_id
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes | None) -> CacheEntry | None:
        """Anything that is not a well-formed entry is a miss, never a pass."""
        if raw is None or len(raw) > MAX_ENTRY_BYTES:
            return None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(body, dict) or "reason" not in body or "role" not in body:
            return None  # the upstream's shape (or an older one of ours): ask the directory
        valid, ts = body.get("isValid"), body.get("timestamp")
        tenant, reason, role = body.get("tenantId"), body.get("reason"), body.get("role")
        if type(valid) is not bool or type(ts) is not int:
            return None
        if not all(v is None or isinstance(v, str) for v in (tenant, reason, role)):
            return None
        if valid and reason is not None:
            return None
        until, seq = body.get("bannedUntil"), body.get("seq")
        if until is not None and type(until) is not int:
            return None
        tenant_role, tenant_name = body.get("tenantRole"), body.get("tenantName")
        if valid and not (isinstance(tenant, str) and isinstance(tenant_role, str)
                          and isinstance(tenant_name, str)):
            return None  # a pass must say which workspace, as whom: else ask the directory
        if not all(v is None or isinstance(v, str) for v in (tenant_role, tenant_name)):
            return None
        if seq is not None and (type(seq) is not int or seq < 0):
            return None
        after = body.get("sessionsAfter")
        if after is not None and type(after) is not int:
            return None
        moved = "storedTenantId" in body
        stored = body.get("storedTenantId")
        if stored is not None and not isinstance(stored, str):
            return None
        return cls(valid, ts, tenant, reason, role, until, seq, tenant_role, tenant_name, after,
                   moved, stored)


def upstream_shaped(raw: str | bytes) -> bool:
    """Written by the upstream Node tier: its three fields and none of ours."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(body, dict) and "isValid" in body and set(body) <= UPSTREAM_FIELDS
