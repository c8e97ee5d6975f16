"""Workspaces in a session (issue 13), on real SQLite/PostgreSQL and Redis, two in-process
instances on one directory: the journey, access lost through the API and plain SQL, role
changes, refusals, and the embedded default."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from regcopilot.config import load_settings
from tests.conftest import PASSWORD, TEST_SECRET, serve
from tests.support import eventually
from tests.tenancy import call, cookie_of, me, sign_in, sql, upstream_database

BEARER = {"Authorization": "Bearer monitor-token"}
BACKENDS = [("sqlite", "memory"), ("sqlite", "redis"), ("postgres", "memory"),
            ("postgres", "redis")]


async def _team_with_member(a: Any, b: Any) -> dict[str, Any]:
    """alice owns a team; bob is a member there and has switched into it on instance b."""
    tag = uuid.uuid4().hex[:8]
    await a.add_user(f"alice-{tag}@example.com")
    bob_id = await a.add_user(f"bob-{tag}@example.com")
    alice, alice_user = await sign_in(a, f"alice-{tag}@example.com")
    bob, bob_user = await sign_in(b, f"bob-{tag}@example.com")
    r = await call(a, "POST", "/api/workspaces", alice, json={"name": "Acme Compliance"})
    assert r.status_code == 201, r.text
    team = r.json()["id"]
    r = await call(a, "POST", f"/api/workspaces/{team}/members", alice,
                   json={"email": f"bob-{tag}@example.com", "role": "member"})
    assert r.status_code == 201, r.text
    # Warm both instances with bob in his personal workspace first.
    for app in (a, b):
        assert (await me(app, bob)).json()["tenantId"] == bob_user["tenantId"]
    r = await call(b, "POST", "/api/workspaces/switch", bob, json={"tenantId": team})
    assert r.status_code == 200, r.text
    return {"alice": alice, "bob": cookie_of(r), "bob_id": bob_id, "team": team,
            "bob_personal": bob_user["tenantId"], "alice_personal": alice_user["tenantId"]}


@pytest.mark.parametrize(("directory", "cache"), [*BACKENDS, ("gotrue", "redis")])
async def test_journey_personal_team_member_switch_seen_on_another_instance(
        pair, directory, cache):
    async with pair(directory, cache) as (a, b):
        tag = uuid.uuid4().hex[:8]
        await a.add_user(f"carol-{tag}@example.com")
        cookie, user = await sign_in(a, f"carol-{tag}@example.com")
        listed = (await call(a, "GET", "/api/workspaces", cookie)).json()
        assert listed["current"] == user["tenantId"]
        assert [(w["type"], w["role"], w["isCurrent"]) for w in listed["workspaces"]] == [
            ("personal", "owner", True)]

        s = await _team_with_member(a, b)
        # The very next request, on the OTHER instance, whose cache still said "personal".
        body = (await me(a, s["bob"])).json()
        assert (body["tenantId"], body["tenantRole"], body["tenantName"]) == (
            s["team"], "member", "Acme Compliance")
        r = await me(b, s["bob"])
        assert r.json()["tenantId"] == s["team"] and "x-workspace-changed" not in r.headers
        listed = (await call(a, "GET", "/api/workspaces", s["bob"])).json()
        assert listed["current"] == s["team"]
        assert {(w["id"], w["isCurrent"]) for w in listed["workspaces"]} == {
            (s["team"], True), (s["bob_personal"], False)}
        session = (await call(a, "GET", "/api/auth/session", s["bob"])).json()["user"]
        assert session["tenantId"] == s["team"] and session["tenantRole"] == "member"


async def _served_personal(app: Any, cookie: str, personal: str) -> Any:
    r = await me(app, cookie)
    return r if r.status_code == 200 and r.json()["tenantId"] == personal else None


@pytest.mark.parametrize(("directory", "cache"), BACKENDS)
@pytest.mark.parametrize("how", ["api", "sql-removed", "sql-suspended", "sql-workspace-deleted"])
async def test_access_lost_moves_the_session_to_the_personal_workspace(
        pair, pg_url, directory, cache, how):
    async with pair(directory, cache) as (a, b):
        s = await _team_with_member(a, b)
        for app in (a, b):
            assert (await me(app, s["bob"])).json()["tenantId"] == s["team"]
        if how == "api":
            r = await call(a, "DELETE", f"/api/workspaces/{s['team']}/members/{s['bob_id']}",
                           s["alice"])
            assert r.status_code == 200, r.text
        elif how == "sql-workspace-deleted":
            await sql(directory, a, pg_url,
                      "UPDATE {tenants} SET deleted_at = {now} WHERE id = $1", s["team"])
        else:
            status = how.removeprefix("sql-")
            await sql(directory, a, pg_url,
                      f"UPDATE {{members}} SET status = '{status}' WHERE tenant_id = $1"
                      " AND user_id = $2", s["team"], s["bob_id"])
        for app in (a, b):
            r = await eventually(lambda app=app: _served_personal(app, s["bob"], s["bob_personal"]),
                                 timeout=5)
            # Told so, with the session re-issued for the workspace it was served in.
            assert r.headers["x-workspace-changed"] == s["bob_personal"]
            fresh = cookie_of(r)
            r = await me(app, fresh)
            assert r.json()["tenantId"] == s["bob_personal"]
            assert "x-workspace-changed" not in r.headers
        counted = {k: a.counters()[k] + b.counters()[k] for k in a.counters()}
        assert counted["workspaceAccessLost"] >= 1
        assert counted["workspaceAutoSwitches"] >= 1
        assert counted["workspaceSwitches"] == 1
        body = (await a.client.get("/api/observability", headers=BEARER)).json()
        assert set(body["workspaces"]) == {"switches", "automaticSwitches", "accessLost"}

        # Nothing left: the personal workspace taken away too → refused everywhere.
        await sql(directory, a, pg_url,
                  "UPDATE {members} SET status = 'suspended' WHERE tenant_id = $1"
                  " AND user_id = $2", s["bob_personal"], s["bob_id"])

        async def refused(app: Any) -> bool:
            r = await me(app, s["bob"])
            return r.status_code == 401 and r.json()["error"] == "no accessible workspace"

        for app in (a, b):
            await eventually(lambda app=app: refused(app), timeout=5)
        # And signing in again does not hand a new personal workspace back.
        r = await b.client.post("/api/auth/login", json={
            "email": (await me(a, s["alice"])).json()["email"].replace("alice", "bob"),
            "password": PASSWORD})
        assert r.status_code == 403 and r.json()["error"] == "no accessible workspace"


@pytest.mark.parametrize(("directory", "cache"), [("sqlite", "memory"), ("postgres", "redis")])
async def test_role_change_is_seen_on_every_instance(pair, pg_url, directory, cache):
    async with pair(directory, cache) as (a, b):
        s = await _team_with_member(a, b)
        r = await call(a, "PATCH", f"/api/workspaces/{s['team']}/members/{s['bob_id']}",
                       s["alice"], json={"role": "viewer"})
        assert r.status_code == 200, r.text

        async def role(app: Any, expected: str) -> bool:
            return (await me(app, s["bob"])).json()["tenantRole"] == expected

        for app in (a, b):
            await eventually(lambda app=app: role(app, "viewer"), timeout=5)
        await sql(directory, a, pg_url, "UPDATE {members} SET role = 'admin' WHERE tenant_id = $1"
                  " AND user_id = $2", s["team"], s["bob_id"])
        for app in (a, b):
            await eventually(lambda app=app: role(app, "admin"), timeout=5)


@pytest.mark.parametrize(("directory", "cache"), [("sqlite", "memory"), ("postgres", "redis")])
async def test_refusals_non_member_switch_and_member_management(pair, directory, cache):
    async with pair(directory, cache) as (a, b):
        s = await _team_with_member(a, b)
        tag = uuid.uuid4().hex[:8]
        await a.add_user(f"eve-{tag}@example.com")
        await a.add_user(f"root-{tag}@example.com", admin=True)
        eve, _ = await sign_in(a, f"eve-{tag}@example.com")
        root, _ = await sign_in(a, f"root-{tag}@example.com")
        for target in (s["team"], str(uuid.uuid4()), "not-a-uuid"):
            r = await call(a, "POST", "/api/workspaces/switch", eve, json={"tenantId": target})
            assert r.status_code == 403, r.text
        # A plain member (bob) and an outsider (eve) may not manage members; 404 for unknown.
        for who in (s["bob"], eve):
            r = await call(b, "GET", f"/api/workspaces/{s['team']}/members", who)
            assert r.status_code == 403
            r = await call(b, "DELETE",
                           f"/api/workspaces/{s['team']}/members/{s['bob_id']}", who)
            assert r.status_code == 403
        r = await call(a, "GET", f"/api/workspaces/{uuid.uuid4()}/members", s["alice"])
        assert r.status_code == 404
        # The owner and a platform admin may.
        for who in (s["alice"], root):
            r = await call(a, "GET", f"/api/workspaces/{s['team']}/members", who)
            assert r.status_code == 200
            assert {m["role"] for m in r.json()["members"]} == {"owner", "member"}
        owner = (await me(a, s["alice"])).json()["id"]
        r = await call(a, "DELETE", f"/api/workspaces/{s['team']}/members/{owner}", root)
        assert r.status_code == 409
        r = await call(a, "PATCH", f"/api/workspaces/{s['team']}/members/{s['bob_id']}",
                       s["alice"], json={"role": "superuser"})
        assert r.status_code == 422
        # The admin console's view of a user's workspaces: platform admins only.
        r = await call(a, "GET", f"/api/admin/users/{s['bob_id']}/workspaces", root)
        assert r.json()["current"] == s["team"]
        assert {w["id"] for w in r.json()["workspaces"]} == {s["team"], s["bob_personal"]}
        r = await call(a, "GET", f"/api/admin/users/{s['bob_id']}/workspaces", s["alice"])
        assert r.status_code == 403


async def test_embedded_default_works_with_no_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(NEXTAUTH_SECRET=TEST_SECRET, DATA_DIR=str(tmp_path / "data"),
                             OBSERVABILITY_TOKEN="monitor-token")  # only to read /metrics
    assert settings.DATABASE_URL.startswith("sqlite:") and not settings.REDIS_URL
    async with serve(settings) as app:
        await app.add_user("solo@example.com")
        cookie, _ = await sign_in(app, "solo@example.com")
        r = await call(app, "POST", "/api/workspaces", cookie, json={"name": "Solo Team"})
        assert r.status_code == 201
        r = await call(app, "POST", "/api/workspaces/switch", cookie,
                       json={"tenantId": r.json()["id"]})
        assert r.status_code == 200
        body = (await me(app, cookie_of(r))).json()
        assert body["tenantName"] == "Solo Team" and body["tenantRole"] == "owner"
        page = await call(app, "GET", "/", cookie_of(r))
        assert "Solo Team" in page.text and 'id="workspace-switcher"' in page.text
        metrics = await app.client.get("/metrics", headers=BEARER)
        assert "regcopilot_workspace_switches_total 1.0" in metrics.text


async def test_stampede_on_a_switched_session_is_one_directory_query(instance):
    import asyncio

    async with instance("postgres", "redis") as app:
        await app.add_user("herd@example.com")
        cookie, _ = await sign_in(app, "herd@example.com")
        await eventually(lambda: app.services.feed.complete, timeout=5)
        assert (await me(app, cookie)).status_code == 200
        await app.services.validator.user_changed((await me(app, cookie)).json()["id"])
        before = app.counters()["databaseQueries"]
        codes = await asyncio.gather(*(me(app, cookie) for _ in range(50)))
        assert {r.status_code for r in codes} == {200}
        assert app.counters()["databaseQueries"] - before == 1


@pytest.mark.parametrize(("directory", "cache"), [("sqlite", "memory"), ("postgres", "redis")])
async def test_plain_sql_switch_is_announced_after_an_automatic_one(pair, pg_url, directory,
                                                                      cache):
    """The validator's own record of an automatic switch is not announced; a switch made by
    plain SQL on user_tenant_contexts still is, on every instance."""
    async with pair(directory, cache) as (a, b):
        s = await _team_with_member(a, b)
        await sql(directory, a, pg_url, "UPDATE {members} SET status = 'suspended'"
                  " WHERE tenant_id = $1 AND user_id = $2", s["team"], s["bob_id"])
        for app in (a, b):
            await eventually(lambda app=app: _served_personal(app, s["bob"], s["bob_personal"]),
                             timeout=5)
        await sql(directory, a, pg_url, "UPDATE {members} SET status = 'active'"
                  " WHERE tenant_id = $1 AND user_id = $2", s["team"], s["bob_id"])
        await sql(directory, a, pg_url, "UPDATE {contexts} SET current_tenant_id = $1"
                  " WHERE user_id = $2", s["team"], s["bob_id"])

        async def in_team(app: Any) -> bool:
            r = await me(app, s["bob"])
            return r.json()["tenantId"] == s["team"]

        for app in (a, b):
            await eventually(lambda app=app: in_team(app), timeout=5)


async def test_existing_upstream_style_tables_are_used_as_is(settings_for, tmp_path):
    """A database whose copilot_core tables already exist - with columns of their own, row-level
    security on, the owner foreign key - is used without changing them, and its members and
    current workspaces are honoured from the first sign-in."""
    from regcopilot.auth.passwords import hash_password

    async with upstream_database("""
                CREATE SCHEMA copilot_core;
                CREATE TABLE copilot_core.tenants (
                    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL,
                    slug text UNIQUE, type text NOT NULL DEFAULT 'personal',
                    owner_id uuid NOT NULL REFERENCES auth.users(id) ON DELETE RESTRICT,
                    region text NOT NULL DEFAULT 'eu', deleted_at timestamptz,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now());
                CREATE TABLE copilot_core.tenant_memberships (
                    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                    tenant_id uuid NOT NULL REFERENCES copilot_core.tenants(id),
                    user_id uuid NOT NULL, role text NOT NULL DEFAULT 'member',
                    status text NOT NULL DEFAULT 'active', invited_by uuid,
                    note text, joined_at timestamptz, deleted_at timestamptz,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (tenant_id, user_id));
                CREATE TABLE copilot_core.user_tenant_contexts (
                    user_id uuid PRIMARY KEY, current_tenant_id uuid,
                    updated_at timestamptz NOT NULL DEFAULT now());
                ALTER TABLE copilot_core.tenants ENABLE ROW LEVEL SECURITY;
                ALTER TABLE copilot_core.tenant_memberships ENABLE ROW LEVEL SECURITY;
            """) as url:
        conn = await asyncpg.connect(url)
        try:
            user = await conn.fetchval(
                "INSERT INTO auth.users (email, encrypted_password) VALUES ($1, $2) RETURNING id",
                "upstream@example.com", hash_password(PASSWORD))
            team = await conn.fetchval(
                "INSERT INTO copilot_core.tenants (name, slug, type, owner_id)"
                " VALUES ('Legacy Team', 'legacy-team', 'team', $1) RETURNING id", user)
            await conn.execute(
                "INSERT INTO copilot_core.tenant_memberships (tenant_id, user_id, role, note,"
                " joined_at) VALUES ($1, $2, 'admin', 'kept', now())", team, user)
            await conn.execute("INSERT INTO copilot_core.user_tenant_contexts VALUES ($1, $2)",
                               user, team)
        finally:
            await conn.close()

        async with serve(settings_for("postgres", "memory", DATABASE_URL=url)) as app:
            cookie, body = await sign_in(app, "upstream@example.com")
            assert (body["tenantId"], body["tenantRole"], body["tenantName"]) == (
                str(team), "admin", "Legacy Team")
            listed = (await call(app, "GET", "/api/workspaces", cookie)).json()
            assert [w["id"] for w in listed["workspaces"]] == [str(team)]  # no personal added
            r = await call(app, "POST", "/api/workspaces", cookie, json={"name": "New"})
            assert r.status_code == 201, r.text

        conn = await asyncpg.connect(url)
        try:
            note = await conn.fetchval("SELECT note FROM copilot_core.tenant_memberships"
                                       " WHERE tenant_id = $1", team)
            region = await conn.fetchval("SELECT region FROM copilot_core.tenants"
                                         " WHERE name = 'New'")
            anon_functions = await conn.fetchval(
                "SELECT count(*) FROM pg_proc p WHERE p.proname LIKE 'regcopilot%'"
                " AND has_function_privilege('public', p.oid, 'EXECUTE')")
        finally:
            await conn.close()
        assert (note, region, anon_functions) == ("kept", "eu", 0)


async def _directory_state(directory: str, app: Any) -> tuple:
    """The change log's head and every row of the workspace tables, read from outside."""
    url = app.services.settings.DATABASE_URL
    if directory == "postgres":
        conn = await asyncpg.connect(url)
        try:
            head = await conn.fetchval(
                "SELECT coalesce(max(seq), 0) FROM public.regcopilot_user_changes")
            rows = [[tuple(r) for r in await conn.fetch(f"SELECT * FROM copilot_core.{t}"
                                                        " ORDER BY 1")]
                    for t in ("tenants", "tenant_memberships", "user_tenant_contexts",
                              "user_preferences")]
        finally:
            await conn.close()
        return head, rows
    import sqlite3

    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        head = conn.execute("SELECT coalesce(max(seq), 0) FROM auth_user_changes").fetchone()
        rows = [conn.execute(f"SELECT * FROM copilot_core_{t} ORDER BY 1").fetchall()
                for t in ("tenants", "tenant_memberships", "user_tenant_contexts",
                              "user_preferences")]
    return head, rows


@contextlib.asynccontextmanager
async def _writes_traced(directory: str, app: Any) -> AsyncIterator[list[str]]:
    """SQLite: every write statement the app's own connection runs meanwhile (the session
    records' once-a-minute flush aside). PostgreSQL: nothing traced (the state is compared)."""
    statements: list[str] = []
    if directory != "sqlite":
        yield statements
        return
    db = app.services.directory._db  # the one connection the SQLite directory runs on

    def seen(sql: str) -> None:
        words = sql.lstrip().split(None, 3)
        if words and words[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE") \
                and "auth_sessions" not in sql:
            statements.append(sql)

    await db.set_trace_callback(seen)
    try:
        yield statements
    finally:
        await db.set_trace_callback(None)


@pytest.mark.parametrize("directory", ["sqlite", "postgres"])
async def test_validation_never_writes_the_step_after_it_does(pair, directory):
    """A validation that asks the directory (cache miss) of a session whose workspace was
    lost, or of a user who never had one, writes nothing: the change log's head and the
    workspace tables are unchanged (and, on SQLite, no write statement ran). authenticate()'s
    step after the answer then records the served workspace / makes the personal one."""
    from regcopilot.auth.authenticate import Credentials
    from regcopilot.auth.identity import SessionUser

    async with pair(directory, "memory") as (a, b):
        s = await _team_with_member(a, b)
        await sql(directory, a, a.services.settings.DATABASE_URL,
                  "UPDATE {members} SET status = 'suspended' WHERE tenant_id = $1"
                  " AND user_id = $2", s["team"], s["bob_id"])
        svc = a.services
        await svc.cache.invalidate(s["bob_id"])  # a miss, whether or not the notice came yet
        before = await _directory_state(directory, a)
        async with _writes_traced(directory, a) as writes:
            entry = await svc.validator.validate(s["bob_id"])
        assert (entry.is_valid, entry.tenant_id) == (True, s["bob_personal"])
        assert entry.workspace_moved and entry.stored_tenant_id == s["team"]
        assert writes == [] and await _directory_state(directory, a) == before

        lost = a.counters()["workspaceAccessLost"]
        user = await svc.authenticate(Credentials(s["bob"], svc.tokens, False, None))
        assert isinstance(user, SessionUser) and user.tenant_id == s["bob_personal"]
        assert user.renewal is not None and user.renewal.moved_to == s["bob_personal"]
        _, (_, _, contexts, preferences) = await _directory_state(directory, a)
        assert {(str(r[0]), str(r[1])) for r in contexts} >= {(s["bob_id"], s["bob_personal"])}
        assert (s["bob_id"], s["bob_personal"]) in {(str(r[0]), str(r[1])) for r in preferences}
        assert a.counters()["workspaceAccessLost"] == lost + 1

        # A user who never had a workspace: refused by validation, nothing made; the step
        # makes the personal one and the same request is served in it.
        carol = await a.add_user(f"carol-{uuid.uuid4().hex[:8]}@example.com")
        token, _ = svc.tokens.issue(sub=carol, email="carol@example.com", tenant="", role=None)
        before = await _directory_state(directory, a)
        async with _writes_traced(directory, a) as writes:
            entry = await svc.validator.validate(carol)
        assert (entry.is_valid, entry.reason, entry.workspace_moved) == (
            False, "no_workspace", False)
        assert writes == [] and await _directory_state(directory, a) == before
        user = await svc.authenticate(Credentials(token, svc.tokens, False, None))
        assert isinstance(user, SessionUser) and user.tenant_name == "Personal Workspace"
        (_, (tenants, _, _, _)) = await _directory_state(directory, a)
        assert len(tenants) == len(before[1][0]) + 1


@pytest.mark.parametrize("directory", ["sqlite", "postgres"])
async def test_two_instances_provisioning_one_user_at_once_make_one_workspace(pair, directory):
    """A session whose user never had a workspace reaches two instances at once (no shared
    cache, so no Redis lock between them): both serve it, in one personal workspace."""
    import asyncio

    from regcopilot.auth.authenticate import Credentials
    from regcopilot.auth.identity import SessionUser

    async with pair(directory, "memory") as (a, b):
        user_id = await a.add_user(f"twice-{uuid.uuid4().hex[:8]}@example.com")
        token, _ = a.services.tokens.issue(sub=user_id, email="twice@example.com", tenant="",
                                           role=None)
        users = await asyncio.gather(*(
            app.services.authenticate(Credentials(token, app.services.tokens, False, None))
            for app in (a, b)))
        assert all(isinstance(u, SessionUser) for u in users), users
        assert len({u.tenant_id for u in users if isinstance(u, SessionUser)}) == 1
        (_, (tenants, members, _, _)) = await _directory_state(directory, a)
        owned = [t for t in tenants if user_id in map(str, t)]  # its owner_id column
        assert len(owned) == 1 and len(members) == 1, (tenants, members)
