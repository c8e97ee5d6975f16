"""The embedded user directory: SQLite, same columns as Supabase's auth.users."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

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
    normalize_email,
)
from regcopilot.users.rows import COLUMNS, new_meta, to_user
from regcopilot.users.schema import SQLITE_DDL

log = logging.getLogger("regcopilot.users")

POLL_SECONDS = 0.2
PRUNE_EVERY_SECONDS = 60.0


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SqliteDirectory:
    kind = "sqlite"

    def __init__(
        self, path: str, *, timeout: float = 2.0,
        log_keep_seconds: float = DEFAULT_LOG_KEEP_SECONDS,
    ) -> None:
        self.path = path
        self.log_keep_seconds = log_keep_seconds
        self.timeout = timeout
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, timeout=self.timeout)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.executescript(SQLITE_DDL)
        await self._db.executescript(workspace_schema.SQLITE_DDL)
        await self._db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._db is None:
            raise DirectoryUnavailable("SQLite directory is not open")
        try:
            async with asyncio.timeout(self.timeout):
                yield self._db
        except (sqlite3.OperationalError, sqlite3.DatabaseError, TimeoutError, ValueError) as exc:
            raise DirectoryUnavailable(f"SQLite: {exc or type(exc).__name__}") from exc

    async def _one(self, sql: str, params: tuple[Any, ...]) -> User | None:
        async with self._conn() as db, db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return to_user(row) if row else None

    async def ping(self) -> None:
        async with self._conn() as db:
            await db.execute("SELECT 1")

    async def get(self, user_id: str) -> User | None:
        return await self._one(f"SELECT {COLUMNS} FROM auth_users WHERE id = ?", (user_id,))

    async def find_by_email(self, email: str) -> User | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM auth_users WHERE email = ?", (normalize_email(email),)
        )

    async def get_with_workspace(self, user_id: str) -> tuple[User | None, CurrentWorkspace]:
        found = await self.rows(render(self.kind, SESSION), user_id)
        return split_session(found[0]) if found else (None, NO_WORKSPACE)

    async def rows(self, sql: str, *params: Any) -> list[tuple]:
        async with self._conn() as db, db.execute(sql, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def batch(self, statements: list[tuple[str, tuple]]) -> list[int]:
        counts: list[int] = []
        failed: sqlite3.IntegrityError | None = None
        async with self._conn() as db:
            try:
                for sql, params in statements:
                    counts.append((await db.execute(sql, params)).rowcount)
            except sqlite3.IntegrityError as exc:
                # Raised outside _conn(), which would make a constraint an "unavailable".
                failed = exc
                await db.rollback()
            except BaseException:
                await db.rollback()
                raise
            else:
                await db.commit()
        if failed is not None:
            raise ValueError(str(failed)) from failed
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
        user_id = str(uuid.uuid4())
        duplicate = False
        async with self._conn() as db:
            try:
                await db.execute(
                    "INSERT INTO auth_users (id, email, encrypted_password, raw_app_meta_data,"
                    " raw_user_meta_data) VALUES (?, ?, ?, ?, ?)",
                    (
                        user_id,
                        normalize_email(email),
                        password_hash,
                        json.dumps(app_meta),
                        json.dumps(user_meta),
                    ),
                )
            except sqlite3.IntegrityError:
                # Raised outside _conn(), which would turn any error into "unavailable"; and
                # the failed insert's implicit transaction must not keep the write lock.
                duplicate = True
                await db.rollback()
            else:
                await db.commit()
        if duplicate:
            raise ValueError(f"a user with email {normalize_email(email)} exists")
        user = await self.get(user_id)
        assert user is not None
        return user

    async def list(self, limit: int = 100) -> list[User]:
        async with self._conn() as db, db.execute(
            f"SELECT {COLUMNS} FROM auth_users ORDER BY created_at LIMIT ?", (limit,)
        ) as cur:
            rows = await cur.fetchall()
        return [to_user(r) for r in rows]

    async def page(
        self, email_contains: str = "", offset: int = 0, limit: int = 50
    ) -> tuple[list[User], int]:
        pattern = normalize_email(email_contains)
        # instr, not LIKE: the search text is taken literally, % and _ included.
        where = "WHERE instr(coalesce(email, ''), ?) > 0"
        async with self._conn() as db:
            async with db.execute(
                f"SELECT {COLUMNS} FROM auth_users {where} ORDER BY created_at DESC, id"
                " LIMIT ? OFFSET ?",
                (pattern, limit, offset),
            ) as cur:
                rows = await cur.fetchall()
            async with db.execute(f"SELECT count(*) FROM auth_users {where}", (pattern,)) as cur:
                total = await cur.fetchone()
        return [to_user(r) for r in rows], int(total[0]) if total else 0

    async def _write(self, sql: str, params: tuple[Any, ...]) -> bool:
        async with self._conn() as db:
            cur = await db.execute(sql, params)
            await db.commit()
            return cur.rowcount > 0

    async def set_banned_until(self, user_id: str, until: datetime | None) -> bool:
        return await self._write(
            "UPDATE auth_users SET banned_until = ?, updated_at = ? WHERE id = ?",
            (until.isoformat() if until else None, _now(), user_id),
        )

    async def delete(self, user_id: str, *, soft: bool = False) -> bool:
        if soft:
            return await self._write(
                "UPDATE auth_users SET deleted_at = ?, updated_at = ? WHERE id = ?",
                (_now(), _now(), user_id),
            )
        return await self._write("DELETE FROM auth_users WHERE id = ?", (user_id,))

    async def record_sign_in(self, user_id: str) -> None:
        await self._write(
            "UPDATE auth_users SET last_sign_in_at = ? WHERE id = ?", (_now(), user_id)
        )

    async def announce(self, user_id: str) -> None:
        await self._write("INSERT INTO auth_user_changes (user_id) VALUES (?)", (user_id,))

    async def count(self) -> int:
        async with self._conn() as db, db.execute("SELECT count(*) FROM auth_users") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def read_log(self) -> LogSnapshot:
        async with self._conn() as db:
            async with db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'auth_user_changes'"
            ) as cur:
                row = await cur.fetchone()
            head = int(row[0]) if row else 0
            async with db.execute("SELECT min(seq) FROM auth_user_changes") as cur:
                row = await cur.fetchone()
            oldest = row[0] if row else None
            async with db.execute(
                "SELECT user_id, max(seq) FROM auth_user_changes"
                " WHERE user_id NOT LIKE 'session:%' GROUP BY user_id"
            ) as cur:
                rows = await cur.fetchall()
        floor = head if oldest is None else int(oldest) - 1
        return LogSnapshot(floor, head, {r[0]: int(r[1]) for r in rows})

    async def watch(
        self,
        cursor: FeedCursor,
        on_change: ChangeCallback,
        on_state: StateCallback,
        on_revoked: RevokedCallback | None = None,
    ) -> None:
        """Poll the change log the triggers fill; SQLite has no NOTIFY. Writers are serialised,
        so the log has no gaps, and a stalled poll simply resumes from the cursor."""
        healthy: bool | None = None
        next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        while True:
            try:
                async with self._conn() as db, db.execute(
                    "SELECT seq, user_id FROM auth_user_changes WHERE seq > ? ORDER BY seq",
                    (cursor.replay_from,),
                ) as cur:
                    rows = await cur.fetchall()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                    await self.prune_log()
            except DirectoryUnavailable:
                if healthy is not False:
                    on_state(False)
                    healthy = False
                await asyncio.sleep(POLL_SECONDS)
                continue
            for seq, user_id in rows:
                if cursor.apply(int(seq)):
                    result = dispatch(Change(int(seq), user_id), on_change, on_revoked)
                    if asyncio.iscoroutine(result):
                        await result
            if rows:
                cursor.read_through(int(rows[-1][0]))
            if healthy is not True:
                on_state(True)  # only once what was missed has been applied
                healthy = True
            await asyncio.sleep(POLL_SECONDS)

    async def prune_log(self) -> int:
        """Drop at most PRUNE_BATCH log rows older than the retention; returns how many."""
        async with self._conn() as db:
            cur = await db.execute(
                "DELETE FROM auth_user_changes WHERE seq IN (SELECT seq FROM auth_user_changes"
                " WHERE changed_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)"
                " ORDER BY seq LIMIT ?)",
                (f"-{self.log_keep_seconds:.0f} seconds", PRUNE_BATCH),
            )
            await db.commit()
            return cur.rowcount
