"""deploy/: the nginx config in front of three instances, and `serve --workers N`."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import asyncpg
import httpx
import pytest

from tests.cluster import PASSWORD, ServerProcess, add_user, cluster_env, reset_users, running
from tests.failover import NGINX, nginx_conf
from tests.support import COOKIE, eventually, free_port, port_open, wait_until

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.slow]


@pytest.fixture
def three(pg_url, redis_prefix, tmp_path):
    asyncio.run(reset_users(pg_url))
    env = cluster_env(pg_url, redis_prefix, tmp_path)
    with running(env, tmp_path, ("n1", "n2", "n3")) as procs:
        yield procs


async def test_nginx_config_balances_three_instances(three, pg_url, tmp_path):
    port = free_port()
    conf = nginx_conf(tmp_path, port, [p.port for p in three])
    check = subprocess.run([NGINX, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), timeout=10)
        email = f"lb-{uuid.uuid4().hex[:8]}@example.com"
        user_id = await add_user(pg_url, email)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            r = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            codes = [(await client.get("/api/me")).status_code for _ in range(30)]
            assert codes == [200] * 30
            conn = await asyncpg.connect(pg_url)
            await conn.execute("UPDATE auth.users SET deleted_at = now() WHERE id = $1",
                               uuid.UUID(user_id))
            await conn.close()

            async def refused() -> bool:
                got = [(await client.get("/api/me")).status_code for _ in range(6)]
                return got == [401] * 6 or (client.cookies.get(COOKIE) is None)

            await eventually(refused, timeout=5)
    finally:
        proc.terminate()
        proc.wait(10)


async def test_serve_workers_share_invalidations(pg_url, redis_prefix, tmp_path):
    await reset_users(pg_url)
    env = cluster_env(pg_url, redis_prefix, tmp_path)
    server = ServerProcess("workers", env, tmp_path, workers=2).start()
    try:
        email = f"w-{uuid.uuid4().hex[:8]}@example.com"
        user_id = await add_user(pg_url, email)
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            cookie = r.cookies[COOKIE]
        # Separate connections so both worker processes take requests and warm their caches.
        for _ in range(20):
            async with httpx.AsyncClient(base_url=server.url, cookies={COOKIE: cookie}) as c:
                assert (await c.get("/api/me")).status_code == 200
        conn = await asyncpg.connect(pg_url)
        await conn.execute(
            "UPDATE auth.users SET banned_until = now() + interval '1 day' WHERE id = $1",
            uuid.UUID(user_id),
        )
        await conn.close()

        async def all_refused() -> bool:
            for _ in range(20):
                async with httpx.AsyncClient(base_url=server.url, cookies={COOKIE: cookie}) as c:
                    if (await c.get("/api/me")).status_code != 401:
                        return False
            return True

        await eventually(all_refused, timeout=5)
    finally:
        server.stop()
