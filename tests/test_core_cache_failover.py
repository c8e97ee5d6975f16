"""Redis lost, hung, or never there: requests go on with the in-memory tier, the backend says
so, and Redis is used again as soon as it answers — without restarting the app."""

from __future__ import annotations

import time

import redis

from tests.support import RedisServer, eventually, free_port, validation_key

BEARER = {"Authorization": "Bearer monitor-token"}
DOWN = ("redis-disconnected", "redis-error")



async def backend(app) -> str:
    r = await app.client.get("/api/observability", headers=BEARER)
    assert r.status_code == 200, r.text
    return r.json()["validationCache"]["backend"]


async def as_user(app, cookie: str, path: str = "/api/me"):
    app.client.cookies.clear()
    app.client.cookies.set("regcopilot.session-token", cookie)
    return await app.client.get(path)


async def login_cookie(app, email: str) -> str:
    app.client.cookies.clear()
    r = await app.login(email)
    assert r.status_code == 200, r.text
    cookie = app.client.cookies.get("regcopilot.session-token")
    assert cookie
    return cookie


def validation_keys(server: RedisServer, prefix: str) -> list[str]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return list(client.scan_iter(match=validation_key(prefix, "*")))
    finally:
        client.close()


async def test_redis_lost_mid_run_and_back_on_the_same_port(instance, redis_prefix):
    server = RedisServer().start()
    try:
        async with instance("sqlite", server.url) as app:
            assert await backend(app) == "redis"
            alice = await app.add_user("alice@example.com")
            bob = await app.add_user("bob@example.com")
            carol = await app.add_user("carol@example.com")
            alice_cookie = await login_cookie(app, "alice@example.com")
            assert (await as_user(app, alice_cookie)).status_code == 200
            assert validation_keys(server, redis_prefix) == [validation_key(redis_prefix, alice)]

            server.kill()

            # Cached and uncached users alike keep getting in; nothing answers 5xx.
            bob_cookie = await login_cookie(app, "bob@example.com")
            for _ in range(10):
                for cookie in (alice_cookie, bob_cookie):
                    r = await as_user(app, cookie)
                    assert r.status_code == 200, r.text
            await eventually(lambda: _in(backend(app), DOWN), timeout=5, interval=0.1)
            ready = (await app.client.get("/api/ready")).json()
            assert ready["cache"]["backend"] in DOWN and ready["cache"]["lastError"]

            restarted = RedisServer(port=server.port).start()
            server = restarted
            await eventually(lambda: _in(backend(app), ("redis",)), timeout=10, interval=0.1)

            # Redis is the shared tier again: a new user's result is written there.
            carol_cookie = await login_cookie(app, "carol@example.com")
            assert (await as_user(app, carol_cookie)).status_code == 200
            carol_key = validation_key(redis_prefix, carol)
            await eventually(lambda: carol_key in validation_keys(server, redis_prefix), timeout=5)
            assert (await as_user(app, alice_cookie)).status_code == 200
            assert bob
    finally:
        server.stop()


async def test_redis_hung_requests_do_not_wait_on_it(instance):
    server = RedisServer().start()
    try:
        async with instance("sqlite", server.url) as app:
            await app.add_user("alice@example.com")
            await app.add_user("bob@example.com")
            alice_cookie = await login_cookie(app, "alice@example.com")
            assert (await as_user(app, alice_cookie)).status_code == 200

            server.pause()
            bob_cookie = await login_cookie(app, "bob@example.com")
            worst = 0.0
            for _ in range(5):
                for cookie in (alice_cookie, bob_cookie):
                    started = time.monotonic()
                    r = await as_user(app, cookie)
                    worst = max(worst, time.monotonic() - started)
                    assert r.status_code == 200, r.text
            # A ceiling far above the 50 ms timeouts, far below a retry loop's seconds.
            assert worst < 2.0, worst
            await eventually(lambda: _in(backend(app), DOWN), timeout=5, interval=0.1)

            server.resume()
            await eventually(lambda: _in(backend(app), ("redis",)), timeout=10, interval=0.1)
            assert (await as_user(app, bob_cookie)).status_code == 200
    finally:
        server.stop()


async def test_redis_unreachable_at_start(instance, caplog):
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    async with instance("sqlite", url) as app:
        assert time.monotonic() - started < 5
        assert await backend(app) in DOWN
        await app.add_user("alice@example.com")
        cookie = await login_cookie(app, "alice@example.com")
        for _ in range(3):
            assert (await as_user(app, cookie)).status_code == 200
        body = (await app.client.get("/api/observability", headers=BEARER)).json()
        assert body["validationCache"]["backend"] in DOWN
        assert body["validationCache"]["maxSize"] == 10_000  # the memory tier serves
        assert body["authentication"]["validations"]["cacheHits"] == 2
    assert "Redis cache connected successfully" not in caplog.text


async def test_redis_started_after_the_app_is_picked_up(instance):
    port = free_port()
    async with instance("sqlite", f"redis://127.0.0.1:{port}/0") as app:
        assert await backend(app) in DOWN
        server = RedisServer(port=port).start()
        try:
            await eventually(lambda: _in(backend(app), ("redis",)), timeout=10, interval=0.1)
        finally:
            server.stop()


async def _in(value, options) -> bool:
    return (await value) in options


async def test_invalidation_missed_while_redis_hung_is_replayed(instance, redis_prefix):
    """A ban made while Redis cannot be reached must not leave the old "valid" entry there."""
    server = RedisServer().start()
    try:
        async with instance("sqlite", server.url) as app:
            await app.add_user("admin@example.com", admin=True)
            alice = await app.add_user("alice@example.com")
            admin_cookie = await login_cookie(app, "admin@example.com")
            alice_cookie = await login_cookie(app, "alice@example.com")
            assert (await as_user(app, alice_cookie)).status_code == 200
            key = validation_key(redis_prefix, alice)
            assert validation_keys(server, redis_prefix).count(key) == 1

            server.pause()
            app.client.cookies.clear()
            app.client.cookies.set("regcopilot.session-token", admin_cookie)
            r = await app.client.post(f"/api/admin/users/{alice}/ban")
            assert r.status_code == 200, r.text
            assert (await as_user(app, alice_cookie)).status_code == 401

            server.resume()
            client = redis.Redis.from_url(server.url, decode_responses=True)
            try:
                def stale_gone() -> bool:
                    raw = client.get(key)
                    return raw is None or '"isValid":false' in raw

                await eventually(stale_gone, timeout=10, interval=0.1)
            finally:
                client.close()
            assert (await as_user(app, alice_cookie)).status_code == 401
    finally:
        server.stop()


async def test_logout_while_redis_is_down_still_ends_the_session(instance):
    server = RedisServer().start()
    try:
        async with instance("sqlite", server.url) as app:
            await app.add_user("alice@example.com")
            cookie = await login_cookie(app, "alice@example.com")
            assert (await as_user(app, cookie)).status_code == 200
            server.kill()
            app.client.cookies.set("regcopilot.session-token", cookie)
            assert (await app.client.post("/api/auth/logout")).status_code == 200
            assert (await as_user(app, cookie)).status_code == 401
    finally:
        server.stop()


async def test_redis_with_a_password(instance):
    server = RedisServer(password="s3cret-pass").start()
    try:
        async with instance("sqlite", server.url) as app:
            assert await backend(app) == "redis"
        wrong = server.url.replace("s3cret-pass", "wrong-pass")
        async with instance("sqlite", wrong) as app:
            assert await backend(app) == "redis-error"
            ready = (await app.client.get("/api/ready")).json()
            assert ready["cache"]["backend"] == "redis-error" and ready["cache"]["lastError"]
            await app.add_user("alice@example.com")
            cookie = await login_cookie(app, "alice@example.com")
            assert (await as_user(app, cookie)).status_code == 200
    finally:
        server.stop()
