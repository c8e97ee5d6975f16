"""The embedded user directory: SQLite, same columns as Supabase's auth.users."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from regcopilot.users.directory import (
    NO_WORKSPACE,
    ChangeCallback,
    CurrentWorkspace,
    DirectoryUnavailable,
    StateCallback,
    User,
    normalize_email,
)
from regcopilot.users.rows import COLUMNS, new_meta, to_user
from regcopilot.users.schema import SQLITE_DDL
from regcopilot.workspaces import schema as workspace_schema
from regcopilot.workspaces.sql import SESSION, render, split_session

log = logging.getLogger("regcopilot.users")

POLL_SECONDS = 0.2
CHANGE_LOG_KEEP = "-1 hour"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SqliteDirectory:
    kind = "sqlite"

    def __init__(self, path: str, *, timeout: float = 2.0) -> None:
        self.path = path
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

    async def watch(self, on_change: ChangeCallback, on_state: StateCallback) -> None:
        """Poll the change log the triggers fill; SQLite has no NOTIFY."""
        last = await self._last_seq()
        on_state(True)
        polls = 0
        healthy = True
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                async with self._conn() as db, db.execute(
                    "SELECT seq, user_id FROM auth_user_changes WHERE seq > ? ORDER BY seq",
                    (last,),
                ) as cur:
                    rows = await cur.fetchall()
                polls += 1
                if polls % 300 == 0:
                    await self._write(
                        "DELETE FROM auth_user_changes WHERE changed_at < "
                        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
                        (CHANGE_LOG_KEEP,),
                    )
            except DirectoryUnavailable:
                if healthy:
                    on_state(False)
                    healthy = False
                continue
            if not healthy:
                on_state(True)
                healthy = True
            for seq, user_id in rows:
                last = seq
                result = on_change(user_id)
                if asyncio.iscoroutine(result):
                    await result

    async def _last_seq(self) -> int:
        async with self._conn() as db, db.execute(
            "SELECT coalesce(max(seq), 0) FROM auth_user_changes"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
