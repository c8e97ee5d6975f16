"""The near cache in front of Redis: warm hits cost no round trip, a dead lock holder does not
stall anyone, and a dropped invalidation feed shortens what the near tier may keep."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from regcopilot.cache.tiers import NEAR_TTL_UNTRUSTED
from regcopilot.metrics.auth_metrics import FLUSH_SECONDS
from tests.support import RedisServer, eventually


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.stop()


async def _commands(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def test_warm_near_hit_makes_no_redis_round_trip(instance, own_redis):
    async with instance("postgres", own_redis.url) as app:
        await app.add_user("near@example.com")
        assert (await app.login("near@example.com")).status_code == 200
        await eventually(lambda: app.services.bus.connected, timeout=5)
        assert (await app.client.get("/api/me")).status_code == 200  # fills both tiers
        client = aioredis.from_url(own_redis.url, decode_responses=True)
        try:
            before = await _commands(client)
            started = time.monotonic()
            for _ in range(200):
                assert (await app.client.get("/api/me")).status_code == 200
            after = await _commands(client)
        finally:
            await client.aclose()
        elapsed = time.monotonic() - started
        per_request = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        per_request.pop("info", None)
        # Only background work may touch Redis: a metrics flush a second, the bus's ping.
        background_budget = 12 * (int(elapsed / FLUSH_SECONDS) + 2)
        assert per_request.get("get", 0) == 0, per_request
        assert sum(per_request.values()) <= background_budget, per_request


async def test_dead_lock_holder_does_not_block_validation(instance, shared_redis, redis_prefix):
    async with instance("sqlite", "redis") as app:
        user_id = await app.add_user("lock@example.com")
        assert (await app.login("lock@example.com")).status_code == 200
        # A holder that died: the lock key exists and nobody will fill the entry or release.
        await shared_redis.set(f"{redis_prefix}lock:{user_id}", "dead-holder", px=60_000)
        r = await app.client.get("/api/me")
        assert r.status_code == 200
        assert app.counters()["databaseQueries"] == 1


async def test_dropped_feed_shortens_near_lifetime_and_shows_in_metrics(instance):
    async with instance("postgres", "redis") as app:
        await app.add_user("feed@example.com")
        assert (await app.login("feed@example.com")).status_code == 200
        await eventually(lambda: app.services.feed.complete, timeout=5)
        assert (await app.client.get("/api/me")).status_code == 200
        cache = app.services.cache
        key = app.services.tokens.decode(app.client.cookies["regcopilot.session-token"]).sub
        assert cache.near.remaining(key) > NEAR_TTL_UNTRUSTED

        app.services.feed.lost("test")  # what the listener reports when its line drops
        assert cache.near.remaining(key) == 0, "near tier emptied when the feed drops"
        assert (await app.client.get("/api/me")).status_code == 200
        assert 0 < cache.near.remaining(key) <= NEAR_TTL_UNTRUSTED
        body = (await app.client.get(
            "/api/observability", headers={"Authorization": "Bearer monitor-token"})).json()
        assert body["invalidation"]["feed"] == "disconnected"
        assert body["invalidation"]["nearCacheTrusted"] is False


async def test_listener_reconnects_after_its_connection_is_killed(instance, pg_url):
    import asyncpg

    async with instance("postgres", "redis") as app:
        user_id = await app.add_user("relisten@example.com")
        assert (await app.login("relisten@example.com")).status_code == 200
        assert (await app.client.get("/api/me")).status_code == 200
        await eventually(lambda: app.services.feed.complete, timeout=5)
        conn = await asyncpg.connect(pg_url)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'regcopilot-listener'"
            )
        finally:
            await conn.close()
        assert killed >= 1
        # Dropping the line empties the near tier; then the watcher reconnects by itself.
        await eventually(lambda: app.services.feed.complete and not app.services.cache.near
                         .remaining(user_id), timeout=10)
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(
                "UPDATE auth.users SET banned_until = now() + interval '1 hour' WHERE id = $1",
                user_id,
            )
        finally:
            await conn.close()

        async def refused() -> bool:
            return (await app.client.get("/api/me")).status_code == 401

        await eventually(refused, timeout=5)


async def test_reused_answers_end_on_a_ban_after_redis_restarted_empty_and_the_feed_cut(
        instance, own_redis, pg_url):
    """Lockout with reused answers (each token judged once, then answered from its kept
    answer) through the faults in turn: Redis killed and started again empty on the same
    port, then the change feed's connection cut. A ban written in plain SQL afterwards still
    refuses, within the feed's bound, both a session from this host's sign-in and one signed
    by a host whose clock runs 5 s ahead."""
    import asyncpg
    import jwt

    from tests.conftest import TEST_SECRET
    from tests.support import COOKIE
    from tests.test_security_tokens import claims

    server = own_redis
    async with instance("postgres", server.url) as app:
        user_id = await app.add_user("faults@example.com")
        assert (await app.login("faults@example.com")).status_code == 200
        signed_in = app.client.cookies[COOKIE]
        app.client.cookies.clear()
        now = int(time.time())
        ahead = jwt.encode(claims(user_id, email="faults@example.com", iat=now + 5,
                                  exp=now + 5 + 3600), TEST_SECRET)

        async def statuses() -> list[int]:
            return [(await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={token}"}))
                    .status_code for token in (signed_in, ahead) for _ in range(3)]

        await eventually(lambda: app.services.feed.complete, timeout=5)
        assert await statuses() == [200] * 6

        server.kill()
        server.start()  # the same port, no persistence: empty
        assert await statuses() == [200] * 6

        conn = await asyncpg.connect(pg_url)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'regcopilot-listener'")
            assert killed >= 1
            await eventually(lambda: app.services.feed.complete, timeout=10)
            assert await statuses() == [200] * 6
            await conn.execute(
                "UPDATE auth.users SET banned_until = now() + interval '1 hour' WHERE id = $1",
                user_id)
        finally:
            await conn.close()

        async def all_refused() -> bool:
            return set(await statuses()) == {401}

        await eventually(all_refused, timeout=5)
        assert set(await statuses()) == {401}  # and it stays so
