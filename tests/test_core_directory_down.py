"""A user directory that stops answering gives 503 with Retry-After — never 401, nothing cached,
nobody logged out — and is used again as soon as it answers. Changes made in plain SQL lock
the user out too."""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support import COOKIE, TcpProxy, eventually


def through(proxy: TcpProxy, pg_url: str) -> str:
    """The same database as pg_url, reached through the proxy."""
    parts = urlsplit(pg_url)
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}127.0.0.1:{proxy.port}{parts.path}"


async def as_user(app, cookie: str, path: str = "/api/me"):
    app.client.cookies.clear()
    app.client.cookies.set(COOKIE, cookie)
    return await app.client.get(path)


async def login_cookie(app, email: str) -> str:
    app.client.cookies.clear()
    r = await app.login(email)
    assert r.status_code == 200, r.text
    return app.client.cookies.get(COOKIE)


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_frozen_directory_gives_503_never_401(instance, pg_url, cache):
    proxy = await TcpProxy(urlsplit(pg_url).port or 5432).start()
    try:
        async with instance(
            "postgres", cache, DATABASE_URL=through(proxy, pg_url), DATABASE_TIMEOUT_SECONDS=0.5
        ) as app:
            alice = await app.add_user("alice@example.com")
            bob = await app.add_user("bob@example.com")
            await app.add_user("carol@example.com")
            alice_cookie = await login_cookie(app, "alice@example.com")
            bob_cookie = await login_cookie(app, "bob@example.com")
            assert (await as_user(app, alice_cookie)).status_code == 200  # cached

            proxy.frozen = True

            r = await as_user(app, bob_cookie)
            assert r.status_code == 503, r.text
            assert r.headers.get("retry-after")
            assert "set-cookie" not in r.headers, "the session is kept"
            assert app.services.cache.peek(bob) is None, "nothing cached"
            # The page route answers 503 too, not a redirect to /login.
            r = await as_user(app, bob_cookie, "/")
            assert r.status_code == 503 and "set-cookie" not in r.headers
            # /api/auth/session does not pretend the user is signed out.
            r = await as_user(app, bob_cookie, "/api/auth/session")
            assert r.status_code == 503 and "set-cookie" not in r.headers

            for _ in range(3):
                assert (await as_user(app, alice_cookie)).status_code == 200

            r = await app.client.get("/api/ready")
            assert r.status_code == 503 and r.headers.get("retry-after")
            assert r.json()["status"] == "unavailable"

            app.client.cookies.clear()
            r = await app.login("carol@example.com")
            assert r.status_code == 503 and "set-cookie" not in r.headers

            proxy.frozen = False

            await eventually(lambda: _status(as_user(app, bob_cookie), 200), timeout=10,
                             interval=0.1)
            assert (await app.client.get("/api/ready")).status_code == 200
            assert (await as_user(app, alice_cookie)).status_code == 200
            assert (await login_cookie(app, "carol@example.com"))
            assert alice
    finally:
        await proxy.stop()


async def test_dropped_connections_are_replaced_without_errors(instance, pg_url):
    """PostgreSQL restarted (every connection cut): no request fails, and the change feed
    comes back so a change made in plain SQL afterwards is still heard."""
    proxy = await TcpProxy(urlsplit(pg_url).port or 5432).start()
    try:
        async with instance(
            "postgres", "memory", DATABASE_URL=through(proxy, pg_url), DATABASE_TIMEOUT_SECONDS=1
        ) as app:
            alice = await app.add_user("alice@example.com")
            await app.add_user("bob@example.com")
            alice_cookie = await login_cookie(app, "alice@example.com")
            bob_cookie = await login_cookie(app, "bob@example.com")
            assert (await as_user(app, alice_cookie)).status_code == 200

            proxy.cut()
            r = await as_user(app, bob_cookie)  # a miss: needs a fresh connection
            assert r.status_code == 200, r.text

            async def feed_back() -> bool:
                return (await app.client.get("/api/ready")).json()["invalidationFeed"] == (
                    "connected")

            await eventually(feed_back, timeout=10, interval=0.1)
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute("UPDATE auth.users SET deleted_at = now() WHERE id = $1",
                                   alice)
            finally:
                await conn.close()
            r = await eventually(lambda: _refused(as_user(app, alice_cookie)), timeout=5,
                                 interval=0.05)
            assert r.json()["error"] == "account deleted"
    finally:
        await proxy.stop()


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_soft_delete_in_plain_sql_postgres(instance, pg_url, cache):
    async with instance("postgres", cache) as app:
        user_id = await app.add_user("alice@example.com")
        cookie = await login_cookie(app, "alice@example.com")
        assert (await as_user(app, cookie)).status_code == 200
        assert (await as_user(app, cookie)).status_code == 200  # now a cache hit

        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("UPDATE auth.users SET deleted_at = now() WHERE id = $1", user_id)
        finally:
            await conn.close()

        r = await eventually(lambda: _refused(as_user(app, cookie)), timeout=5, interval=0.05)
        assert r.json()["error"] == "account deleted"
        assert f"{COOKIE}=;" in r.headers["set-cookie"]
        assert app.counters()["deletedDetected"] == 1


async def test_soft_delete_in_plain_sql_sqlite(instance, tmp_path):
    async with instance("sqlite", "memory") as app:
        user_id = await app.add_user("alice@example.com")
        cookie = await login_cookie(app, "alice@example.com")
        assert (await as_user(app, cookie)).status_code == 200

        db = sqlite3.connect(tmp_path / "users.db")
        try:
            db.execute(
                "UPDATE auth_users SET deleted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                "WHERE id = ?", (user_id,),
            )
            db.commit()
        finally:
            db.close()

        r = await eventually(lambda: _refused(as_user(app, cookie)), timeout=5, interval=0.05)
        assert r.json()["error"] == "account deleted"


async def _status(response, expected: int) -> bool:
    return (await response).status_code == expected


async def _refused(response):
    r = await response
    return r if r.status_code == 401 else None
