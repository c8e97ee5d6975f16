"""The user directory on PostgreSQL (Supabase's auth.users, used as is when it exists)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg

from regcopilot.feed import FeedState
from regcopilot.names import AuthSchema
from regcopilot.users import workspace_schema
from regcopilot.users.auth_tables import TABLES, AuthTables, OwnTables
from regcopilot.users.changes import FeedCursor
from regcopilot.users.dialect import SESSION, render, split_session
from regcopilot.users.directory import (
    DEFAULT_LOG_KEEP_SECONDS,
    NO_WORKSPACE,
    PRUNE_BATCH,
    ChangeCallback,
    CurrentWorkspace,
    DirectoryUnavailable,
    LogSnapshot,
    RevokedCallback,
    User,
    is_uuid,
    normalize_email,
)
from regcopilot.users.pg_errors import DROPPED, UNAVAILABLE
from regcopilot.users.pg_feed import PostgresFeed
from regcopilot.users.recognise import recognise
from regcopilot.users.rows import COLUMNS, new_meta, to_sign_in_user, to_user
from regcopilot.users.schema import POSTGRES_DDL_LOCK

log = logging.getLogger("regcopilot.users")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state here, so skip asyncpg's per-release reset."""


class PostgresDirectory:
    kind = "postgres"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        pool_size: int = 10,
        statement_cache_size: int = 100,
        log_keep_seconds: float = DEFAULT_LOG_KEEP_SECONDS,
        direct_url: str | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.url = url.replace("postgres://", "postgresql://", 1)
        # The change feed's connection when DATABASE_URL is a transaction pooler (pg_feed.py).
        self.direct_url = direct_url.replace("postgres://", "postgresql://", 1) \
            if direct_url else None
        self.poll_seconds = poll_seconds
        self.feed: PostgresFeed | None = None
        self.log_keep_seconds = log_keep_seconds
        self.timeout = timeout
        self.pool_size = pool_size
        self.statement_cache_size = statement_cache_size
        self._pool: asyncpg.Pool | None = None
        self.tables: AuthTables = OwnTables()

    @property
    def schema(self) -> AuthSchema:
        return self.tables.schema

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.timeout,
                command_timeout=self.timeout,
                statement_cache_size=self.statement_cache_size,
                reset=_no_reset,
            )
        except UNAVAILABLE as exc:
            raise DirectoryUnavailable(f"PostgreSQL unreachable: {exc}") from exc
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", POSTGRES_DDL_LOCK)
            # SchemaMismatch (neither GoTrue's nor ours) stops here, before anything is made.
            found = await recognise(conn)
            self.tables = TABLES[found or AuthSchema.OWN]()
            await conn.execute(self.tables.ddl)
            await conn.execute(workspace_schema.POSTGRES_DDL)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise DirectoryUnavailable("PostgreSQL directory is not open")
        try:
            async with asyncio.timeout(self.timeout), self._pool.acquire() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise DirectoryUnavailable(f"PostgreSQL: {exc or type(exc).__name__}") from exc

    def connection(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        """A pooled connection for the change feed's poll (pg_feed.py)."""
        return self._conn()

    async def _row(self, sql: str, *args: Any) -> Any:
        try:
            async with self._conn() as conn:
                return await conn.fetchrow(sql, *args)
        except DirectoryUnavailable as exc:
            if not isinstance(exc.__cause__, DROPPED):
                raise
            async with self._conn() as conn:
                return await conn.fetchrow(sql, *args)

    async def _one(self, sql: str, *args: Any) -> User | None:
        row = await self._row(sql, *args)
        return to_user(row) if row else None

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    async def get(self, user_id: str) -> User | None:
        if not is_uuid(user_id):
            return None
        return await self._one(f"SELECT {COLUMNS} FROM auth.users WHERE id = $1", user_id)

    async def find_by_email(self, email: str) -> User | None:
        row = await self._row(self.tables.find_by_email, normalize_email(email))
        return to_sign_in_user(row) if row else None

    async def get_with_workspace(self, user_id: str) -> tuple[User | None, CurrentWorkspace]:
        if not is_uuid(user_id):
            return None, NO_WORKSPACE
        found = await self.rows(render(self.kind, SESSION), user_id)
        return split_session(found[0]) if found else (None, NO_WORKSPACE)

    async def rows(self, sql: str, *params: Any) -> list[tuple]:
        try:
            async with self._conn() as conn:
                found = await conn.fetch(sql, *params)
        except DirectoryUnavailable as exc:
            if not isinstance(exc.__cause__, DROPPED):
                raise
            async with self._conn() as conn:  # one retry on a dropped pooled connection
                found = await conn.fetch(sql, *params)
        return [tuple(r) for r in found]

    async def batch(self, statements: list[tuple[str, tuple]]) -> list[int]:
        counts: list[int] = []
        async with self._conn() as conn:
            try:
                async with conn.transaction():
                    for sql, params in statements:
                        status = await conn.execute(sql, *params)
                        counts.append(int(status.rsplit(" ", 1)[-1]))
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise ValueError(str(exc)) from exc
        return counts

    async def add(
        self,
        email: str,
        password_hash: str,
        *,
        admin: bool = False,
        tenant_id: str | None = None,
        full_name: str | None = None,
        confirmed: bool = True,
    ) -> User:
        app_meta, user_meta = new_meta(admin, tenant_id, full_name)
        async with self._conn() as conn:
            try:
                row = await self.tables.insert(
                    conn, normalize_email(email), password_hash, app_meta, user_meta, confirmed
                )
            except asyncpg.UniqueViolationError as exc:
                raise ValueError(f"a user with email {normalize_email(email)} exists") from exc
        return to_user(row)

    async def list(self, limit: int = 100) -> list[User]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM auth.users ORDER BY created_at LIMIT $1", limit
            )
        return [to_user(r) for r in rows]

    async def page(
        self, email_contains: str = "", offset: int = 0, limit: int = 50
    ) -> tuple[list[User], int]:
        needle = normalize_email(email_contains)
        # strpos, not LIKE: the search text is taken literally, % and _ included.
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS}, count(*) OVER () FROM auth.users"
                " WHERE strpos(coalesce(email, ''), $1) > 0"
                " ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
                needle, limit, offset,
            )
            total = rows[0][-1] if rows else await conn.fetchval(
                "SELECT count(*) FROM auth.users WHERE strpos(coalesce(email, ''), $1) > 0",
                needle,
            )
        return [to_user(r) for r in rows], int(total)

    async def _write(self, sql: str, *args: Any) -> bool:
        async with self._conn() as conn:
            status = await conn.execute(sql, *args)
        return not status.endswith(" 0")

    async def set_banned_until(self, user_id: str, until: datetime | None) -> bool:
        if not is_uuid(user_id):
            return False
        return await self._write(
            "UPDATE auth.users SET banned_until = $1, updated_at = now() WHERE id = $2",
            until,
            user_id,
        )

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        if not is_uuid(user_id):
            return False
        return await self._write(self.tables.set_password, password_hash, user_id)

    async def delete(self, user_id: str, *, soft: bool = False) -> bool:
        if not is_uuid(user_id):
            return False
        if soft:
            return await self._write(
                "UPDATE auth.users SET deleted_at = now(), updated_at = now() WHERE id = $1",
                user_id,
            )
        return await self._write("DELETE FROM auth.users WHERE id = $1", user_id)

    async def record_sign_in(self, user_id: str) -> None:
        await self._write(
            "UPDATE auth.users SET last_sign_in_at = $1 WHERE id = $2", datetime.now(UTC), user_id
        )

    async def announce(self, user_id: str) -> None:
        async with self._conn() as conn:
            await conn.execute("SELECT public.regcopilot_announce($1)", user_id)

    async def notify(self, channel: str, payload: str) -> None:
        async with self._conn() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def count(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM auth.users"))

    async def read_log(self) -> LogSnapshot:
        async with self._conn() as conn:
            head = await conn.fetchval(
                "SELECT coalesce(pg_sequence_last_value('public.regcopilot_user_changes_seq_seq'),"
                " 0)"
            )
            oldest = await conn.fetchval("SELECT min(seq) FROM public.regcopilot_user_changes")
            rows = await conn.fetch(
                "SELECT user_id, max(seq) FROM public.regcopilot_user_changes"
                " WHERE user_id NOT LIKE 'session:%' GROUP BY user_id"
            )
        floor = int(head) if oldest is None else int(oldest) - 1
        return LogSnapshot(floor, int(head), {r[0]: int(r[1]) for r in rows})

    async def watch(
        self,
        cursor: FeedCursor,
        on_change: ChangeCallback,
        state: FeedState,
        on_revoked: RevokedCallback | None = None,
    ) -> None:
        """Hear the change log (LISTEN, or a poll behind a transaction pooler), replay it
        from the cursor after every (re)connect and gap, and keep `state` honest."""
        self.feed = PostgresFeed(self, cursor, on_change, state, on_revoked)
        await self.feed.run()

    async def prune_log(self) -> int:
        """Drop at most PRUNE_BATCH log rows older than the retention; returns how many."""
        async with self._conn() as conn:
            status = await conn.execute(
                "DELETE FROM public.regcopilot_user_changes WHERE seq IN ("
                " SELECT seq FROM public.regcopilot_user_changes"
                " WHERE changed_at < clock_timestamp() - make_interval(secs => $1)"
                " ORDER BY seq LIMIT $2)",
                self.log_keep_seconds, PRUNE_BATCH,
            )
        return int(status.rsplit(" ", 1)[1])

