"""Three real server processes sharing one Redis and one PostgreSQL (issue: multi-instance)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.cluster import (
    MONITOR_TOKEN,
    ServerProcess,
    add_user,
    flushed_validations,
    login,
    me,
)
from tests.support import COOKIE, eventually

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.slow]

BEARER = {"Authorization": f"Bearer {MONITOR_TOKEN}"}










async def report(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/api/observability", headers=BEARER)
        assert r.status_code == 200, r.text
        return r.json()




async def all_refuse(servers: list[ServerProcess], cookie: str) -> bool:
    codes = await asyncio.gather(*(me(s.url, cookie) for s in servers))
    return all(code == 401 for code in codes)


@pytest.fixture
async def users(pg_url: str) -> AsyncIterator[Any]:
    async def make(admin: bool = False) -> tuple[str, str]:
        email = f"u-{uuid.uuid4().hex[:10]}@example.com"
        return await add_user(pg_url, email, admin=admin), email

    yield make


async def test_one_cookie_for_all_and_logout_everywhere(servers, users):
    _, email = await users()
    a, b, c = servers
    cookie = await login(a.url, email)
    assert [await me(s.url, cookie) for s in servers] == [200, 200, 200]
    async with httpx.AsyncClient(base_url=b.url, cookies={COOKIE: cookie}) as client:
        assert (await client.post("/api/auth/logout")).status_code == 200
    await eventually(lambda: all_refuse([a, c], cookie), timeout=5)


async def test_ban_through_a_is_refused_on_b_and_c(servers, users):
    a, b, c = servers
    _, admin_email = await users(admin=True)
    user_id, email = await users()
    admin_cookie = await login(a.url, admin_email)
    cookie = await login(b.url, email)
    for s in servers:  # warm every near cache and Redis
        assert await me(s.url, cookie) == 200
        assert await me(s.url, cookie) == 200
    async with httpx.AsyncClient(base_url=a.url, cookies={COOKIE: admin_cookie}) as client:
        r = await client.post(f"/api/admin/users/{user_id}/ban", json={})
        assert r.status_code == 200, r.text
    await eventually(lambda: all_refuse([b, c], cookie), timeout=5)
    assert await me(a.url, cookie) == 401


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE auth.users SET banned_until = now() + interval '1 hour' WHERE id = $1",
        "UPDATE auth.users SET deleted_at = now() WHERE id = $1",
        "DELETE FROM auth.users WHERE id = $1",
    ],
)
async def test_plain_sql_change_is_refused_everywhere(servers, users, pg_url, sql):
    user_id, email = await users()
    cookie = await login(servers[0].url, email)
    for s in servers:
        assert await me(s.url, cookie) == 200
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(sql, uuid.UUID(user_id))
    finally:
        await conn.close()
    await eventually(lambda: all_refuse(servers, cookie), timeout=5)


async def test_stampede_makes_one_directory_query(servers, users):
    _, email = await users()
    cookie = await login(servers[0].url, email)
    before = await flushed_validations(servers)
    clients = [httpx.AsyncClient(base_url=s.url, cookies={COOKIE: cookie}) for s in servers]
    try:
        codes = await asyncio.gather(
            *(clients[i % 3].get("/api/me") for i in range(100))
        )
    finally:
        for client in clients:
            await client.aclose()
    assert [r.status_code for r in codes] == [200] * 100
    after = await flushed_validations(servers)
    assert after["total"] - before["total"] == 100
    assert after["databaseQueries"] - before["databaseQueries"] == 1


async def test_every_instance_reports_the_same_cluster_totals(servers, users):
    _, email = await users()
    cookie = await login(servers[2].url, email)
    for i in range(30):
        assert await me(servers[i % 3].url, cookie) == 200

    def shared(body: dict[str, Any]) -> Any:
        auth = body["authentication"]
        return (auth["validations"], auth["logins"]["total"], auth["users"],
                auth["costs"], body["validationCache"]["size"])

    async def agree() -> bool:
        bodies = await asyncio.gather(*(report(s.url) for s in servers))
        return all(shared(b) == shared(bodies[0]) for b in bodies)

    await eventually(agree, timeout=10, interval=0.3)
    body = await report(servers[0].url)
    assert body["authentication"]["scope"] == "cluster"
    assert body["validationCache"]["backend"] == "redis"
    assert body["validationCache"]["maxSize"] is None
    ids = {i["id"] for i in body["instances"] if i["status"] == "up"}
    assert len(ids) >= 3


async def test_killed_instance_rejoins_without_losing_cluster_counters(servers, users):
    a, b, _ = servers
    _, email = await users()
    cookie = await login(b.url, email)
    for _ in range(10):
        assert await me(b.url, cookie) == 200
    await eventually(
        lambda: _total_at_least(a.url, 0), timeout=5
    )
    before = (await report(a.url))["authentication"]["validations"]["total"]
    b.kill()
    b.start()
    after_restart = (await report(b.url))["authentication"]["validations"]["total"]
    assert after_restart >= before
    assert await me(b.url, cookie) == 200
    await eventually(lambda: _total_at_least(a.url, after_restart + 1), timeout=5)


async def _total_at_least(url: str, n: int) -> bool:
    return (await report(url))["authentication"]["validations"]["total"] >= n
