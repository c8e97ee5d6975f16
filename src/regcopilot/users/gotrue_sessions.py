"""Session records on Supabase Auth's schema: one row in auth.sessions per sign-in, so
Supabase's own sign-out and admin API, its dashboard and the upstream console see (and end)
the sessions of this tier too.

auth.sessions holds the live sessions; a row deleted there by anyone leaves a revoked record
in public.regcopilot_sessions (users/schema.py GOTRUE_DDL), which is what every instance loads
and is told about, exactly as on our own schema. Sessions recorded in regcopilot_sessions
before this tier knew GoTrue's schema are still listed, touched and revoked there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from regcopilot.users.directory import is_uuid
from regcopilot.users.sessions import (
    PostgresSessionRecords,
    Revoked,
    SessionRecord,
    _at,
    _clip,
    _epoch,
    _record,
)

# One statement: the reason is set for this transaction only, and the delete trigger that
# leaves the revoked record reads it (anyone else's delete is recorded as "ended").
_DELETE = (
    "WITH reason AS (SELECT set_config('regcopilot.end_reason', $1, true))"
    " DELETE FROM auth.sessions s USING reason WHERE {where}"
    " RETURNING s.id::text, s.not_after"
)
_ACTIVE = (
    "SELECT s.id::text, s.user_id, s.created_at, s.not_after,"
    " greatest(s.updated_at, s.refreshed_at AT TIME ZONE 'UTC'), s.user_agent, host(s.ip),"
    " NULL::timestamptz, NULL::text"
    " FROM auth.sessions s WHERE s.user_id = $1 AND s.not_after > now()"
    # Void since the password changed (users/schema.py), though the row is still there.
    " AND NOT EXISTS (SELECT 1 FROM public.regcopilot_password_changes p"
    "  WHERE p.user_id = s.user_id AND p.changed_at > s.created_at)"
    " ORDER BY s.created_at DESC"
)


def _inet(address: str | None) -> str | None:
    """auth.sessions.ip is inet: whatever the client address is, never a failed insert."""
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


class GoTrueSessionRecords(PostgresSessionRecords):
    """Live sessions in auth.sessions; revoked ones (and older records) as on our schema."""

    def _revoked(self, rows: list[Any]) -> list[Revoked]:
        # A row without not_after is one of GoTrue's own sessions: nothing of ours to refuse.
        return [Revoked(r[0], _epoch(r[1])) for r in rows if r[1] is not None]

    async def create(self, session_id: str, user_id: str, expires: int,
                     user_agent: str | None, address: str | None) -> None:
        if not (is_uuid(session_id) and is_uuid(user_id)):
            await super().create(session_id, user_id, expires, user_agent, address)
            return
        async with self.directory._conn() as conn:
            await conn.execute(
                "INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal,"
                " not_after, user_agent, ip) VALUES ($1, $2, now(), now(), 'aal1', $3, $4,"
                " $5::inet) ON CONFLICT (id) DO NOTHING",
                session_id, user_id, _at(expires), _clip(user_agent), _inet(address),
            )

    async def revoke(self, session_id: str, reason: str, *, user_id: str | None = None,
                     expires: int | None = None) -> Revoked | None:
        if user_id is not None and not is_uuid(user_id):
            return None
        if is_uuid(session_id):
            where = "s.id = $2" + ("" if user_id is None else " AND s.user_id = $3")
            rows = await self._fetch(_DELETE.format(where=where), reason, session_id,
                                     *(() if user_id is None else (user_id,)))
            if rows:
                done = self._revoked(rows)
                # The caller's spelling of the id: it is what the token carries.
                return Revoked(session_id, done[0].expires) if done else None
        # No live row: a session recorded before, or without a record at all.
        return await super().revoke(session_id, reason, user_id=user_id, expires=expires)

    async def extend(self, session_id: str, user_id: str, expires: int) -> bool:
        """A slide moves the live row's not_after. Without a live row the session is either
        revoked (its delete left a revoked record, which the base refuses to extend) or one
        recorded in our table (older, or upgraded from the Node tier's cookie)."""
        if is_uuid(session_id) and is_uuid(user_id):
            rows = await self._fetch(
                "UPDATE auth.sessions SET not_after = greatest(not_after, $3)"
                " WHERE id = $1 AND user_id = $2 RETURNING id",
                session_id, user_id, _at(expires),
            )
            if rows:
                return True
        return await super().extend(session_id, user_id, expires)

    async def revoke_all(self, user_id: str, reason: str,
                         keep: str | None = None) -> list[Revoked]:
        """Every session of the user, GoTrue's own included (its global sign-out does the
        same), but `keep`."""
        if not is_uuid(user_id):
            return []
        rows = await self._fetch(
            _DELETE.format(where="s.user_id = $2 AND s.id::text <> $3"),
            reason, user_id, keep or "",
        )
        return self._revoked(rows) + await super().revoke_all(user_id, reason, keep)

    async def active(self, user_id: str) -> list[SessionRecord]:
        if not is_uuid(user_id):
            return []
        live = [_record(r) for r in await self._fetch(_ACTIVE, user_id)]
        return live + await super().active(user_id)

    async def touch(self, session_ids: Sequence[str], at: datetime) -> None:
        """updated_at and refreshed_at (GoTrue's "last used"), at most once a minute."""
        live = [sid for sid in session_ids if is_uuid(sid)]
        async with self.directory._conn() as conn:
            await conn.execute(
                "UPDATE auth.sessions SET updated_at = $1, refreshed_at = $2"
                " WHERE id = ANY($3::uuid[])",
                at, at.astimezone(UTC).replace(tzinfo=None), live,
            )
        await super().touch(session_ids, at)

    async def prune(self, limit: int) -> int:
        rows = await self._fetch(
            "DELETE FROM auth.sessions WHERE id IN (SELECT id FROM auth.sessions"
            " WHERE not_after < now() LIMIT $1) RETURNING id",
            limit,
        )
        return len(rows) + await super().prune(limit)

    async def count_active(self) -> int:
        rows = await self._fetch(
            "SELECT (SELECT count(*) FROM auth.sessions WHERE not_after > now())"
            f" + (SELECT count(*) FROM {self.TABLE}"
            "     WHERE revoked_at IS NULL AND expires_at > now())"
        )
        return int(rows[0][0]) if rows else 0
