"""Workspaces across three real server processes (one PostgreSQL, one Redis): a member who
loses a workspace - through the API, the CLI's tables or plain SQL - is served in their
personal workspace by every instance; with none left, refused by every instance."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.cluster import (
    ServerProcess,
    add_user,
    flushed_validations,
    login,
)
from tests.support import COOKIE, eventually

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.slow]


async def call(url: str, method: str, path: str, cookie: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as client:
        return await client.request(method, path, headers={"Cookie": f"{COOKIE}={cookie}"},
                                    **kw)


async def setup_member(servers: list[ServerProcess], pg_url: str) -> dict[str, Any]:
    a, b, c = servers
    tag = uuid.uuid4().hex[:8]
    await add_user(pg_url, f"owner-{tag}@example.com")
    bob_id = await add_user(pg_url, f"member-{tag}@example.com")
    owner = await login(a.url, f"owner-{tag}@example.com")
    bob = await login(b.url, f"member-{tag}@example.com")
    personal = (await call(c.url, "GET", "/api/me", bob)).json()["tenantId"]
    r = await call(a.url, "POST", "/api/workspaces", owner, json={"name": "Cluster Team"})
    team = r.json()["id"]
    r = await call(a.url, "POST", f"/api/workspaces/{team}/members", owner,
                   json={"email": f"member-{tag}@example.com"})
    assert r.status_code == 201, r.text
    r = await call(b.url, "POST", "/api/workspaces/switch", bob, json={"tenantId": team})
    assert r.status_code == 200, r.text
    bob = r.cookies[COOKIE]
    for s in servers:  # served in the team everywhere, at once, and cached there
        for _ in range(2):
            assert (await call(s.url, "GET", "/api/me", bob)).json()["tenantId"] == team
    return {"owner": owner, "bob": bob, "bob_id": bob_id, "team": team, "personal": personal}


async def all_serve(servers: list[ServerProcess], cookie: str, tenant: str) -> bool:
    found = await asyncio.gather(*(call(s.url, "GET", "/api/me", cookie) for s in servers))
    return all(r.status_code == 200 and r.json()["tenantId"] == tenant for r in found)


async def all_refuse(servers: list[ServerProcess], cookie: str) -> bool:
    found = await asyncio.gather(*(call(s.url, "GET", "/api/me", cookie) for s in servers))
    return all(r.status_code == 401 and r.json()["error"] == "no accessible workspace"
               for r in found)


async def run_sql(pg_url: str, statement: str, *ids: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(statement, *(uuid.UUID(i) for i in ids))
    finally:
        await conn.close()


@pytest.mark.parametrize("how", ["api", "sql"])
async def test_removed_member_is_served_in_personal_workspace_everywhere(servers, pg_url, how):
    s = await setup_member(servers, pg_url)
    if how == "api":
        r = await call(servers[0].url, "DELETE",
                       f"/api/workspaces/{s['team']}/members/{s['bob_id']}", s["owner"])
        assert r.status_code == 200, r.text
    else:
        await run_sql(pg_url, "DELETE FROM copilot_core.tenant_memberships"
                      " WHERE tenant_id = $1 AND user_id = $2", s["team"], s["bob_id"])
    await eventually(lambda: all_serve(servers, s["bob"], s["personal"]), timeout=5)
    conn = await asyncpg.connect(pg_url)
    try:
        stored = await conn.fetchval(
            "SELECT current_tenant_id FROM copilot_core.user_tenant_contexts WHERE user_id = $1",
            uuid.UUID(s["bob_id"]))
    finally:
        await conn.close()
    assert str(stored) == s["personal"]

    await run_sql(pg_url, "UPDATE copilot_core.tenants SET deleted_at = now() WHERE id = $1",
                  s["personal"])
    await eventually(lambda: all_refuse(servers, s["bob"]), timeout=5)


async def test_role_change_by_sql_is_seen_everywhere(servers, pg_url):
    s = await setup_member(servers, pg_url)
    await run_sql(pg_url, "UPDATE copilot_core.tenant_memberships SET role = 'viewer'"
                  " WHERE tenant_id = $1 AND user_id = $2", s["team"], s["bob_id"])

    async def viewer_everywhere() -> bool:
        found = await asyncio.gather(
            *(call(x.url, "GET", "/api/me", s["bob"]) for x in servers))
        return all(r.json()["tenantRole"] == "viewer" for r in found)

    await eventually(viewer_everywhere, timeout=5)


async def test_stampede_in_a_team_workspace_is_one_directory_query(servers, pg_url):
    s = await setup_member(servers, pg_url)
    # A member made by plain SQL before their first sign-in (as an upstream database has
    # them): no personal workspace is made, and the session starts in the team.
    email = f"sql-{uuid.uuid4().hex[:8]}@example.com"
    carol = await add_user(pg_url, email)
    await run_sql(pg_url, "INSERT INTO copilot_core.tenant_memberships"
                  " (tenant_id, user_id, role, status, joined_at)"
                  " VALUES ($1, $2, 'member', 'active', now())", s["team"], carol)
    await run_sql(pg_url, "INSERT INTO copilot_core.user_tenant_contexts"
                  " (user_id, current_tenant_id) VALUES ($1, $2)", carol, s["team"])
    cookie = await login(servers[1].url, email)
    before = await flushed_validations(servers)
    clients = [httpx.AsyncClient(base_url=x.url, headers={"Cookie": f"{COOKIE}={cookie}"})
               for x in servers]
    try:
        found = await asyncio.gather(*(clients[i % 3].get("/api/me") for i in range(90)))
    finally:
        for client in clients:
            await client.aclose()
    assert {r.json()["tenantId"] for r in found} == {s["team"]}
    after = await flushed_validations(servers)
    assert after["databaseQueries"] - before["databaseQueries"] == 1
    listed = (await call(servers[0].url, "GET", "/api/workspaces", cookie)).json()
    assert [w["type"] for w in listed["workspaces"]] == ["team"]
