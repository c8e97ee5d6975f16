"""Freshness from events (issue 12): the change log is replayed after every fault, entries are
trusted for the max age only while that can be proved, and nothing stale comes back — with the
LISTEN connection killed, every PostgreSQL connection cut, Redis paused or restarted without
persistence, and an announcement lost."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from regcopilot.users.backends import open_directory
from regcopilot.users.changes import HOLE_GRACE_SECONDS, FeedCursor
from regcopilot.users.directory import PRUNE_BATCH
from tests.conftest import PASSWORD
from tests.support import COOKIE, RedisServer, eventually, hash_password, validation_key

TOKEN = {"Authorization": "Bearer monitor-token"}
# Enough for the listener to notice, reconnect (0.5 s) and replay, and for the 2 s bound.
RECONNECT_AND_REPLAY_S = 6.0


async def sign_in(app, email: str) -> tuple[str, str]:
    user_id = await app.add_user(email)
    r = await app.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    cookie = r.cookies[COOKIE]
    app.client.cookies.clear()
    return user_id, cookie


async def me(app, cookie: str) -> int:
    return (await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={cookie}"})).status_code


async def report(app) -> dict:
    return (await app.client.get("/api/observability", headers=TOKEN)).json()


async def sql(pg_url: str, statement: str, *args: object) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def refused_everywhere(apps, cookie: str, timeout: float) -> list[float]:
    """Seconds until each app refuses the cookie (polled together)."""
    started = time.monotonic()
    took: dict[int, float] = {}

    async def check() -> bool:
        for i, app in enumerate(apps):
            if i not in took and await me(app, cookie) == 401:
                took[i] = time.monotonic() - started
        return len(took) == len(apps)

    await eventually(check, timeout=timeout, interval=0.02)
    return [took[i] for i in range(len(apps))]


# --- the cursor ---------------------------------------------------------------------------
def test_cursor_holes_fill_out_of_order_and_expire(monkeypatch):
    cursor = FeedCursor(10)
    assert cursor.apply(11) and cursor.position == 11 and cursor.complete
    assert not cursor.apply(11)  # a replay overlap is applied once
    assert cursor.apply(14)  # 12 and 13 not seen yet: maybe committing, maybe lost
    assert cursor.position == 11 and not cursor.complete and cursor.replay_from == 11
    assert cursor.apply(13) and not cursor.complete
    assert cursor.apply(12)  # the last hole fills: everything up to 14 is applied
    assert cursor.position == 14 and cursor.complete
    assert cursor.apply(16) and not cursor.complete
    # 15 never comes (a rolled-back change): after the grace period it is forgotten.
    later = time.monotonic() + HOLE_GRACE_SECONDS + 1
    monkeypatch.setattr("regcopilot.users.changes.time.monotonic", lambda: later)
    assert cursor.expire_holes()
    assert cursor.position == 16 and cursor.complete


def test_cursor_read_through_a_log_with_taken_back_numbers():
    # SQLite's log: rows 12 and 13 were written and taken back in the same transaction (a
    # quiet write); reading the log through 15 leaves nothing to wait for.
    cursor = FeedCursor(11)
    assert cursor.apply(14) and cursor.apply(15) and not cursor.complete
    cursor.read_through(15)
    assert cursor.position == 15 and cursor.complete
    assert not cursor.apply(14) and cursor.apply(16)


async def test_sqlite_feed_stays_complete_across_quiet_writes(instance):
    # A first sign-in writes its personal workspace quietly (log rows taken back): the feed
    # must not wait on those numbers, or no answer could be cached for users changed since.
    async with instance("sqlite", "memory") as app:
        _, cookie = await sign_in(app, "quiet-a@example.com")
        other_id, _ = await sign_in(app, "quiet-b@example.com")
        await app.services.directory.set_banned_until(other_id, None)  # a logged change
        head = (await app.services.directory.read_log()).head
        freshness = app.services.cache.freshness
        await eventually(lambda: freshness.position == head and freshness.proving, timeout=5)
        assert await me(app, cookie) == 200
        queries = (await report(app))["authentication"]["validations"]["databaseQueries"]
        assert await me(app, cookie) == 200
        assert (await report(app))["authentication"]["validations"]["databaseQueries"] == queries


# --- faults on the change feed -----------------------------------------------------------
async def test_ban_while_listeners_are_killed_reaches_every_instance_on_reconnect(
        instance, pg_url):
    async with instance("postgres", "redis") as a, instance("postgres", "redis") as b:
        user_id, cookie = await sign_in(a, "listener-cut@example.com")
        for app in (a, b):
            assert await me(app, cookie) == 200
            await eventually(lambda app=app: app.services.cache.freshness.proving, timeout=5)
        # One statement list, one transaction: the listeners are gone before the ban commits,
        # so its announcement reaches nobody; only the log holds it.
        await sql(pg_url,
                  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                  "current_database() AND application_name = 'regcopilot-listener'; "
                  f"UPDATE auth.users SET banned_until = now() + interval '1 day' "
                  f"WHERE id = '{user_id}'")
        took = await refused_everywhere((a, b), cookie, RECONNECT_AND_REPLAY_S)
        print(f"\nban during listener loss refused after {[f'{t:.2f}' for t in took]} s")
        for app in (a, b):
            body = await report(app)
            assert body["invalidation"]["changeLogComplete"] is True
            assert body["validationCache"]["freshness"] == "event-driven"


async def test_delete_while_every_connection_is_cut_is_refused_after_recovery(instance, pg_url):
    async with instance("postgres", "redis") as a, instance("postgres", "redis") as b:
        user_id, cookie = await sign_in(a, "all-cut@example.com")
        for app in (a, b):
            assert await me(app, cookie) == 200
            await eventually(lambda app=app: app.services.cache.freshness.proving, timeout=5)
        await sql(pg_url,
                  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                  "current_database() AND pid <> pg_backend_pid(); "
                  f"DELETE FROM auth.users WHERE id = '{user_id}'")
        took = await refused_everywhere((a, b), cookie, RECONNECT_AND_REPLAY_S)
        print(f"\ndelete while every connection was cut refused after "
              f"{[f'{t:.2f}' for t in took]} s")


async def test_workspace_access_lost_while_listeners_are_killed_reaches_every_instance(
        instance, pg_url):
    from regcopilot.workspaces.store import WorkspaceStore

    async with instance("postgres", "redis") as a, instance("postgres", "redis") as b:
        owner_id, _ = await sign_in(a, "ws-owner@example.com")
        member_id, _ = await sign_in(a, "ws-member@example.com")
        store = WorkspaceStore(a.services.directory)
        team = await store.create_team(owner_id, "Team")
        await store.add_member(team.id, "ws-member@example.com", "member")
        assert await store.switch(member_id, team.id)
        # Signed in now: the session names the team.
        r = await a.client.post("/api/auth/login",
                                json={"email": "ws-member@example.com", "password": PASSWORD})
        cookie = r.cookies[COOKIE]
        a.client.cookies.clear()

        async def tenant(app) -> str | None:
            r = await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={cookie}"})
            return r.json().get("tenantId") if r.status_code == 200 else None

        for app in (a, b):
            assert await tenant(app) == team.id
            await eventually(lambda app=app: app.services.cache.freshness.proving, timeout=5)
        # Listeners gone before the removal commits: only the change log holds it.
        await sql(pg_url,
                  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                  "current_database() AND application_name = 'regcopilot-listener'; "
                  "DELETE FROM copilot_core.tenant_memberships "
                  f"WHERE tenant_id = '{team.id}' AND user_id = '{member_id}'")
        for app in (a, b):
            await eventually(lambda app=app: _moved_off(tenant(app), team.id),
                             timeout=RECONNECT_AND_REPLAY_S)


async def _moved_off(current, team_id: str) -> bool:
    now = await current
    return now is not None and now != team_id


async def test_a_lost_announcement_is_found_by_the_gap_behind_the_next(instance, pg_url):
    async with instance("postgres", "redis") as app:
        lost_id, lost_cookie = await sign_in(app, "lost@example.com")
        other_id, _ = await sign_in(app, "other@example.com")
        assert await me(app, lost_cookie) == 200
        await eventually(lambda: app.services.cache.freshness.proving, timeout=5)
        # The ban is made with triggers off and logged by hand: in the log, never announced.
        conn = await asyncpg.connect(pg_url)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(
                    "UPDATE auth.users SET banned_until = now() + interval '1 day' "
                    "WHERE id = $1", lost_id)
                await conn.execute(
                    "INSERT INTO public.regcopilot_user_changes (user_id) VALUES ($1)", lost_id)
        finally:
            await conn.close()
        # Nothing announced it: the cached answer still stands (the TTL is 300 s).
        assert await me(app, lost_cookie) == 200
        # The next announced change leaves a gap behind it; the log is re-read to fill it.
        await sql(pg_url, "UPDATE auth.users SET raw_app_meta_data = '{\"x\": 1}' WHERE id = $1",
                  other_id)
        took = await refused_everywhere((app,), lost_cookie, 2.0)
        print(f"\nlost announcement found through the gap after {took[0]:.3f} s")
        await eventually(lambda: app.services.cache.freshness.proving, timeout=5)


async def test_redis_back_with_a_stale_entry_or_empty_serves_nothing_stale(
        instance, pg_url, redis_prefix):
    server = RedisServer().start()
    try:
        async with instance("postgres", server.url) as a:
            user_id, cookie = await sign_in(a, "redis-away@example.com")
            assert await me(a, cookie) == 200
            key = validation_key(redis_prefix, user_id)
            client = aioredis.from_url(server.url, decode_responses=True)
            assert await client.get(key) is not None
            await client.save()  # a snapshot holding the "valid" answer
            await client.aclose()
            server.kill()  # Redis away: the invalidation cannot reach it
            await sql(pg_url, "UPDATE auth.users SET banned_until = now() + interval '1 day' "
                      "WHERE id = $1", user_id)
            await refused_everywhere((a,), cookie, 5.0)
        # The instance that knew is gone; Redis comes back from its snapshot, stale.
        server = RedisServer("--dir", server.dir, port=server.port).start()
        client = aioredis.from_url(server.url, decode_responses=True)
        stale = await client.get(key)
        await client.aclose()
        assert stale is not None and '"isValid":true' in stale
        async with instance("postgres", server.url) as b:
            await eventually(lambda: b.services.cache.backend == "redis", timeout=5)
            assert await me(b, cookie) == 401
            # Restarted without persistence: empty, and still nothing stale.
            server.kill()
            server = RedisServer(port=server.port).start()
            await eventually(lambda: b.services.cache.backend == "redis", timeout=10)
            assert await me(b, cookie) == 401
        async with instance("postgres", server.url) as c:
            assert await me(c, cookie) == 401
    finally:
        server.stop()


# --- two ages -------------------------------------------------------------------------------
async def test_max_age_while_proved_ttl_once_the_feed_dropped(instance, pg_url):
    async with instance("postgres", "memory", CACHE_TTL_SECONDS=1,
                        SESSION_VALIDATION_INTERVAL_SECONDS=1,
                        CACHE_MAX_AGE_SECONDS=3600) as app:
        _, cookie = await sign_in(app, "ages@example.com")
        await eventually(lambda: app.services.cache.freshness.proving, timeout=5)
        assert await me(app, cookie) == 200
        queries = (await report(app))["authentication"]["validations"]["databaseQueries"]
        await asyncio.sleep(1.3)  # past the 1 s TTL: the entry lives on the max age
        assert await me(app, cookie) == 200
        body = await report(app)
        assert body["authentication"]["validations"]["databaseQueries"] == queries
        assert body["validationCache"]["freshness"] == "event-driven"
        assert body["validationCache"]["maxAgeMs"] == 3_600_000
        # The feed drops: completeness cannot be proved, entries older than the TTL go.
        await sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                  "datname = current_database() AND application_name = 'regcopilot-listener'")
        await eventually(lambda: not app.services.cache.freshness.feed_complete, timeout=5)
        assert (await report(app))["validationCache"]["freshness"] == "ttl"
        assert await me(app, cookie) == 200
        after = (await report(app))["authentication"]["validations"]["databaseQueries"]
        assert after == queries + 1


# --- the log stays bounded ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_pruning_is_bounded_per_pass_and_keeps_recent_changes(kind, tmp_path, pg_url,
                                                                    pg_clean):
    url = f"sqlite:///{tmp_path}/log.db" if kind == "sqlite" else pg_url
    directory = open_directory(url, log_keep_seconds=3600)
    await directory.open()
    try:
        user = await directory.add(f"prune-{kind}@example.com", hash_password("x" * 12))
        old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        n_old = PRUNE_BATCH * 2 + 17
        if kind == "sqlite":
            db = directory._db  # the test's own handle on its own file
            await db.executemany(
                "INSERT INTO auth_user_changes (user_id, changed_at) VALUES (?, ?)",
                [(user.id, old.replace("+00:00", "Z"))] * n_old)
            await db.commit()
        else:
            await sql(pg_url, "DELETE FROM public.regcopilot_user_changes")
            await sql(pg_url, "INSERT INTO public.regcopilot_user_changes (user_id, changed_at)"
                      " SELECT $1, now() - interval '2 days' FROM generate_series(1, $2)",
                      user.id, n_old)
        await directory.set_banned_until(user.id, datetime.now(UTC) + timedelta(hours=1))
        before = await directory.read_log()
        removed = [await directory.prune_log() for _ in range(4)]
        assert removed == [PRUNE_BATCH, PRUNE_BATCH, 17, 0]
        after = await directory.read_log()
        # The recent change (the ban) is kept; the floor moved up past what was pruned.
        assert after.last[user.id] == before.last[user.id] == after.head
        assert after.floor > before.floor
    finally:
        await directory.close()
