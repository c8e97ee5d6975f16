"""Revocations are durable: a logout survives restarting the app, restarting or emptying Redis,
and reaches an instance started afterwards; a revocation by plain SQL on the session records
is refused within a second; the warm path still asks neither the directory nor Redis."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from regcopilot.metrics.auth_metrics import FLUSH_SECONDS
from tests.conftest import serve
from tests.support import COOKIE, RedisServer, TcpProxy, eventually, status


async def two_sessions(app: Any, email: str) -> tuple[str, str]:
    """Sign the same user in twice: one session to end, one that must stay alive."""
    cookies = []
    for _ in range(2):
        app.client.cookies.clear()
        r = await app.login(email)
        assert r.status_code == 200, r.text
        cookies.append(r.cookies[COOKIE])
    app.client.cookies.clear()
    return cookies[0], cookies[1]


async def logout(app: Any, cookie: str) -> None:
    app.client.cookies.clear()
    app.client.cookies.set(COOKIE, cookie)
    assert (await app.client.post("/api/auth/logout")).status_code == 200
    app.client.cookies.clear()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()  # no RDB, no AOF: a restart forgets everything
    yield server
    server.stop()


@pytest.mark.parametrize("directory", ["sqlite", "postgres", "gotrue"])
async def test_logout_survives_an_app_restart(instance, directory):
    """The embedded default (SQLite, no Redis) and PostgreSQL: the revocation is in the table."""
    async with instance(directory, "memory") as first:
        await first.add_user("restart@example.com")
        ended, alive = await two_sessions(first, "restart@example.com")
        assert await status(first, ended) == 200
        await logout(first, ended)
        assert await status(first, ended) == 401
    async with instance(directory, "memory") as second:
        assert await status(second, ended) == 401
        assert await status(second, alive) == 200  # the restart itself ended nothing


@pytest.mark.parametrize("directory", ["sqlite", "postgres", "gotrue"])
@pytest.mark.parametrize("emptied", ["restart", "flushall"])
async def test_logout_survives_redis_forgetting(settings_for, pg_clean, own_redis, directory,
                                                emptied):
    settings = settings_for(directory, own_redis.url)
    async with serve(settings) as running:
        await running.add_user("forget@example.com")
        ended, alive = await two_sessions(running, "forget@example.com")
        await logout(running, ended)
        assert await status(running, ended) == 401
        bus = running.services.bus
        connects = bus.connects
        if emptied == "restart":
            own_redis.kill()
            own_redis.start()
            await eventually(lambda: bus.connected and bus.connects > connects, timeout=10)
        else:
            client = aioredis.from_url(own_redis.url)
            try:
                await client.flushall()  # this test's own redis-server
            finally:
                await client.aclose()
        assert await status(running, ended) == 401
        assert await status(running, alive) == 200
        async with serve(settings) as later:
            assert await status(later, ended) == 401
            assert await status(later, alive) == 200


async def test_logout_of_a_session_issued_without_a_record(instance):
    """A token minted before session records existed: logging out writes a revoked record."""
    async with instance("sqlite", "memory") as first:
        user_id = await first.add_user("old@example.com")
        token, _ = first.services.tokens.issue(sub=user_id, email="old@example.com",
                                               tenant="default", role=None)
        assert await status(first, token) == 200
        await logout(first, token)
    async with instance("sqlite", "memory") as second:
        assert await status(second, token) == 401


def _sqlite_revoke(path: str, session_id: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE auth_sessions SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') "
                   "WHERE id = ?", (session_id,))
        db.commit()


@pytest.mark.parametrize("directory", ["sqlite", "postgres"])
async def test_revocation_by_plain_sql_is_refused_within_a_second(instance, pg_url, tmp_path,
                                                                  directory):
    async with instance(directory, "memory") as app:
        await app.add_user("sql@example.com")
        ended, alive = await two_sessions(app, "sql@example.com")
        for cookie in (ended, alive):  # warm: decoded token and validation cached
            assert await status(app, cookie) == 200
        jti = app.services.tokens.decode(ended).jti
        if directory == "sqlite":
            _sqlite_revoke(str(tmp_path / "users.db"), jti)
        else:
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute("UPDATE public.regcopilot_sessions SET revoked_at = now() "
                                   "WHERE id = $1", jti)
            finally:
                await conn.close()
        await eventually(lambda: _is(status(app, ended), 401), timeout=1.0)
        assert await status(app, alive) == 200


async def _is(awaitable: Any, expected: int) -> bool:
    return await awaitable == expected


async def _redis_calls(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


@pytest.mark.parametrize("directory", ["postgres", "gotrue"])
async def test_warm_path_asks_neither_the_directory_nor_redis(instance, own_redis, directory):
    async with instance(directory, own_redis.url) as app:
        await app.add_user("warm@example.com")
        cookie, _ = await two_sessions(app, "warm@example.com")
        await eventually(lambda: app.services.bus.connected and app.services.feed.complete,
                         timeout=5)
        assert await status(app, cookie) == 200  # fills the tiers
        # The sign-ins' audit rows (GoTrue's schema) are written by a background task: taken
        # off its queue before counting, they are not counted as the warm path's (under load
        # that write landed inside the counted window).
        audit = app.services.audit
        await eventually(lambda: not getattr(audit, "_pending", ()), timeout=5)
        directory = app.services.directory
        queries = 0
        opened = directory._conn

        def counted() -> Any:  # every directory query, session records included, goes here
            nonlocal queries
            queries += 1
            return opened()

        directory._conn = counted
        client = aioredis.from_url(own_redis.url, decode_responses=True)
        try:
            before = await _redis_calls(client)
            started = time.monotonic()
            app.client.cookies.set(COOKIE, cookie)
            for _ in range(200):
                assert (await app.client.get("/api/me")).status_code == 200
            elapsed = time.monotonic() - started
            after = await _redis_calls(client)
        finally:
            directory._conn = opened
            await client.aclose()
        assert queries == 0
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        calls.pop("info", None)
        assert calls.get("get", 0) == 0, calls
        # Only background work may touch Redis: a metrics flush a second, the bus's ping.
        assert sum(calls.values()) <= 12 * (int(elapsed / FLUSH_SECONDS) + 2), calls

        # last_seen_at: recorded off the request path, written in one batch.
        assert await app.services.sessions.flush_seen() == 1
        r = await app.client.get("/api/auth/sessions")
        mine = [s for s in r.json()["sessions"] if s["current"]]
        assert mine and mine[0]["lastSeenAt"] is not None


async def test_expired_records_are_pruned_in_bounded_batches(instance):
    async with instance("sqlite", "memory") as app:
        user_id = await app.add_user("prune@example.com")
        records = app.services.sessions.records
        past = int(time.time()) - 60
        for i in range(25):
            await records.create(f"old{i:03d}", user_id, past, "agent", "127.0.0.1")
        await records.create("current", user_id, int(time.time()) + 3600, "agent", None)
        assert await records.prune(10) == 10  # one statement removes at most its limit
        assert await app.services.sessions.prune() == 15
        assert [r.id for r in await records.active(user_id)] == ["current"]
        assert await records.prune(10) == 0


async def test_revocation_made_while_the_feed_was_down_is_read_on_reconnect(instance, pg_url):
    """The listener's line is cut and new connections hang; a session is revoked meanwhile
    (its NOTIFY reaches nobody). Once the feed reconnects the instance re-reads the table."""
    proxy = await TcpProxy(5432).start()
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    try:
        async with instance("postgres", "memory", DATABASE_URL=proxied,
                            DATABASE_TIMEOUT_SECONDS=0.5) as app:
            await app.add_user("gap@example.com")
            ended, alive = await two_sessions(app, "gap@example.com")
            assert await status(app, ended) == 200
            await eventually(lambda: app.services.feed.complete, timeout=5)
            proxy.frozen = True
            proxy.cut()
            await eventually(lambda: not app.services.feed.complete, timeout=10)
            conn = await asyncpg.connect(pg_url)  # straight to the server, not through the proxy
            try:
                await conn.execute("UPDATE public.regcopilot_sessions SET revoked_at = now() "
                                   "WHERE id = $1", app.services.tokens.decode(ended).jti)
            finally:
                await conn.close()
            assert not app.services.revocations.local.get_now(
                app.services.tokens.decode(ended).jti), "nothing could have told it yet"
            proxy.frozen = False
            await eventually(lambda: app.services.feed.complete, timeout=10)
            await eventually(lambda: _is(status(app, ended), 401), timeout=5)
            assert await status(app, alive) == 200
    finally:
        await proxy.stop()
