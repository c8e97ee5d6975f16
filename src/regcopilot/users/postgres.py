"""The user directory on PostgreSQL (Supabase's auth.users, used as is when it exists)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg

from regcopilot.background import cancelling
from regcopilot.users import workspace_schema
from regcopilot.users.changes import Change, FeedCursor
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
    StateCallback,
    User,
    dispatch,
    is_uuid,
    normalize_email,
)
from regcopilot.users.rows import COLUMNS, new_meta, to_user
from regcopilot.users.schema import NOTIFY_CHANNEL, POSTGRES_DDL, POSTGRES_DDL_LOCK

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
    # Seen when the server terminates a connection mid-query (another operation in progress).
    asyncpg.InternalClientError,
)
RECONNECT_SECONDS = 0.5
# A pooled connection the server dropped (restart, failover) fails when next used, and the pool
# then replaces it: a read gets one immediate second try. Timeouts are never retried.
DROPPED = (asyncpg.ConnectionDoesNotExistError,)
LISTEN_PING_SECONDS = 2.0
# While a gap is open, the log is re-read this often: a change still committing lands within
# milliseconds, so the feed is proved complete again quickly.
GAP_RECHECK_SECONDS = 0.05
PRUNE_EVERY_SECONDS = 60.0
# How the listening connection shows in pg_stat_activity (operators and tests find it by it).
LISTENER_NAME = "regcopilot-listener"
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
        log_keep_seconds: float = DEFAULT_LOG_KEEP_SECONDS,
    ) -> None:
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.log_keep_seconds = log_keep_seconds
        self._next_prune = 0.0
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
        on_state: StateCallback,
        on_revoked: RevokedCallback | None = None,
    ) -> None:
        """LISTEN on a dedicated connection and replay the log from the cursor after every
        (re)connect and every gap; reconnect forever, reporting when changes may be missed."""
        queue: asyncio.Queue[str] = asyncio.Queue()

        def _notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            queue.put_nowait(payload)

        async def deliver(change: Change) -> None:
            if cursor.apply(change.seq):
                result = dispatch(change, on_change, on_revoked)
                if asyncio.iscoroutine(result):
                    await result

        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.url, timeout=self.timeout,
                    server_settings={"application_name": LISTENER_NAME},
                )
                await conn.add_listener(NOTIFY_CHANNEL, _notified)
                conn.add_termination_listener(lambda _c: queue.put_nowait(LOST))
                # Listening first, then replaying: a change committed in between is both
                # replayed and announced, and the cursor applies it once.
                await self._replay(conn, cursor, deliver)
                on_state(cursor.complete)
                pinged = time.monotonic()
                while True:
                    try:
                        payload = await asyncio.wait_for(queue.get(), LISTEN_PING_SECONDS)
                    except TimeoutError:
                        payload = None
                    if payload == LOST:
                        raise ConnectionResetError("listener connection closed")
                    if payload is not None:
                        change = _parse(payload)
                        if change is None:
                            continue
                        was_complete = cursor.complete
                        await deliver(change)
                        if was_complete and not cursor.complete:
                            on_state(False)  # a gap: maybe lost, maybe still committing
                    if time.monotonic() - pinged >= LISTEN_PING_SECONDS:
                        # A hung server closes nothing: only a query proves the line is live.
                        pinged = time.monotonic()
                        await self._housekeeping(conn, cursor, deliver, on_state)
                    elif not cursor.complete and queue.empty():
                        await asyncio.sleep(GAP_RECHECK_SECONDS)
                        await self._fill(conn, cursor, deliver, on_state)
            except UNAVAILABLE as exc:
                if cancelling():
                    raise asyncio.CancelledError from exc
                log.warning("User change listener lost: %s", exc or type(exc).__name__)
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            on_state(False)
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _replay(self, conn: asyncpg.Connection, cursor: FeedCursor, deliver: Any) -> int:
        """Apply every logged change after the cursor's position; how many were new."""
        rows = await conn.fetch(
            "SELECT seq, user_id FROM public.regcopilot_user_changes WHERE seq > $1 ORDER BY seq",
            cursor.replay_from, timeout=self.timeout,
        )
        new = 0
        for seq, user_id in rows:
            if not cursor.seen(seq):
                new += 1
                await deliver(Change(int(seq), user_id))
        if new:
            log.info("Replayed %d change(s) from the change log", new)
        return new

    async def _fill(self, conn: asyncpg.Connection, cursor: FeedCursor, deliver: Any,
                    on_state: StateCallback) -> None:
        """A gap: re-read the log; holes it still lacks are forgotten after a grace period
        (a rolled-back change never appears)."""
        await self._replay(conn, cursor, deliver)
        if cursor.complete or cursor.expire_holes():
            on_state(True)

    async def _housekeeping(self, conn: asyncpg.Connection, cursor: FeedCursor, deliver: Any,
                            on_state: StateCallback) -> None:
        await conn.fetchval("SELECT 1", timeout=self.timeout)
        if not cursor.complete:
            await self._fill(conn, cursor, deliver, on_state)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            await self.prune_log()

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


def _parse(payload: str) -> Change | None:
    seq, sep, user_id = payload.partition(":")
    if not sep or not seq.isdigit() or not user_id:
        log.warning("Ignoring a malformed change announcement")
        return None
    return Change(int(seq), user_id)
