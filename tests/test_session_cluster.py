"""Three real server processes (one PostgreSQL, one Redis): "sign out everywhere" and a
revocation written by plain SQL on the session records are refused by every instance within a
second; an instance started afterwards refuses them from its first request."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest

from tests.cluster import ServerProcess, add_user, login, me
from tests.support import COOKIE, eventually

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.slow]


async def new_user(pg_url: str) -> str:
    email = f"s-{uuid.uuid4().hex[:10]}@example.com"
    await add_user(pg_url, email)
    return email


async def statuses(servers: list[ServerProcess], cookie: str) -> list[int]:
    return list(await asyncio.gather(*(me(s.url, cookie) for s in servers)))


async def refused_everywhere(servers: list[ServerProcess], cookies: list[str]) -> bool:
    for cookie in cookies:
        if await statuses(servers, cookie) != [401] * len(servers):
            return False
    return True


async def test_sign_out_everywhere_reaches_all_instances_within_a_second(servers, pg_url):
    a, b, c = servers
    email = await new_user(pg_url)
    caller = await login(a.url, email)
    others = [await login(b.url, email), await login(c.url, email)]
    for cookie in [caller, *others]:  # warm every instance's caches
        assert await statuses(servers, cookie) == [200, 200, 200]

    async with httpx.AsyncClient(base_url=a.url, cookies={COOKIE: caller}) as client:
        r = await client.post("/api/auth/sessions/revoke-all", json={"keepCurrent": True})
    assert r.status_code == 200 and r.json()["revoked"] == 2, r.text
    done = time.monotonic()
    await eventually(lambda: refused_everywhere(servers, others), timeout=1.0)
    lag = time.monotonic() - done
    assert await statuses(servers, caller) == [200, 200, 200]
    print(f"revoke-all refused on 3 instances after {lag * 1000:.0f} ms")


async def test_revocation_by_sql_reaches_all_instances_within_a_second(servers, pg_url,
                                                                       tmp_path):
    email = await new_user(pg_url)
    ended = await login(servers[0].url, email)
    alive = await login(servers[1].url, email)
    for cookie in (ended, alive):
        assert await statuses(servers, cookie) == [200, 200, 200]
    async with httpx.AsyncClient(base_url=servers[0].url, cookies={COOKIE: ended}) as client:
        rows = (await client.get("/api/auth/sessions")).json()["sessions"]
    jti = next(s["id"] for s in rows if s["current"])

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "UPDATE public.regcopilot_sessions SET revoked_at = now() WHERE id = $1", jti)
    finally:
        await conn.close()
    await eventually(lambda: refused_everywhere(servers, [ended]), timeout=1.0)
    assert await statuses(servers, alive) == [200, 200, 200]

    # An instance started afterwards loads the revoked set before serving.
    late = ServerProcess("late", servers[0].env, tmp_path).start()
    try:
        assert await me(late.url, ended) == 401
        assert await me(late.url, alive) == 200
    finally:
        late.stop()
