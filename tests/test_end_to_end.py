"""The issue's core journey, for each user directory × each cache backend."""

from __future__ import annotations

import pytest

BACKENDS = [
    ("sqlite", "memory", "in-memory"),
    ("sqlite", "redis", "redis"),
    ("postgres", "memory", "in-memory"),
    ("postgres", "redis", "redis"),
]


@pytest.mark.parametrize(("directory", "cache", "backend"), BACKENDS)
async def test_login_validate_delete_lockout(instance, directory, cache, backend):
    async with instance(directory, cache) as app:
        await app.add_user("admin@example.com", admin=True)
        user_id = await app.add_user("alice@example.com")

        r = await app.login("alice@example.com")
        assert r.status_code == 200, r.text
        assert r.json()["user"]["id"] == user_id
        cookie = app.client.cookies.get("regcopilot.session-token")
        assert cookie

        queries_before = app.counters()["databaseQueries"]
        assert (await app.client.get("/api/me")).status_code == 200
        assert (await app.client.get("/api/me")).json()["id"] == user_id
        c = app.counters()
        assert c["databaseQueries"] - queries_before == 1, "directory asked once for two GETs"
        assert c["cacheHits"] >= 1 and c["cacheMisses"] >= 1

        app.client.cookies.clear()
        assert (await app.login("admin@example.com")).status_code == 200
        r = await app.client.delete(f"/api/admin/users/{user_id}")
        assert r.status_code == 200, r.text

        # Alice's session, right after the delete: refused, cookie cleared.
        admin_cookie = app.client.cookies.get("regcopilot.session-token")
        app.client.cookies.clear()
        app.client.cookies.set("regcopilot.session-token", cookie)
        r = await app.client.get("/api/me")
        assert r.status_code == 401
        assert "regcopilot.session-token=;" in r.headers["set-cookie"]

        app.client.cookies.clear()
        r = await app.client.get(
            "/api/observability", headers={"Authorization": "Bearer monitor-token"}
        )
        assert r.status_code == 200
        body = r.json()
        assert body["authentication"]["users"]["deletedDetected"] == 1
        assert body["validationCache"]["backend"] == backend
        assert body["authentication"]["validations"]["cacheHitRate"] > 0
        assert admin_cookie


async def test_pages_redirect_to_login_and_form_login_works(instance):
    async with instance() as app:
        await app.add_user("bob@example.com")
        r = await app.client.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert "<form" in (await app.client.get("/login")).text
        r = await app.client.post(
            "/api/auth/login",
            data={"email": "bob@example.com", "password": "correct horse battery"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/"
        r = await app.client.get("/")
        assert r.status_code == 200 and "bob@example.com" in r.text


async def test_session_endpoint_ends_a_session_that_no_longer_validates(instance):
    async with instance() as app:
        user_id = await app.add_user("gone@example.com")
        assert (await app.login("gone@example.com")).status_code == 200
        assert (await app.client.get("/api/auth/session")).json()["user"]["id"] == user_id
        await app.services.directory.delete(user_id)
        await app.services.validator.user_changed(user_id)
        r = await app.client.get("/api/auth/session")
        assert r.json() == {}
        assert "regcopilot.session-token=;" in r.headers["set-cookie"]
