"""Steps shared by the workspace tests: calls with a named session cookie, a sign-in, plain
SQL on the workspace tables from outside the app, and two instances on one directory."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from tests.conftest import PASSWORD, PG_ADMIN
from tests.support import COOKIE

TABLES = {
    "postgres": {"tenants": "copilot_core.tenants", "members": "copilot_core.tenant_memberships",
                 "contexts": "copilot_core.user_tenant_contexts",
                 "preferences": "copilot_core.user_preferences",
                 "invitations": "copilot_core.workspace_invitations", "now": "now()"},
    "sqlite": {"tenants": "copilot_core_tenants", "members": "copilot_core_tenant_memberships",
               "contexts": "copilot_core_user_tenant_contexts",
               "preferences": "copilot_core_user_preferences",
               "invitations": "copilot_core_workspace_invitations",
               "now": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"},
}


def cookie_of(response: Any) -> str:
    return response.cookies[COOKIE]


async def me(app: Any, cookie: str) -> Any:
    return await app.client.get("/api/me", headers={"Cookie": f"{COOKIE}={cookie}"})


async def call(app: Any, method: str, path: str, cookie: str, **kw: Any) -> Any:
    return await app.client.request(method, path, headers={"Cookie": f"{COOKIE}={cookie}"},
                                    **kw)


async def sign_in(app: Any, email: str) -> tuple[str, dict]:
    r = await app.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    app.client.cookies.clear()  # each test names the cookie it sends
    return cookie_of(r), r.json()["user"]


async def sql(directory: str, app: Any, pg_url: str, statement: str, *args: Any) -> list:
    """Plain SQL on the workspace tables, from outside the app; the rows it returns."""
    text = statement.format(**TABLES[directory])
    if directory == "postgres":
        conn = await asyncpg.connect(pg_url)
        try:
            params = [uuid.UUID(a) if _is_uuid(a) else a for a in args]
            return [tuple(r) for r in await conn.fetch(text, *params)]
        finally:
            await conn.close()
    import sqlite3

    path = app.services.settings.DATABASE_URL.removeprefix("sqlite:///")
    for n in range(len(args), 0, -1):
        text = text.replace(f"${n}", f"?{n}")  # numbered: a parameter may repeat
    with sqlite3.connect(path) as conn:
        return conn.execute(text, args).fetchall()


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


@contextlib.asynccontextmanager
async def upstream_database(schema: str) -> AsyncIterator[str]:
    """A PostgreSQL database of its own, shaped like a team's existing one: auth.users, then
    `schema` (their copilot_core tables as they made them). Its URL; dropped afterwards."""
    from regcopilot.users import schema as users_schema

    # auth.users, then this app's own tables.
    users_ddl = users_schema.POSTGRES_USERS_DDL + users_schema.POSTGRES_DDL
    name = f"regcopilot_upstream_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        try:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(users_ddl)
                await conn.execute(schema)
            finally:
                await conn.close()
            yield url
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
