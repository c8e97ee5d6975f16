"""PostgreSQL lost under load: its connections killed (pg_terminate_backend), then the server
unreachable (a TcpProxy in front of it cuts every connection and hangs new ones).

Cached users keep working; a user whose validity is not cached gets 503 + Retry-After — never
401, never a cached "invalid"; once the database is back everything recovers, no restart.
"""

from __future__ import annotations

import json
import time

import asyncpg

from tests.load import Load, sign_in_users, stats
from tests.support import COOKIE, TcpProxy, eventually, validation_key

DB_TIMEOUT = 0.5


async def terminate_app_connections(pg_url: str) -> int:
    """Kill every other session on this test's own database (the app's pool and listener)."""
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return len(rows)
    finally:
        await conn.close()


async def test_postgres_lost_cached_users_stay_others_get_503(instance, pg_url, redis_prefix,
                                                              shared_redis):
    proxy = await TcpProxy(5432).start()
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert proxied != pg_url
    try:
        async with instance("postgres", "redis", DATABASE_URL=proxied,
                            DATABASE_TIMEOUT_SECONDS=DB_TIMEOUT) as app:
            cached = await sign_in_users(app, 6)
            for cookie in cached:  # their validity is now cached
                r = await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={cookie}"})
                assert r.status_code == 200
            await app.add_user("late@example.com")
            app.client.cookies.clear()
            assert (await app.login("late@example.com")).status_code == 200
            late = app.client.cookies.get(COOKIE)
            app.client.cookies.clear()
            late_id = app.services.tokens.decode(late).sub
            late_key = validation_key(redis_prefix, late_id)

            async def as_late():
                started = time.monotonic()
                r = await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={late}"})
                return r, (time.monotonic() - started) * 1000

            async with Load(app, cached, max_seconds=25) as load:
                await load.more(100)
                # 1. Connections killed under the app's feet.
                killed = await terminate_app_connections(pg_url)
                assert killed >= 1
                r, _ = await as_late()
                after_kill = r.status_code
                assert r.status_code in (200, 503), r.text
                if r.status_code == 200:  # the pool reconnected: forget it for phase 2
                    await app.services.cache.invalidate(late_id)

                # 2. The server unreachable: connections cut, new ones hang.
                outage_at = time.monotonic()
                proxy.frozen = True
                proxy.cut()
                late_ms = []
                for _ in range(4):
                    r, ms = await as_late()
                    late_ms.append(ms)
                    assert r.status_code == 503, (r.status_code, r.text)
                    assert r.headers["retry-after"].isdigit()
                    assert r.json()["error"]
                    assert COOKIE not in r.headers.get("set-cookie", "")  # still signed in
                r = await app.client.post("/api/auth/login", json={
                    "email": "late@example.com", "password": "correct horse battery"})
                assert r.status_code == 503 and r.headers["retry-after"].isdigit()
                ready = await app.client.get("/api/ready")
                assert ready.status_code == 503 and ready.json()["directory"] != "ok"
                # Nothing was cached as invalid, in either tier.
                assert await shared_redis.get(late_key) is None
                assert app.services.cache.peek(late_id) is None
                await load.more(200)
                outage_end = time.monotonic()

                # 3. Back: recovers on its own.
                proxy.frozen = False
                back_at = time.monotonic()

                async def late_ok() -> bool:
                    return (await as_late())[0].status_code == 200

                await eventually(late_ok, timeout=10, interval=0.1)
                recovery_s = time.monotonic() - back_at
                stored = json.loads(await shared_redis.get(late_key))
                assert stored["isValid"] is True
                await load.more(50)

        during = load.between(outage_at, outage_end)
        failed = [s for s in load.samples if s.status != 200]
        print(f"\npostgres outage: cached users {len(load.samples)} requests, {len(failed)} "
              f"failed, latency during outage {stats(during)}; uncached user 503 in "
              f"{[round(m) for m in late_ms]} ms; recovered {recovery_s:.2f} s after return; "
              f"right after pg_terminate_backend: {after_kill}")
        assert not failed, failed[:5]
        assert len(during) > 50
        assert max(late_ms) < DB_TIMEOUT * 1000 * 3 + 500
    finally:
        await proxy.stop()
