"""Bans through the admin API: indefinite, with an end, lifted; bad input; who may call it;
and `invalidate-user`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import COOKIE, eventually

BEARER = {"Authorization": "Bearer monitor-token"}



class Sessions:
    """Switch one client between the admin's and a user's cookie."""

    def __init__(self, app) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}

    async def login(self, email: str) -> str:
        self.app.client.cookies.clear()
        r = await self.app.login(email)
        assert r.status_code == 200, r.text
        self.cookies[email] = self.app.client.cookies.get(COOKIE)
        return self.cookies[email]

    def use(self, email: str) -> None:
        self.app.client.cookies.clear()
        self.app.client.cookies.set(COOKIE, self.cookies[email])

    async def get(self, email: str, path: str = "/api/me"):
        self.use(email)
        return await self.app.client.get(path)

    async def post(self, email: str, path: str, **kw):
        self.use(email)
        return await self.app.client.post(path, **kw)


async def setup(app) -> tuple[Sessions, str]:
    await app.add_user("admin@example.com", admin=True)
    user_id = await app.add_user("alice@example.com")
    s = Sessions(app)
    await s.login("admin@example.com")
    await s.login("alice@example.com")
    assert (await s.get("alice@example.com")).status_code == 200
    return s, user_id


async def full_report(app) -> dict:
    app.client.cookies.clear()
    r = await app.client.get("/api/observability", headers=BEARER)
    assert r.status_code == 200
    return r.json()


async def report(app) -> dict:
    app.client.cookies.clear()
    r = await app.client.get("/api/observability", headers=BEARER)
    assert r.status_code == 200
    return r.json()["authentication"]


def cleared(response) -> bool:
    return f"{COOKIE}=;" in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_indefinite_ban_then_unban(instance, cache):
    async with instance("sqlite", cache) as app:
        s, user_id = await setup(app)
        r = await s.post("admin@example.com", f"/api/admin/users/{user_id}/ban")
        assert r.status_code == 200, r.text
        assert r.json()["bannedUntil"].startswith("9999-12-31")

        r = await s.get("alice@example.com")
        assert r.status_code == 401 and cleared(r)
        assert "banned" in r.json()["error"]
        assert (await report(app))["users"]["bannedDetected"] == 1
        # A ban through the API also revokes the user's sessions (docs/sessions.md).
        assert (await full_report(app))["sessions"]["revoked"]["banOrDelete"] == 1

        # Signing in again is refused as well.
        app.client.cookies.clear()
        assert (await app.login("alice@example.com")).status_code in (401, 403)

        r = await s.post("admin@example.com", f"/api/admin/users/{user_id}/unban")
        assert r.status_code == 200, r.text
        # Lifting the ban does not bring the old session back: the user signs in again.
        r = await s.get("alice@example.com")
        assert r.status_code == 401 and r.json()["error"] == "session ended"
        await s.login("alice@example.com")
        assert (await s.get("alice@example.com")).status_code == 200


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_a_ban_made_in_the_directory_is_refused_as_banned(instance, cache):
    """A ban written straight to the directory (plain SQL, another tool) revokes nothing: the
    validation refuses the session, and lets it back in once the ban is lifted."""
    async with instance("sqlite", cache) as app:
        s, user_id = await setup(app)
        await app.services.directory.set_banned_until(user_id, datetime(9999, 12, 31, tzinfo=UTC))
        await eventually(lambda: _status(s.get("alice@example.com"), 401), timeout=5)
        r = await s.get("alice@example.com")
        assert "banned" in r.json()["error"]
        assert (await report(app))["users"]["bannedDetected"] == 1
        await app.services.directory.set_banned_until(user_id, None)
        await eventually(lambda: _status(s.get("alice@example.com"), 200), timeout=5)


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_ban_with_an_end_lets_the_same_session_back_in(instance, cache):
    """Banned in the directory (as plain SQL would): the session itself is not revoked."""
    async with instance("sqlite", cache) as app:
        s, user_id = await setup(app)
        end = datetime.now(UTC) + timedelta(seconds=1)
        await app.services.directory.set_banned_until(user_id, end)
        await app.services.validator.user_changed(user_id)

        r = await s.get("alice@example.com")
        assert r.status_code == 401
        # The refusal is cached (TTL 300 s) but no longer than the ban lasts.
        assert (await s.get("alice@example.com")).status_code == 401

        await eventually(
            lambda: _status(s.get("alice@example.com"), 200), timeout=5, interval=0.1
        )
        # An expired ban lets the user sign in again too.
        app.client.cookies.clear()
        assert (await app.login("alice@example.com")).status_code == 200


async def test_api_ban_with_an_end_lets_the_user_sign_in_again_but_not_the_old_session(
    instance,
):
    async with instance("sqlite", "memory") as app:
        s, user_id = await setup(app)
        r = await s.post(
            "admin@example.com", f"/api/admin/users/{user_id}/ban", json={"durationSeconds": 1}
        )
        assert r.status_code == 200, r.text
        end = datetime.fromisoformat(r.json()["bannedUntil"])
        assert timedelta(0) < end - datetime.now(UTC) <= timedelta(seconds=1)
        assert (await s.get("alice@example.com")).status_code == 401

        async def signs_in() -> bool:
            app.client.cookies.clear()
            return (await app.login("alice@example.com")).status_code == 200

        await eventually(signs_in, timeout=5, interval=0.1)
        assert (await s.get("alice@example.com")).status_code == 401  # revoked for good


async def test_ban_end_is_honoured_by_an_instance_that_read_it_from_redis(instance):
    """Instance B first learns of the ban from the entry A wrote to Redis: B's own copy must
    expire with the ban too, not live for the full TTL."""
    async with instance("sqlite", "redis") as a, instance("sqlite", "redis") as b:
        s, user_id = await setup(a)
        # Banned in the directory (as plain SQL would), so the session itself stays unrevoked.
        await a.services.directory.set_banned_until(
            user_id, datetime.now(UTC) + timedelta(seconds=1))
        # Both have heard of the change (the directory's feed) before A caches the refusal.
        await eventually(lambda: a.services.cache.changed_since(user_id, 0)
                         and b.services.cache.changed_since(user_id, 0), timeout=5)
        assert (await s.get("alice@example.com")).status_code == 401  # A caches it in Redis

        b.client.cookies.set(COOKIE, s.cookies["alice@example.com"])
        r = await b.client.get("/api/me")
        assert r.status_code == 401
        assert b.counters()["databaseQueries"] == 0, "B used A's entry"

        await eventually(lambda: _status(b.client.get("/api/me"), 200), timeout=5, interval=0.1)


async def test_ban_until_a_time(instance):
    async with instance() as app:
        s, user_id = await setup(app)
        until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        r = await s.post(
            "admin@example.com", f"/api/admin/users/{user_id}/ban",
            json={"until": until.isoformat()},
        )
        assert r.status_code == 200, r.text
        assert datetime.fromisoformat(r.json()["bannedUntil"]) == until
        assert (await s.get("alice@example.com")).status_code == 401
        r = await s.get("admin@example.com", "/api/admin/users")
        listed = {u["email"]: u for u in r.json()["users"]}
        assert datetime.fromisoformat(listed["alice@example.com"]["bannedUntil"]) == until


async def test_ban_rejects_bad_input_clearly(instance):
    async with instance() as app:
        s, user_id = await setup(app)
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        cases = [
            (f"/api/admin/users/{user_id}/ban", {"until": past}, 422),
            (f"/api/admin/users/{user_id}/ban", {"until": future, "durationSeconds": 5}, 422),
            (f"/api/admin/users/{user_id}/ban", {"durationSeconds": 0}, 422),
            (f"/api/admin/users/{user_id}/ban", {"durationSeconds": "soon"}, 422),
            (f"/api/admin/users/{user_id}/ban", {"until": "tomorrow"}, 422),
            (f"/api/admin/users/{uuid.uuid4()}/ban", {}, 404),
            ("/api/admin/users/not-a-uuid/ban", {}, 404),
            (f"/api/admin/users/{uuid.uuid4()}/unban", None, 404),
            ("/api/admin/users/not-a-uuid/unban", None, 404),
        ]
        for path, body, status in cases:
            r = await s.post("admin@example.com", path, json=body)
            assert r.status_code == status, (path, body, r.status_code, r.text)
            assert r.json().get("detail"), (path, body, r.text)
        s.use("admin@example.com")
        for path in (f"/api/admin/users/{uuid.uuid4()}", "/api/admin/users/not-a-uuid"):
            r = await app.client.delete(path)
            assert r.status_code == 404, (path, r.text)
        # Nothing above touched Alice.
        assert (await s.get("alice@example.com")).status_code == 200


async def test_admin_routes_need_the_admin_role(instance):
    async with instance() as app:
        s, user_id = await setup(app)
        s.use("alice@example.com")
        calls = [
            ("POST", f"/api/admin/users/{user_id}/ban", {}),
            ("POST", f"/api/admin/users/{user_id}/unban", None),
            ("DELETE", f"/api/admin/users/{user_id}", None),
            ("POST", "/api/admin/invalidate-user", {"userId": user_id}),
            ("GET", "/api/admin/users", None),
            ("POST", "/api/admin/users", {"email": "x@example.com", "password": "12345678"}),
        ]
        for method, path, body in calls:
            r = await app.client.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.status_code)
        app.client.cookies.clear()
        for method, path, body in calls:
            r = await app.client.request(method, path, json=body)
            assert r.status_code == 401, (method, path, r.status_code)
        # The monitor token reads metrics, it does not administer.
        r = await app.client.get("/api/admin/users", headers=BEARER)
        assert r.status_code == 401
        assert (await s.get("alice@example.com")).status_code == 200


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_invalidate_user_drops_the_entry(instance, cache):
    async with instance("sqlite", cache) as app:
        s, user_id = await setup(app)
        before = app.counters()["databaseQueries"]
        assert (await s.get("alice@example.com")).status_code == 200
        assert app.counters()["databaseQueries"] == before, "a cache hit"

        r = await s.post("admin@example.com", "/api/admin/invalidate-user",
                         json={"userId": user_id})
        assert r.status_code == 200 and r.json() == {"ok": True, "userId": user_id}
        queries = app.counters()["databaseQueries"]
        assert (await s.get("alice@example.com")).status_code == 200
        assert app.counters()["databaseQueries"] == queries + 1, "a miss after invalidation"
        # (The directory's feed echoes the invalidation back a moment later, which may cost
        # one more query: no exact count after this point.)

        for body, status in (({"userId": "nope"}, 404), ({}, 422), ({"userId": ""}, 422)):
            r = await s.post("admin@example.com", "/api/admin/invalidate-user", json=body)
            assert r.status_code == status, (body, r.text)


@pytest.mark.parametrize("directory", ["sqlite", "postgres", "gotrue"])
async def test_admin_create_user_and_duplicate(instance, directory):
    async with instance(directory) as app:
        s, _ = await setup(app)
        body = {"email": "Bob@Example.com", "password": "long enough"}
        r = await s.post("admin@example.com", "/api/admin/users", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["email"] == "bob@example.com"
        r = await s.post("admin@example.com", "/api/admin/users", json=body)
        assert r.status_code == 422, r.text
        assert "exists" in r.json()["detail"]
        r = await s.post("admin@example.com", "/api/admin/users",
                         json={"email": "carol@example.com", "password": "short"})
        assert r.status_code == 422


async def _status(response, expected: int) -> bool:
    return (await response).status_code == expected


async def test_ban_longer_than_the_calendar_is_a_ban_without_end(instance):
    # Found by schemathesis: a duration past year 9999 was a 500 (datetime overflow).
    async with instance() as app:
        s, user_id = await setup(app)
        r = await s.post("admin@example.com", f"/api/admin/users/{user_id}/ban",
                         json={"durationSeconds": 10**15})
        assert r.status_code == 200, r.text
        assert r.json()["bannedUntil"].startswith("9999-12-31")
        assert (await s.get("alice@example.com")).status_code == 401


def _histogram_count(metrics_text: str) -> int:
    for line in metrics_text.splitlines():
        if line.startswith("regcopilot_validation_latency_seconds_count"):
            return int(float(line.split()[-1]))
    raise AssertionError("no validation latency histogram in /metrics")


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_every_validation_is_counted_served_and_refused_from_the_near_tier(instance, cache):
    """Near-tier hits are counted without being timed: validations, hits, misses, failures
    and the latency histogram still add up to every request, in the process's totals and in
    the cluster's (Redis), for sessions served and for cached refusals."""
    async with instance("sqlite", cache) as app:
        s, user_id = await setup(app)
        before = (await report(app))["validations"]
        for _ in range(5):
            assert (await s.get("alice@example.com")).status_code == 200
        r = await s.post("admin@example.com", f"/api/admin/users/{user_id}/ban")
        assert r.status_code == 200, r.text
        for _ in range(4):
            assert (await s.get("alice@example.com")).status_code == 401
        # 5 served from the near tier; the admin's request, its session's first validation (a
        # miss); 4 refused: the first read from the directory (the ban dropped the cached
        # answer), the other three from the near tier, each a failure.
        want = {"total": 10, "cacheHits": 5 + 3, "cacheMisses": 1 + 1, "failures": 4}

        async def counted() -> bool:
            now = (await report(app))["validations"]
            return all(now[k] - before[k] >= n for k, n in want.items())

        await eventually(counted, timeout=10)
        now = (await report(app))["validations"]
        assert {k: now[k] - before[k] for k in want} == want
        assert now["total"] == now["cacheHits"] + now["cacheMisses"]
        app.client.cookies.clear()
        r = await app.client.get("/metrics", headers=BEARER)
        assert r.status_code == 200
        assert _histogram_count(r.text) == now["total"]
