"""Running on Supabase Auth's own schema (the shared dump of GoTrue's migrations): recognised at
start, users created and signed in by GoTrue's rules, sessions in auth.sessions, the audit log,
and a password change voiding older sessions (on our schemas too)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import subprocess
import uuid
from typing import Any

import asyncpg
import pytest

from regcopilot.names import AuthSchema
from regcopilot.ops.doctor.database import check_postgres
from regcopilot.ops.doctor.report import Problem
from regcopilot.users.backends import open_directory
from regcopilot.users.recognise import SchemaMismatch
from regcopilot.web.preflight import database_problem
from tests.commands import REGCOPILOT, cli_env
from tests.conftest import PASSWORD, PG_ADMIN, serve
from tests.gotrue import ZERO_INSTANCE, insert_user
from tests.support import COOKIE, eventually, hash_password, repo_root, status

ADMIN_EMAIL = "root@example.com"


@contextlib.asynccontextmanager
async def connected(url: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(sql: str) -> Any:
    """A database of this test's own holding `sql`, dropped afterwards."""
    name = f"regcopilot_scratch_{uuid.uuid4().hex[:10]}"
    async with connected(PG_ADMIN) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    try:
        async with connected(url) as conn:
            await conn.execute(sql)
        yield url
    finally:
        async with connected(PG_ADMIN) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def sign_in(app: Any, email: str, password: str = PASSWORD,
                  agent: str = "journey-browser") -> Any:
    app.client.cookies.clear()
    r = await app.client.post("/api/auth/login", json={"email": email, "password": password},
                              headers={"user-agent": agent})
    app.client.cookies.clear()
    return r


async def cookie_of(app: Any, email: str, password: str = PASSWORD) -> str:
    r = await sign_in(app, email, password)
    assert r.status_code == 200, r.text
    return str(r.cookies[COOKIE])


async def _is(awaitable: Any, expected: int) -> bool:
    return await awaitable == expected


# --- knowing the schema ---------------------------------------------------------------------

async def test_each_schema_is_recognised_and_said(gotrue_url, pg_url, pg_clean, tmp_path):
    for url, expected in ((gotrue_url, AuthSchema.GOTRUE), (pg_url, AuthSchema.OWN),
                          (f"sqlite:///{tmp_path}/u.db", AuthSchema.OWN)):
        directory = open_directory(url)
        await directory.open()
        try:
            assert directory.schema is expected, url
        finally:
            await directory.close()
    schema_line = {r.name: r for r in await check_postgres(gotrue_url, 100, 2.0)}["schema"]
    assert schema_line.message.startswith("Supabase Auth's schema (GoTrue's)"), schema_line
    own_line = {r.name: r for r in await check_postgres(pg_url, 100, 2.0)}["schema"]
    assert own_line.message.startswith("regcopilot's own schema"), own_line


async def test_the_start_log_says_which_schema(instance, caplog):
    caplog.set_level(logging.INFO, logger="regcopilot")
    for directory, words in (("gotrue", "User directory: Supabase Auth's schema (GoTrue's)"),
                             ("postgres", "User directory: regcopilot's own schema: users in")):
        caplog.clear()
        async with instance(directory, "memory"):
            pass
        assert any(r.getMessage().startswith(words) for r in caplog.records), directory


async def test_a_foreign_auth_users_stops_the_start_with_one_line(settings_for):
    foreign = ("CREATE SCHEMA auth; CREATE TABLE auth.users (id uuid PRIMARY KEY, email text,"
               " password text)")
    async with scratch_database(foreign) as url:
        problem = await asyncio.to_thread(
            database_problem, settings_for("sqlite", DATABASE_URL=url))
        assert problem is not None and "\n" not in problem
        assert "neither Supabase Auth's" in problem and "banned_until" in problem, problem
        with pytest.raises(Problem, match="lacks column"):
            await check_postgres(url, 100, 2.0)
        async with connected(url) as conn:  # nothing was created on it
            assert await conn.fetchval(
                "SELECT to_regclass('public.regcopilot_user_changes')") is None
    half = ("CREATE SCHEMA auth; CREATE TABLE auth.users (id uuid, aud text, email text);"
            " CREATE TABLE auth.identities (id uuid)")
    async with scratch_database(half) as url:
        directory = open_directory(url)
        with pytest.raises(SchemaMismatch, match=r"auth\.sessions.*") as raised:
            await directory.open()
        await directory.close()
        assert "auth.users.is_sso_user" in str(raised.value)


# --- creating users as GoTrue's admin API does ----------------------------------------------

async def assert_created_as_gotrue_does(conn: Any, email: str, *, confirmed: bool) -> str:
    row = await conn.fetchrow("SELECT * FROM auth.users WHERE email = $1", email)
    assert row is not None
    assert str(row["instance_id"]) == ZERO_INSTANCE
    assert uuid.UUID(str(row["id"])).version == 4
    assert (row["aud"], row["role"]) == ("authenticated", "authenticated")
    assert row["encrypted_password"].startswith(("$2a$", "$2b$"))
    assert (row["email_confirmed_at"] is not None) is confirmed
    assert json.loads(row["raw_app_meta_data"]) == {"provider": "email",
                                                     "providers": ["email"]}
    # GoTrue's Confirm() sets email_verified in the user metadata; unconfirmed: empty.
    assert json.loads(row["raw_user_meta_data"]) == ({"email_verified": True}
                                                     if confirmed else {})
    assert row["created_at"] is not None and row["updated_at"] is not None
    assert row["is_sso_user"] is False and row["is_anonymous"] is False
    # GoTrue scans these into plain strings: NULL would break its own reads of the user.
    for column in ("aud", "role", "confirmation_token", "recovery_token",
                   "email_change_token_current", "email_change_token_new", "email_change",
                   "phone_change_token", "phone_change", "reauthentication_token"):
        assert row[column] is not None, column
    identities = await conn.fetch("SELECT * FROM auth.identities WHERE user_id = $1", row["id"])
    assert len(identities) == 1
    identity = identities[0]
    assert identity["provider"] == "email" and identity["provider_id"] == str(row["id"])
    assert json.loads(identity["identity_data"]) == {
        "sub": str(row["id"]), "email": email, "email_verified": False,
        "phone_verified": False}
    assert identity["email"] == email  # GoTrue's generated column
    return str(row["id"])


async def test_users_created_by_the_cli_are_gotrue_users(gotrue_url, settings_for, tmp_path):
    settings_for("gotrue")  # empties its users
    env = {**cli_env(tmp_path), "DATABASE_URL": gotrue_url}

    def add(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [REGCOPILOT, "users", "add", "--password", PASSWORD, *extra],
            env=env, capture_output=True, text=True, timeout=60,
        )

    done = add("--email", "Cli@Example.com")
    assert done.returncode == 0, done.stderr
    unconfirmed = add("--email", "later@example.com", "--unconfirmed")
    assert unconfirmed.returncode == 0 and "(unconfirmed)" in unconfirmed.stdout
    again = add("--email", "cli@example.com")
    assert again.returncode == 1 and "exists" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
    async with connected(gotrue_url) as conn:
        await assert_created_as_gotrue_does(conn, "cli@example.com", confirmed=True)
        await assert_created_as_gotrue_does(conn, "later@example.com", confirmed=False)


async def test_users_created_by_the_admin_api_are_gotrue_users(instance, gotrue_url):
    async with instance("gotrue", "memory") as app:
        await app.add_user(ADMIN_EMAIL, admin=True)
        admin = await cookie_of(app, ADMIN_EMAIL)
        app.client.cookies.set(COOKIE, admin)
        r = await app.client.post("/api/admin/users", json={
            "email": "api@example.com", "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = await app.client.post("/api/admin/users", json={
            "email": "pending@example.com", "password": PASSWORD, "emailConfirm": False})
        assert r.status_code == 201, r.text
        dup = await app.client.post("/api/admin/users", json={
            "email": "API@example.com", "password": PASSWORD})
        assert dup.status_code == 422 and "exists" in dup.text
        app.client.cookies.clear()
        async with connected(gotrue_url) as conn:
            await assert_created_as_gotrue_does(conn, "api@example.com", confirmed=True)
            await assert_created_as_gotrue_does(conn, "pending@example.com", confirmed=False)
        assert (await sign_in(app, "api@example.com")).status_code == 200


async def test_unconfirmed_needs_gotrue_schema(instance):
    async with instance("postgres", "memory") as app:
        with pytest.raises(ValueError, match="Supabase Auth's schema"):
            await app.services.directory.add("x@example.com", hash_password(PASSWORD),
                                              confirmed=False)


# --- signing in by GoTrue's rules -----------------------------------------------------------

async def test_sign_in_follows_gotrue_rules(instance, gotrue_url):
    async with instance("gotrue", "memory") as app:
        good = hash_password(PASSWORD)
        async with connected(gotrue_url) as conn:
            confirmed = await insert_user(conn, "ok@example.com", good)
            await insert_user(conn, "pending@example.com", good, confirmed=False)
            await insert_user(conn, "sso@example.com", good, sso=True)
            await insert_user(conn, "anon@example.com", good, anonymous=True)
            await insert_user(conn, None, None, anonymous=True)  # as GoTrue makes them
            await insert_user(conn, "nopass@example.com", None)
            await insert_user(conn, "other-aud@example.com", good, aud="partner")
            before = await conn.fetchval(
                "SELECT last_sign_in_at FROM auth.users WHERE id = $1", confirmed)
        assert before is None

        r = await sign_in(app, "ok@example.com")
        assert r.status_code == 200, r.text
        async with connected(gotrue_url) as conn:
            assert await conn.fetchval(
                "SELECT last_sign_in_at FROM auth.users WHERE id = $1", confirmed) is not None

        # Unconfirmed: GoTrue's words, and only to someone who knows the password.
        r = await sign_in(app, "pending@example.com")
        assert r.status_code == 403 and r.json()["error"] == "Email not confirmed", r.text
        r = await sign_in(app, "pending@example.com", "wrong password!")
        assert r.status_code == 401 and "not confirmed" not in r.text
        # SSO-only, anonymous and broken rows: as a wrong password, never a 500.
        for email in ("sso@example.com", "anon@example.com", "nopass@example.com",
                      "other-aud@example.com"):
            r = await sign_in(app, email)
            assert r.status_code == 401, (email, r.text)
            assert r.json()["error"] == "Invalid email or password"


async def test_autoconfirm_lets_unconfirmed_emails_in(instance, gotrue_url):
    async with instance("gotrue", "memory", GOTRUE_MAILER_AUTOCONFIRM=True) as app:
        async with connected(gotrue_url) as conn:
            await insert_user(conn, "pending@example.com", hash_password(PASSWORD),
                              confirmed=False)
        assert (await sign_in(app, "pending@example.com")).status_code == 200


# --- sessions in auth.sessions --------------------------------------------------------------

async def test_sessions_live_in_auth_sessions(settings_for, gotrue_url):
    settings = settings_for("gotrue", "memory")  # no Redis: only the change log carries news
    async with serve(settings) as a, serve(settings) as b:
        user_id = await a.add_user("two@example.com")
        cookie = await cookie_of(a, "two@example.com")
        claims = a.services.tokens.decode(cookie)
        async with connected(gotrue_url) as conn:
            row = await conn.fetchrow("SELECT * FROM auth.sessions WHERE id = $1", claims.jti)
        assert row is not None, "no auth.sessions row for the session"
        assert str(row["id"]) == claims.jti and str(row["user_id"]) == user_id
        assert row["created_at"] is not None and row["updated_at"] is not None
        assert int(row["not_after"].timestamp()) == claims.exp
        assert row["user_agent"] == "journey-browser" and str(row["ip"]) == "127.0.0.1"
        assert row["aal"] == "aal1"

        other = await cookie_of(a, "two@example.com")
        for app in (a, b):
            assert await status(app, cookie) == 200 and await status(app, other) == 200

        # Deleted by someone else (GoTrue's logout, its admin API, a console, plain SQL).
        async with connected(gotrue_url) as conn:
            await conn.execute("DELETE FROM auth.sessions WHERE id = $1", claims.jti)
        for app in (a, b):
            await eventually(lambda app=app: _is(status(app, cookie), 401), timeout=1.0)
            assert await status(app, other) == 200

        # Our sign-out deletes the row, and the audit log tells Supabase both stories.
        b.client.cookies.set(COOKIE, other)
        assert (await b.client.post("/api/auth/logout")).status_code == 200
        b.client.cookies.clear()
        other_jti = a.services.tokens.decode(other).jti
        async with connected(gotrue_url) as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM auth.sessions WHERE id = $1", other_jti) == 0
        for app in (a, b):
            await eventually(lambda app=app: _is(status(app, other), 401), timeout=1.0)

        async def audited() -> list[dict]:
            async with connected(gotrue_url) as conn:
                rows = await conn.fetch(
                    "SELECT instance_id, payload, ip_address FROM auth.audit_log_entries"
                    " WHERE payload->>'actor_id' = $1 ORDER BY created_at", user_id)
            return [dict(r) for r in rows]

        entries = await eventually(lambda: _audited_three(audited), timeout=5.0)
        payloads = [json.loads(e["payload"]) for e in entries]
        assert [p["action"] for p in payloads] == ["login", "login", "logout"]
        assert payloads[0] == {"actor_id": user_id, "actor_via_sso": False,
                               "actor_username": "two@example.com", "action": "login",
                               "log_type": "account", "traits": {"provider": "email"}}
        assert payloads[2] == {"actor_id": user_id, "actor_via_sso": False,
                               "actor_username": "two@example.com", "action": "logout",
                               "log_type": "account"}
        assert all(str(e["instance_id"]) == ZERO_INSTANCE for e in entries)


async def _audited_three(read: Any) -> Any:
    rows = await read()
    return rows if len(rows) >= 3 else None


async def test_sign_out_everywhere_deletes_every_row(instance, gotrue_url):
    async with instance("gotrue", "memory") as app:
        user_id = await app.add_user("many@example.com")
        cookies = [await cookie_of(app, "many@example.com") for _ in range(3)]
        async with connected(gotrue_url) as conn:
            # One of GoTrue's own sessions (supabase-js on a phone): it goes too.
            await conn.execute(
                "INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal)"
                " VALUES (gen_random_uuid(), $1, now(), now(), 'aal1')", user_id)
        app.client.cookies.set(COOKIE, cookies[0])
        r = await app.client.post("/api/auth/sessions/revoke-all")
        app.client.cookies.clear()
        assert r.status_code == 200 and r.json()["revoked"] == 3, r.text
        async with connected(gotrue_url) as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM auth.sessions WHERE user_id = $1", user_id) == 0
        for cookie in cookies:
            assert await status(app, cookie) == 401


async def test_a_session_deleted_while_down_stays_ended_after_restart(settings_for,
                                                                      gotrue_url):
    settings = settings_for("gotrue", "memory")
    async with serve(settings) as app:
        await app.add_user("later@example.com")
        cookie = await cookie_of(app, "later@example.com")
        jti = app.services.tokens.decode(cookie).jti
    async with connected(gotrue_url) as conn:  # nobody is running
        await conn.execute("DELETE FROM auth.sessions WHERE id = $1", jti)
    async with serve(settings) as again:
        assert await status(again, cookie) == 401


# --- a password change ends older sessions --------------------------------------------------

def _sqlite_set_password(path: str, email: str, hashed: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE auth_users SET encrypted_password = ? WHERE email = ?",
                   (hashed, email))
        db.commit()


@pytest.mark.parametrize("directory", ["gotrue", "postgres", "sqlite"])
async def test_password_changed_in_sql_ends_older_sessions(settings_for, pg_clean, pg_url,
                                                           tmp_path, directory):
    settings = settings_for(directory, "memory")
    async with serve(settings) as a, serve(settings) as b:
        await a.add_user("pw@example.com")
        await a.add_user("bystander@example.com")
        old = await cookie_of(a, "pw@example.com")
        bystander = await cookie_of(b, "bystander@example.com")
        for app in (a, b):  # warm: the validation is cached on both
            assert await status(app, old) == 200
        new_hash = hash_password("a brand new password")
        if directory == "sqlite":
            await asyncio.to_thread(_sqlite_set_password, str(tmp_path / "users.db"),
                                    "pw@example.com", new_hash)
        else:
            async with connected(settings.DATABASE_URL) as conn:
                await conn.execute("UPDATE auth.users SET encrypted_password = $1"
                                   " WHERE email = 'pw@example.com'", new_hash)
        for app in (a, b):
            await eventually(lambda app=app: _is(status(app, old), 401), timeout=1.0)
            assert await status(app, bystander) == 200
        assert (await sign_in(a, "pw@example.com")).status_code == 401  # the old password
        fresh = await cookie_of(a, "pw@example.com", "a brand new password")
        for app in (a, b):
            assert await status(app, fresh) == 200


# --- CI has the schema, or fails -------------------------------------------------------------

def test_ci_fails_without_the_shared_schema(tmp_path):
    """A clone with no ../shared beside it: .ci/run stops before running anything."""
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    script = clone / ".ci" / "run"
    script.write_text((repo_root() / ".ci" / "run").read_text())
    script.chmod(0o755)
    (clone / "dev").write_text("#!/bin/sh\necho ran-the-tests\n")
    (clone / "dev").chmod(0o755)
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "ran-the-tests" not in done.stdout
    assert "shared/supabase/gotrue-auth-schema.sql" in done.stderr
    shared = tmp_path / "shared" / "supabase"
    shared.mkdir(parents=True)
    (shared / "gotrue-auth-schema.sql").write_text("-- present\n")
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "ran-the-tests" in done.stdout, done.stderr


# --- what a sign-in costs -------------------------------------------------------------------

async def _statements_of_a_sign_in(app: Any, email: str) -> int:
    """Directory statements on the sign-in's own path (the audit writer's excluded: it runs
    off the path, in its own task)."""
    directory = app.services.directory
    opened, count = directory._conn, 0

    def counted() -> Any:
        nonlocal count
        task = asyncio.current_task()
        if task is None or task.get_name() != "audit-log":
            count += 1
        return opened()

    directory._conn = counted
    try:
        assert (await sign_in(app, email)).status_code == 200
    finally:
        directory._conn = opened
    return count


async def test_sign_in_costs_at_most_one_more_statement_on_gotrue(instance):
    counts = {}
    for directory in ("postgres", "gotrue"):
        async with instance(directory, "memory") as app:
            await app.add_user(f"count-{directory}@example.com")
            await cookie_of(app, f"count-{directory}@example.com")  # the personal workspace
            counts[directory] = await _statements_of_a_sign_in(
                app, f"count-{directory}@example.com")
    print(f"\nstatements per sign-in: {counts}")
    assert counts["gotrue"] <= counts["postgres"] + 1, counts


# --- our own password change: CLI and admin API ---------------------------------------------

async def test_password_set_by_cli_ends_sessions_everywhere(settings_for, gotrue_url, tmp_path):
    settings = settings_for("gotrue", "memory")
    async with serve(settings) as a, serve(settings) as b:
        user_id = await a.add_user("cli-pw@example.com")
        old = await cookie_of(a, "cli-pw@example.com")
        for app in (a, b):
            assert await status(app, old) == 200
        async with connected(gotrue_url) as conn:  # a recovery link in flight
            await conn.execute("UPDATE auth.users SET recovery_token = 'pending-link',"
                               " recovery_sent_at = now() WHERE id = $1", user_id)
        env = {**cli_env(tmp_path), "DATABASE_URL": gotrue_url}
        done = await asyncio.to_thread(
            subprocess.run,
            [REGCOPILOT, "users", "set-password", "--email", "cli-pw@example.com",
             "--password", "another long password"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        for app in (a, b):
            await eventually(lambda app=app: _is(status(app, old), 401), timeout=1.0)
        async with connected(gotrue_url) as conn:
            row = await conn.fetchrow("SELECT recovery_token, recovery_sent_at FROM auth.users"
                                      " WHERE id = $1", user_id)
            assert (row["recovery_token"], row["recovery_sent_at"]) == ("", None)
            assert await conn.fetchval(  # its auth.sessions rows went, as GoTrue's logout
                "SELECT count(*) FROM auth.sessions WHERE user_id = $1", user_id) == 0
        assert (await sign_in(a, "cli-pw@example.com", "another long password")
                ).status_code == 200


@pytest.mark.parametrize("directory", ["postgres", "sqlite"])
async def test_password_set_by_admin_api_ends_older_sessions(instance, directory):
    async with instance(directory, "memory") as app:
        await app.add_user(ADMIN_EMAIL, admin=True)
        user_id = await app.add_user("api-pw@example.com")
        old = await cookie_of(app, "api-pw@example.com")
        admin = await cookie_of(app, ADMIN_EMAIL)
        app.client.cookies.set(COOKIE, admin)
        short = await app.client.post(f"/api/admin/users/{user_id}/password",
                                      json={"password": "short"})
        r = await app.client.post(f"/api/admin/users/{user_id}/password",
                                  json={"password": "another long password"})
        app.client.cookies.clear()
        assert short.status_code == 422
        assert r.status_code == 200, r.text
        assert await status(app, old) == 401
        assert await status(app, admin) == 200
        assert (await sign_in(app, "api-pw@example.com")).status_code == 401
        fresh = await cookie_of(app, "api-pw@example.com", "another long password")
        assert await status(app, fresh) == 200


# --- faults: the listeners cut while it happens, an instance started after --------------------

# Enough for a listener to notice its connection is gone, reconnect (0.5 s) and replay the log.
RECONNECT_AND_REPLAY_S = 6.0


@pytest.mark.parametrize("what", ["session-deleted", "password-changed"])
async def test_made_while_every_listener_is_cut_reaches_every_instance(settings_for, gotrue_url,
                                                                      what):
    """The change commits in the same transaction that kills every instance's listener: its
    announcement reaches nobody, only the change log holds it; each instance replays it on
    reconnecting, and one started later (nothing cached, Redis included) refuses too."""
    settings = settings_for("gotrue", "redis")
    async with serve(settings) as a, serve(settings) as b:
        user_id = await a.add_user("cut@example.com")
        cookie = await cookie_of(a, "cut@example.com")
        jti = a.services.tokens.decode(cookie).jti
        for app in (a, b):
            assert await status(app, cookie) == 200
            await eventually(lambda app=app: app.services.feed.complete, timeout=5)
        change = (f"DELETE FROM auth.sessions WHERE id = '{jti}'" if what == "session-deleted"
                  else "UPDATE auth.users SET encrypted_password = "
                       f"'{hash_password('changed while cut')}' WHERE id = '{user_id}'")
        async with connected(gotrue_url) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                "current_database() AND application_name = 'regcopilot-listener'; " + change)
        for app in (a, b):
            await eventually(lambda app=app: _is(status(app, cookie), 401),
                             timeout=RECONNECT_AND_REPLAY_S)
    async with serve(settings) as later:
        assert await status(later, cookie) == 401
