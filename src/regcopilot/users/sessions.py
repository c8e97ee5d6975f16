"""Session records: one row per issued session, next to the users, in the same database.

The database is the durable truth about which sessions were revoked; process memory and Redis
only answer the request path quickly. A revocation is a write of `revoked_at`, by this app, the
CLI or plain SQL, and the table's trigger announces it on the directory's change feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from regcopilot.users.directory import is_uuid
from regcopilot.users.rows import as_datetime

MAX_TEXT = 512  # user agents are attacker-chosen: a row stays small whatever they send


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    user_id: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime | None
    user_agent: str | None
    address: str | None
    revoked_at: datetime | None
    revoked_reason: str | None

    @property
    def seen_at(self) -> datetime:
        """When the session was last used, as far as is written: last_seen_at is stamped in a
        batch once a minute (auth/sessions.py), and until then the sign-in is the last use."""
        return self.last_seen_at or self.created_at


@dataclass(frozen=True, slots=True)
class Revoked:
    """A session that was just revoked (or is revoked): enough to refuse it until expiry."""

    id: str
    expires: int  # Unix seconds


class SessionRecords(Protocol):
    async def create(
        self, session_id: str, user_id: str, expires: int, user_agent: str | None,
        address: str | None,
    ) -> None: ...
    async def revoke(
        self, session_id: str, reason: str, *, user_id: str | None = None,
        expires: int | None = None,
    ) -> Revoked | None:
        """Revoke one session (of `user_id` when given). With `expires`, a session without a
        record (issued before records existed) gets one, already revoked."""
        ...
    async def revoke_all(
        self, user_id: str, reason: str, keep: str | None = None
    ) -> list[Revoked]: ...
    async def extend(self, session_id: str, user_id: str, expires: int) -> bool:
        """A sliding session's new expiry, so that revoking it covers the whole new life;
        False (and nothing written) when it is revoked. A session without a record (one
        upgraded from the Node tier's cookie) gets one."""
        ...
    async def active(self, user_id: str) -> list[SessionRecord]: ...
    async def revoked(self) -> list[Revoked]:
        """Every revoked session not yet expired: what each instance refuses from memory."""
        ...
    async def touch(self, session_ids: Sequence[str], at: datetime) -> None: ...
    async def prune(self, limit: int) -> int:
        """Delete up to `limit` expired records; returns how many went."""
        ...
    async def count_active(self) -> int: ...


COLUMNS = (
    "id, user_id, created_at, expires_at, last_seen_at, user_agent, address, revoked_at, "
    "revoked_reason"
)


def _record(row: Any) -> SessionRecord:
    created, expires = as_datetime(row[2]), as_datetime(row[3])
    assert created is not None and expires is not None
    return SessionRecord(
        id=str(row[0]), user_id=str(row[1]), created_at=created, expires_at=expires,
        last_seen_at=as_datetime(row[4]), user_agent=row[5], address=row[6],
        revoked_at=as_datetime(row[7]), revoked_reason=row[8],
    )


def _clip(text: str | None) -> str | None:
    return text[:MAX_TEXT] if text else None


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _stamp(at: datetime) -> str:
    """SQLite's time format here: fixed width, so text order is time order."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(value: Any) -> int:
    at = as_datetime(value)
    assert at is not None
    return int(at.timestamp())


class SqliteSessionRecords:
    TABLE = "auth_sessions"

    def __init__(self, directory: Any) -> None:
        self.directory = directory  # a SqliteDirectory: its one connection, its timeouts

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self.directory._conn() as db, db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def _write(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self.directory._conn() as db:
            cur = await db.execute(sql, params)
            rows = list(await cur.fetchall())
            await db.commit()
        return rows

    async def create(self, session_id: str, user_id: str, expires: int,
                     user_agent: str | None, address: str | None) -> None:
        await self._write(
            f"INSERT OR IGNORE INTO {self.TABLE} (id, user_id, created_at, expires_at,"
            " user_agent, address) VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, user_id, _stamp(datetime.now(UTC)), _stamp(_at(expires)),
             _clip(user_agent), _clip(address)),
        )

    async def revoke(self, session_id: str, reason: str, *, user_id: str | None = None,
                     expires: int | None = None) -> Revoked | None:
        now = _stamp(datetime.now(UTC))
        if expires is not None and user_id is not None:
            await self._write(
                f"INSERT OR IGNORE INTO {self.TABLE} (id, user_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (session_id, user_id, now, _stamp(_at(expires))),
            )
        owner = "" if user_id is None else " AND user_id = ?"
        rows = await self._write(
            f"UPDATE {self.TABLE} SET revoked_at = ?, revoked_reason = ?"
            f" WHERE id = ? AND revoked_at IS NULL{owner} RETURNING id, expires_at",
            (now, reason, session_id, *(() if user_id is None else (user_id,))),
        )
        return Revoked(rows[0][0], _epoch(rows[0][1])) if rows else None

    async def extend(self, session_id: str, user_id: str, expires: int) -> bool:
        now = _stamp(datetime.now(UTC))
        rows = await self._write(
            f"INSERT INTO {self.TABLE} (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)"
            " WHERE revoked_at IS NULL AND user_id = excluded.user_id RETURNING id",
            (session_id, user_id, now, _stamp(_at(expires))),
        )
        return bool(rows)

    async def revoke_all(self, user_id: str, reason: str,
                         keep: str | None = None) -> list[Revoked]:
        now = _stamp(datetime.now(UTC))
        rows = await self._write(
            f"UPDATE {self.TABLE} SET revoked_at = ?, revoked_reason = ?"
            " WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? AND id != ?"
            " RETURNING id, expires_at",
            (now, reason, user_id, now, keep or ""),
        )
        return [Revoked(r[0], _epoch(r[1])) for r in rows]

    async def active(self, user_id: str) -> list[SessionRecord]:
        rows = await self._fetch(
            f"SELECT {COLUMNS} FROM {self.TABLE} WHERE user_id = ? AND revoked_at IS NULL"
            " AND expires_at > ? ORDER BY created_at DESC",
            (user_id, _stamp(datetime.now(UTC))),
        )
        return [_record(r) for r in rows]

    async def revoked(self) -> list[Revoked]:
        rows = await self._fetch(
            f"SELECT id, expires_at FROM {self.TABLE} WHERE revoked_at IS NOT NULL"
            " AND expires_at > ?",
            (_stamp(datetime.now(UTC)),),
        )
        return [Revoked(r[0], _epoch(r[1])) for r in rows]

    async def touch(self, session_ids: Sequence[str], at: datetime) -> None:
        async with self.directory._conn() as db:
            await db.executemany(
                f"UPDATE {self.TABLE} SET last_seen_at = ? WHERE id = ?",
                [(_stamp(at), sid) for sid in session_ids],
            )
            await db.commit()

    async def prune(self, limit: int) -> int:
        rows = await self._write(
            f"DELETE FROM {self.TABLE} WHERE id IN (SELECT id FROM {self.TABLE}"
            " WHERE expires_at < ? LIMIT ?) RETURNING id",
            (_stamp(datetime.now(UTC)), limit),
        )
        return len(rows)

    async def count_active(self) -> int:
        rows = await self._fetch(
            f"SELECT count(*) FROM {self.TABLE} WHERE revoked_at IS NULL AND expires_at > ?",
            (_stamp(datetime.now(UTC)),),
        )
        return int(rows[0][0]) if rows else 0


class PostgresSessionRecords:
    TABLE = "public.regcopilot_sessions"

    def __init__(self, directory: Any) -> None:
        self.directory = directory  # a PostgresDirectory: its pool, its timeouts

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.directory._conn() as conn:
            return list(await conn.fetch(sql, *args))

    async def create(self, session_id: str, user_id: str, expires: int,
                     user_agent: str | None, address: str | None) -> None:
        async with self.directory._conn() as conn:
            await conn.execute(
                f"INSERT INTO {self.TABLE} (id, user_id, expires_at, user_agent, address)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                session_id, user_id, _at(expires), _clip(user_agent), _clip(address),
            )

    async def revoke(self, session_id: str, reason: str, *, user_id: str | None = None,
                     expires: int | None = None) -> Revoked | None:
        if user_id is not None and not is_uuid(user_id):
            return None
        if expires is not None and user_id is not None:
            # A session without a record gets one, born revoked (its insert trigger
            # announces it); an existing one is revoked by the update below.
            rows = await self._fetch(
                f"INSERT INTO {self.TABLE} (id, user_id, expires_at, revoked_at,"
                " revoked_reason) VALUES ($1, $2, $3, now(), $4) ON CONFLICT (id) DO NOTHING"
                " RETURNING id, expires_at",
                session_id, user_id, _at(expires), reason,
            )
            if rows:
                return Revoked(rows[0][0], _epoch(rows[0][1]))
        owner = "" if user_id is None else " AND user_id = $3"
        rows = await self._fetch(
            f"UPDATE {self.TABLE} SET revoked_at = now(), revoked_reason = $2"
            f" WHERE id = $1 AND revoked_at IS NULL{owner} RETURNING id, expires_at",
            session_id, reason, *(() if user_id is None else (user_id,)),
        )
        return Revoked(rows[0][0], _epoch(rows[0][1])) if rows else None

    async def extend(self, session_id: str, user_id: str, expires: int) -> bool:
        if not is_uuid(user_id):
            return False
        rows = await self._fetch(
            f"INSERT INTO {self.TABLE} AS s (id, user_id, expires_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET expires_at = greatest(s.expires_at,"
            " excluded.expires_at) WHERE s.revoked_at IS NULL AND s.user_id = excluded.user_id"
            " RETURNING s.id",
            session_id, user_id, _at(expires),
        )
        return bool(rows)

    async def revoke_all(self, user_id: str, reason: str,
                         keep: str | None = None) -> list[Revoked]:
        if not is_uuid(user_id):
            return []
        rows = await self._fetch(
            f"UPDATE {self.TABLE} SET revoked_at = now(), revoked_reason = $2"
            " WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() AND id <> $3"
            " RETURNING id, expires_at",
            user_id, reason, keep or "",
        )
        return [Revoked(r[0], _epoch(r[1])) for r in rows]

    async def active(self, user_id: str) -> list[SessionRecord]:
        if not is_uuid(user_id):
            return []
        rows = await self._fetch(
            f"SELECT {COLUMNS} FROM {self.TABLE} WHERE user_id = $1 AND revoked_at IS NULL"
            " AND expires_at > now() ORDER BY created_at DESC",
            user_id,
        )
        return [_record(r) for r in rows]

    async def revoked(self) -> list[Revoked]:
        rows = await self._fetch(
            f"SELECT id, expires_at FROM {self.TABLE} WHERE revoked_at IS NOT NULL"
            " AND expires_at > now()"
        )
        return [Revoked(r[0], _epoch(r[1])) for r in rows]

    async def touch(self, session_ids: Sequence[str], at: datetime) -> None:
        async with self.directory._conn() as conn:
            await conn.execute(
                f"UPDATE {self.TABLE} SET last_seen_at = $1 WHERE id = ANY($2::text[])",
                at, list(session_ids),
            )

    async def prune(self, limit: int) -> int:
        rows = await self._fetch(
            f"DELETE FROM {self.TABLE} WHERE id IN (SELECT id FROM {self.TABLE}"
            " WHERE expires_at < now() LIMIT $1) RETURNING id",
            limit,
        )
        return len(rows)

    async def count_active(self) -> int:
        rows = await self._fetch(
            f"SELECT count(*) FROM {self.TABLE} WHERE revoked_at IS NULL AND expires_at > now()"
        )
        return int(rows[0][0]) if rows else 0

