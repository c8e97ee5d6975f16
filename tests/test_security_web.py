"""Cookie flags, cross-site request forgery, and secrets kept out of the logs."""

from __future__ import annotations

import logging

from regcopilot.config import load_settings
from tests.conftest import PASSWORD, TEST_SECRET
from tests.support import COOKIE

BEARER = {"Authorization": "Bearer monitor-token"}


def flags(set_cookie: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}


async def test_cookie_flags_on_http_and_https(instance):
    async with instance() as app:
        await app.add_user("alice@example.com")
        r = await app.login("alice@example.com")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert {"httponly", "path", "max-age", "samesite"} <= flags(cookie)
        assert "samesite=lax" in cookie.lower() and "secure" not in flags(cookie)

    async with instance(NEXTAUTH_URL="https://copilot.example.com") as app:
        await app.add_user("bob@example.com")
        r = await app.login("bob@example.com")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"__Secure-{COOKIE}=")
        assert {"httponly", "secure", "samesite"} <= flags(cookie)
        assert "samesite=lax" in cookie.lower()
        # Logout clears the same, secure, cookie.
        app.client.cookies.clear()
        r = await app.client.post("/api/auth/logout", headers={"cookie": cookie.split(";")[0]})
        assert r.headers["set-cookie"].startswith(f"__Secure-{COOKIE}=;")
        assert "secure" in flags(r.headers["set-cookie"])


async def test_cross_site_form_posts_are_refused(instance):
    async with instance(NEXTAUTH_URL="https://copilot.example.com") as app:
        await app.add_user("alice@example.com", admin=True)
        form = {"email": "alice@example.com", "password": PASSWORD}
        forged = [
            {"origin": "https://evil.example"},
            {"origin": "null"},
            {"origin": "https://copilot.example.com.evil.example"},
            {"referer": "https://evil.example/page"},
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "cross-site", "origin": "https://copilot.example.com"},
        ]
        for headers in forged:
            r = await app.client.post("/api/auth/login", data=form, headers=headers)
            assert r.status_code == 403, (headers, r.status_code)
            assert r.json()["error"] == "cross-site request refused"
            assert "set-cookie" not in r.headers
        # The same form from our own pages, or from a client that is no browser, works.
        for headers in ({"origin": "https://copilot.example.com"},
                        {"referer": "https://copilot.example.com/login"},
                        {"origin": "http://testserver"},  # the Host the request came to
                        {"sec-fetch-site": "same-origin", "origin": "https://copilot.example.com"},
                        {}):
            app.client.cookies.clear()
            r = await app.client.post("/api/auth/login", data=form, headers=headers)
            assert r.status_code == 303, (headers, r.status_code, r.text)

        # Signed in: a forged logout or admin action leaves the session and the data alone.
        session = r.headers["set-cookie"].split(";")[0]
        evil = {"origin": "https://evil.example", "cookie": session}
        app.client.cookies.clear()
        assert (await app.client.post("/api/auth/logout", data={}, headers=evil)).status_code == 403
        r = await app.client.post("/api/auth/logout", content=b"", headers={**evil,
                                  "content-type": "text/plain"})
        assert r.status_code == 403
        r = await app.client.post("/api/admin/invalidate-user", json={"userId": "x"},
                                  headers=evil)
        assert r.status_code == 403
        assert (await app.client.get("/api/me", headers=evil)).status_code == 200  # GET is safe
        security = (await app.client.get("/api/observability", headers=BEARER)).json()["security"]
        assert security["csrfRefused"] == len(forged) + 3
        assert any(e["type"] == "csrf_refused" for e in security["recentEvents"])


async def test_secrets_and_passwords_never_logged(instance, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    secret_password = "Tr0ub4dor&3-unique-needle"
    load_settings(NEXTAUTH_SECRET=TEST_SECRET, DATA_DIR=str(tmp_path / "d"),
                  DATABASE_URL=f"sqlite:///{tmp_path}/x.db", REDIS_URL="redis://:hunter2pw@h:1")
    async with instance("sqlite", "redis") as app:
        await app.add_user("alice@example.com", password=secret_password)
        r = await app.login("alice@example.com", secret_password)
        assert r.status_code == 200
        token = app.client.cookies.get(COOKIE)
        assert (await app.client.get("/api/me")).status_code == 200
        assert (await app.login("alice@example.com", secret_password + "x")).status_code == 401
        assert (await app.login("nobody@example.com", secret_password)).status_code == 401
        app.client.cookies.clear()
        r = await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={token[:-3]}abc"})
        assert r.status_code == 401
        await app.client.post("/api/auth/logout", headers={"cookie": f"{COOKIE}={token}"})
        await app.client.get("/api/observability", headers=BEARER)
    # An unreachable password-protected Redis: its URL must not leak the password either.
    async with instance("sqlite", "redis://:hunter2pw@127.0.0.1:1/0") as app:
        await app.client.get("/api/ready")

    logged = caplog.text + "".join(str(rec.args) for rec in caplog.records)
    assert "Failed login" in logged  # the failures were logged...
    for needle in (secret_password, TEST_SECRET, token, token.split(".")[2], "hunter2pw",
                   "monitor-token"):
        assert needle not in logged, needle  # ...without a secret in them
