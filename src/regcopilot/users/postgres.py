"""The user directory on PostgreSQL (Supabase's auth.users, used as is when it exists)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg

from regcopilot.background import cancelling
from regcopilot.users.directory import (
    NO_WORKSPACE,
    ChangeCallback,
    CurrentWorkspace,
    DirectoryUnavailable,
    StateCallback,
    User,
    is_uuid,
    normalize_email,
)
from regcopilot.users.rows import COLUMNS, new_meta, to_user
from regcopilot.users.schema import NOTIFY_CHANNEL, POSTGRES_DDL, POSTGRES_DDL_LOCK
from regcopilot.workspaces import schema as workspace_schema
from regcopilot.workspaces.sql import SESSION, render, split_session

log = logging.getLogger("regcopilot.users")

# Errors that mean "the directory cannot answer", as opposed to a bug in a query.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
)
RECONNECT_SECONDS = 0.5
# A pooled connection the server dropped (restart, failover) fails when next used, and the pool
# then replaces it: a read gets one immediate second try. Timeouts are never retried.
DROPPED = (asyncpg.ConnectionDoesNotExistError,)
LISTEN_PING_SECONDS = 2.0
LOST = ""  # queued by the termination listener: never a user id


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
    ) -> None:
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.timeout = timeout
        self.pool_size = pool_size
        self.statement_cache_size = statement_cache_size
        self._pool: asyncpg.Pool | None = None

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
            await conn.execute(POSTGRES_DDL)
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

    async def _one(self, sql: str, *args: Any) -> User | None:
        try:
            async with self._conn() as conn:
                row = await conn.fetchrow(sql, *args)
        except DirectoryUnavailable as exc:
            if not isinstance(exc.__cause__, DROPPED):
                raise
            async with self._conn() as conn:
                row = await conn.fetchrow(sql, *args)
        return to_user(row) if row else None

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    async def get(self, user_id: str) -> User | None:
        if not is_uuid(user_id):
            return None
        return await self._one(f"SELECT {COLUMNS} FROM auth.users WHERE id = $1", user_id)

    async def find_by_email(self, email: str) -> User | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM auth.users WHERE email = $1", normalize_email(email)
        )

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
    ) -> User:
        app_meta, user_meta = new_meta(admin, tenant_id, full_name)
        async with self._conn() as conn:
            try:
                row = await conn.fetchrow(
                    "INSERT INTO auth.users (email, encrypted_password, raw_app_meta_data,"
                    " raw_user_meta_data) VALUES ($1, $2, $3::jsonb, $4::jsonb)"
                    f" RETURNING {COLUMNS}",
                    normalize_email(email),
                    password_hash,
                    json.dumps(app_meta),
                    json.dumps(user_meta),
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
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, user_id)

    async def count(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM auth.users"))

    async def watch(self, on_change: ChangeCallback, on_state: StateCallback) -> None:
        """LISTEN on a dedicated connection; reconnect forever, reporting the gaps."""
        queue: asyncio.Queue[str] = asyncio.Queue()

        def _notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            queue.put_nowait(payload)

        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.url, timeout=self.timeout)
                await conn.add_listener(NOTIFY_CHANNEL, _notified)
                conn.add_termination_listener(lambda _c: queue.put_nowait(LOST))
                on_state(True)
                while True:
                    try:
                        user_id = await asyncio.wait_for(queue.get(), LISTEN_PING_SECONDS)
                    except TimeoutError:
                        # A hung server closes nothing: only a query proves the line is live.
                        await conn.fetchval("SELECT 1", timeout=self.timeout)
                        continue
                    if user_id == LOST:
                        raise ConnectionResetError("listener connection closed")
                    result = on_change(user_id)
                    if asyncio.iscoroutine(result):
                        await result
            except UNAVAILABLE as exc:
                if cancelling():
                    raise asyncio.CancelledError from exc
                log.warning("User change listener lost: %s", exc or type(exc).__name__)
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            on_state(False)
            await asyncio.sleep(RECONNECT_SECONDS)
