"""Doctor: the user directory (SQLite file or PostgreSQL), read-only."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from regcopilot.names import AuthSchema
from regcopilot.ops.doctor.report import OK, WARN, Problem, Result
from regcopilot.users.problems import (
    postgres_problem,
    postgres_where,
    sqlite_problem,
)
from regcopilot.users.recognise import SchemaMismatch, describe, recognise


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def check_sqlite(url: str, timeout_s: float) -> list[Result]:
    path = _sqlite_path(url)
    where = path.resolve()
    if not path.exists():
        rel = f" (relative to {Path.cwd()})" if not path.is_absolute() else ""
        raise Problem(f"no database at {where}{rel}: the app would start with an empty user "
                      "directory; check DATABASE_URL and the working directory")
    try:
        conn = sqlite3.connect(f"file:{where}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise Problem(sqlite_problem(url, exc)) from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "auth_users" not in tables:
            raise Problem(f"{where} has no auth_users table: not this app's database? (the "
                          "app would create an empty one)")
        users, admins = conn.execute(
            "SELECT count(*), sum(json_extract(raw_app_meta_data, '$.role') = 'admin') "
            "FROM auth_users WHERE deleted_at IS NULL"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise Problem(f"cannot read {where}: {exc}") from None
    finally:
        conn.close()
    feed = "change log present" if "auth_user_changes" in tables else \
        "change log missing (created at start)"
    return [
        Result("database", OK, f"SQLite {where} readable"),
        Result("schema", OK, f"{describe(AuthSchema.OWN, 'sqlite')}; {feed}"),
        _users_result(users or 0, admins or 0),
    ]


async def check_postgres(url: str, statement_cache: int, timeout_s: float) -> list[Result]:
    import asyncpg

    where = postgres_where(url)
    started = time.perf_counter()
    try:
        conn = await asyncpg.connect(url, timeout=timeout_s, statement_cache_size=statement_cache)
    except Exception as exc:
        raise Problem(postgres_problem(url, exc, timeout_s)) from None
    ms = (time.perf_counter() - started) * 1000
    try:
        version = conn.get_server_version()
        table = await conn.fetchval("SELECT to_regclass('auth.users') IS NOT NULL")
        if not table:
            raise Problem(f"no auth.users table in {where}: not Supabase's database, or the "
                          "app has never started on it (it would create an empty one)")
        try:
            schema = await recognise(conn)
        except SchemaMismatch as exc:
            raise Problem(f"{where}: {exc}") from None
        users, admins = await conn.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE raw_app_meta_data->>'role' = 'admin') "
            "FROM auth.users WHERE deleted_at IS NULL"
        )
        trigger = await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'regcopilot_user_changed'"
        )
    except asyncpg.PostgresError as exc:
        raise Problem(f"cannot read auth.users in {where}: {exc}") from None
    finally:
        await conn.close()
    out = [Result("database", OK, f"PostgreSQL {version.major}.{version.minor} at {where}, "
                  f"connected in {ms:.0f} ms")]
    feed = "change trigger installed" if trigger else "change trigger missing (installed at start)"
    whose = describe(schema or AuthSchema.OWN, "postgres")
    out.append(Result("schema", OK, f"{whose}; {feed}"))
    out.append(_users_result(users, admins))
    return out


def _users_result(users: int, admins: int) -> Result:
    if users == 0:
        return Result("users", WARN, "no users yet: regcopilot users add --email "
                      "admin@example.com --admin")
    if admins == 0:
        return Result("users", WARN, f"{users} user(s), no admin: nobody can open "
                      "/admin/observability (users add --admin)")
    return Result("users", OK, f"{users} user(s), {admins} admin(s)")


