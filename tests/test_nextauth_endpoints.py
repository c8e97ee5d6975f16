"""NextAuth v4's REST surface under /api/auth (web/routes/nextauth.py): the shapes next-auth's
client reads, its double-submit CSRF token, callbackUrl kept on this site, sliding sessions
within an absolute lifetime, and our refusals mapped onto NextAuth's error codes. The real
client in a browser is in tests/test_nextauth_browser.py."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from regcopilot.auth.tokens import Claims
from regcopilot.users.directory import FOREVER
from tests.conftest import PASSWORD, TEST_SECRET
from tests.support import COOKIE, TcpProxy

BASE = "http://testserver"  # the in-process client's origin, made NEXTAUTH_URL below
CSRF_COOKIE = "next-auth.csrf-token"
SITE = {"NEXTAUTH_URL": BASE}


async def csrf_token(client: httpx.AsyncClient) -> str:
    r = await client.get("/api/auth/csrf")
    assert r.status_code == 200, r.text
    return r.json()["csrfToken"]


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD,
                  callback: str = f"{BASE}/dashboard", token: str | None = None,
                  headers: dict[str, str] | None = None) -> httpx.Response:
    """What `signIn('credentials', {email, password, redirect: false})` posts."""
    token = await csrf_token(client) if token is None else token
    form = {"email": email, "password": password, "csrfToken": token,
            "callbackUrl": callback, "json": "true"}
    return await client.post("/api/auth/callback/credentials", data=form, headers=headers)


def error_of(r: httpx.Response) -> dict[str, list[str]]:
    """The query of the answer's url, parsed as the client does (`new URL(data.url)`)."""
    return parse_qs(urlsplit(r.json()["url"]).query)


def claims_of(client: httpx.AsyncClient) -> dict:
    return jwt.decode(client.cookies[COOKIE], TEST_SECRET, algorithms=["HS256"])


async def test_providers_csrf_sign_in_session_and_sign_out_as_next_auth_answers(instance):
    async with instance(**SITE) as app:
        await app.add_user("ada@example.com")
        c = app.client
        r = await c.get("/api/auth/providers")
        assert r.json() == {"credentials": {
            "id": "credentials", "name": "Credentials", "type": "credentials",
            "signinUrl": f"{BASE}/api/auth/signin/credentials",
            "callbackUrl": f"{BASE}/api/auth/callback/credentials"}}

        # The double-submit cookie: `token|sha256(token + secret)`, as next-auth makes it.
        r = await c.get("/api/auth/csrf")
        token = r.json()["csrfToken"]
        assert len(token) == 64 and "no-store" in r.headers["cache-control"]
        cookie = c.cookies[CSRF_COOKIE]
        assert cookie == f"{token}|{hashlib.sha256((token + TEST_SECRET).encode()).hexdigest()}"
        assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Lax" in r.headers["set-cookie"]
        # Asked again, the same token and no new cookie.
        r = await c.get("/api/auth/csrf")
        assert r.json()["csrfToken"] == token and "set-cookie" not in r.headers

        r = await sign_in(c, "ada@example.com", "wrong password")
        assert r.status_code == 401
        assert r.json()["url"].startswith(f"{BASE}/api/auth/error?")
        assert error_of(r) == {"error": ["CredentialsSignin"], "provider": ["credentials"]}
        assert COOKIE not in c.cookies

        r = await sign_in(c, "ada@example.com")
        assert r.status_code == 200 and r.json() == {"url": f"{BASE}/dashboard"}
        assert claims_of(c)["email"] == "ada@example.com"

        r = await c.get("/api/auth/session")
        body = r.json()
        assert body["user"]["email"] == "ada@example.com"
        assert body["user"]["name"] == "ada@example.com", "name falls back to the email"
        assert body["user"]["image"] is None and body["user"]["id"] == claims_of(c)["sub"]
        assert datetime.fromisoformat(body["expires"]).timestamp() == claims_of(c)["exp"]
        assert "no-store" in r.headers["cache-control"]

        token = await csrf_token(c)
        r = await c.post("/api/auth/signout",
                         data={"csrfToken": token, "callbackUrl": f"{BASE}/", "json": "true"})
        assert r.status_code == 200 and r.json() == {"url": f"{BASE}/"}
        assert COOKIE not in c.cookies
        assert (await c.get("/api/auth/session")).json() == {}
        assert (await c.get("/api/me")).status_code == 401


async def test_without_json_the_answers_are_redirects(instance):
    async with instance(**SITE) as app:
        await app.add_user("ada@example.com")
        c = app.client
        token = await csrf_token(c)
        form = {"email": "ada@example.com", "password": PASSWORD, "csrfToken": token,
                "callbackUrl": "/workspaces"}
        r = await c.post("/api/auth/callback/credentials", data=form)
        assert r.status_code == 302 and r.headers["location"] == f"{BASE}/workspaces"
        assert COOKIE in c.cookies
        # Auth.js v5's header asks for the JSON answer too.
        c.cookies.delete(COOKIE)
        r = await c.post("/api/auth/callback/credentials", data=form,
                         headers={"X-Auth-Return-Redirect": "1"})
        assert r.json() == {"url": f"{BASE}/workspaces"}


async def test_a_post_without_the_matching_csrf_token_changes_nothing(instance):
    async with instance(**SITE) as app:
        await app.add_user("ada@example.com")
        c = app.client
        own = await csrf_token(c)
        # No token, a made-up one, one from another browser's cookie: nobody signed in.
        other = httpx.AsyncClient(transport=c._transport, base_url=BASE)
        for token in ("", "0" * 64, await csrf_token(other)):
            r = await sign_in(c, "ada@example.com", token=token)
            assert r.status_code == 403, r.text
            assert error_of(r) == {"error": ["MissingCSRF"]}
            assert COOKIE not in c.cookies and "set-cookie" not in r.headers
        # A forged cookie (wrong hash) with its own token: refused too.
        c.cookies.set(CSRF_COOKIE, f"{'a' * 64}|{'0' * 64}")
        assert (await sign_in(c, "ada@example.com", token="a" * 64)).status_code == 403
        c.cookies.delete(CSRF_COOKIE)
        assert app.services.security.report()["csrfRefused"] == 4

        assert (await sign_in(c, "ada@example.com")).status_code == 200
        session = (await c.get("/api/auth/session")).json()
        # Sign-out without the token: the session stays, the cookie is not touched.
        r = await c.post("/api/auth/signout", data={"json": "true"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = await c.post("/api/auth/signout", data={"csrfToken": own, "json": "true"})
        assert r.status_code == 403, "the token of a cookie this browser no longer holds"
        assert (await c.get("/api/me")).status_code == 200
        # update(data) without the token: 400 {} as NextAuth answers, no new cookie.
        r = await c.post("/api/auth/session", json={"data": {"name": "x"}})
        assert r.status_code == 400 and r.json() == {} and "set-cookie" not in r.headers
        # A cross-site page, token and all, is refused before any of this (web/csrf.py).
        token = await csrf_token(c)
        stranger = httpx.AsyncClient(transport=c._transport, base_url=BASE)
        r = await sign_in(stranger, "ada@example.com", token=await csrf_token(stranger),
                          headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and COOKIE not in stranger.cookies
        r = await c.post("/api/auth/signout", data={"csrfToken": token, "json": "true"},
                         headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        assert (await c.get("/api/auth/session")).json() == session
        # update(data) with the token answers the session; data changes nothing.
        r = await c.post("/api/auth/session", json={"csrfToken": token, "data": {"name": "x"}})
        assert r.status_code == 200 and r.json()["user"] == session["user"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/",
                                    "http://testserver.evil.example/", "/\\evil.example",
                                    "javascript:alert(1)"])
async def test_callback_url_on_another_site_becomes_the_base_url(instance, target):
    async with instance(**SITE) as app:
        await app.add_user("ada@example.com")
        c = app.client
        r = await sign_in(c, "ada@example.com", callback=target)
        assert r.status_code == 200 and r.json() == {"url": f"{BASE}/"}
        token = await csrf_token(c)
        r = await c.post("/api/auth/signout",
                         data={"csrfToken": token, "callbackUrl": target, "json": "true"})
        assert r.json() == {"url": f"{BASE}/"}
        # Our own form takes callbackUrl wherever it takes `next`, with the same rule.
        form = {"email": "ada@example.com", "password": PASSWORD, "callbackUrl": target}
        r = await c.post("/api/auth/login", data=form)
        assert r.status_code == 303 and r.headers["location"] == "/"
        r = await c.get("/login", params={"callbackUrl": target})
        assert 'name="next" value="/"' in r.text


async def test_callback_url_on_this_site_is_kept(instance):
    async with instance(**SITE) as app:
        await app.add_user("ada@example.com")
        c = app.client
        form = {"email": "ada@example.com", "password": PASSWORD,
                "callbackUrl": f"{BASE}/invite?code=abc"}
        r = await c.post("/api/auth/login", data=form)
        assert r.status_code == 303 and r.headers["location"] == "/invite?code=abc"
        r = await c.get("/api/auth/signin", params={"callbackUrl": f"{BASE}/admin"})
        assert 'name="next" value="/admin"' in r.text


async def test_pages_a_browser_lands_on_are_html(instance):
    async with instance(**SITE) as app:
        c = app.client
        r = await c.get("/api/auth/signin", params={"error": "CredentialsSignin"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "Invalid email or password" in r.text and 'action="/login"' in r.text
        r = await c.get("/api/auth/error", params={"error": "CredentialsSignin"})
        assert r.status_code == 302
        assert r.headers["location"] == "/api/auth/signin?error=CredentialsSignin"
        r = await c.get("/api/auth/error", params={"error": "AccessDenied"})
        assert r.status_code == 403 and "may not sign in" in r.text
        r = await c.get("/api/auth/signout")
        token = c.cookies[CSRF_COOKIE].split("|")[0]
        assert r.status_code == 200 and f'value="{token}"' in r.text
        # The client's logger and NextAuth's POST to signin/credentials.
        assert (await c.post("/api/auth/_log", json={"level": "error"})).status_code == 200
        r = await c.post("/api/auth/signin/credentials", data={"csrfToken": token, "json": "true"})
        assert r.json() == {"url": f"{BASE}/api/auth/signin"}
        r = await c.post("/api/auth/signin/credentials", data={"json": "true"})
        assert r.status_code == 403
        assert r.json() == {"url": f"{BASE}/api/auth/signin?csrf=true"}
        # A refusal to a plain form post keeps its status, as a page.
        r = await c.post("/api/auth/signout", data={"csrfToken": "x"})
        assert r.status_code == 403 and "form had expired" in r.text


# --- sliding sessions and the absolute lifetime ------------------------------------------

SLIDE = {"SESSION_MAX_AGE_SECONDS": 600, "SESSION_UPDATE_AGE_SECONDS": 60,
         "SESSION_ABSOLUTE_MAX_AGE_SECONDS": 3600, **SITE}


async def aged(app, client: httpx.AsyncClient, seconds: int, signed_in: int | None = None
               ) -> Claims:
    """Replace the client's session cookie by the same session issued `seconds` ago (and
    signed in `signed_in` seconds ago): what the browser holds after that long."""
    claims = app.services.tokens.decode(client.cookies[COOKIE])
    now = int(time.time())
    old = replace(claims, iat=now - seconds, exp=now - seconds + 600,
                  auth_at=(now - (signed_in if signed_in is not None else seconds)) * 1000)
    put(client, app.services.tokens.encode(old))
    return old


def put(client: httpx.AsyncClient, cookie: str) -> None:
    """The session cookie, where the server's Set-Cookie puts it (so a new one replaces it)."""
    client.cookies.delete(COOKIE)
    client.cookies.set(COOKIE, cookie, domain="testserver.local")


async def record_expiry(app, user_id: str) -> int:
    [record] = await app.services.sessions.active(user_id)
    return int(record.expires_at.timestamp())


@pytest.mark.parametrize("directory", ["sqlite", "postgres", "gotrue"])
async def test_a_session_read_slides_the_session_when_due(instance, directory):
    async with instance(directory, **SLIDE) as app:
        uid = await app.add_user("ada@example.com")
        c = app.client
        await sign_in(c, "ada@example.com")
        first = claims_of(c)
        # Fresh: nothing re-issued (no signature, no write).
        r = await c.get("/api/auth/session")
        assert "set-cookie" not in r.headers

        old = await aged(app, c, 120)
        r = await c.get("/api/auth/session")
        line = r.headers["set-cookie"]
        fresh = claims_of(c)
        now = time.time()
        assert fresh["jti"] == first["jti"], "the same session: one sign-out ends it"
        assert abs(fresh["exp"] - (now + 600)) <= 2 and fresh["exp"] > old.exp
        assert fresh["authAt"] == old.auth_at, "the sign-in time travels along"
        assert "Max-Age=600" in line or "Max-Age=599" in line
        assert datetime.fromisoformat(r.json()["expires"]).timestamp() == fresh["exp"]
        # The record moved first: a revocation now covers the whole new life.
        assert await record_expiry(app, uid) == fresh["exp"]
        [revoked] = await app.services.sessions.records.revoke_all(uid, "user")
        assert revoked.expires == fresh["exp"]


async def test_the_absolute_lifetime_caps_sliding_then_ends_the_session(instance):
    async with instance(**SLIDE) as app:
        await app.add_user("ada@example.com")
        c = app.client
        await sign_in(c, "ada@example.com")
        assert claims_of(c)["authAt"] // 1000 == claims_of(c)["iat"]
        # Signed in 3,300 s ago: a slide may not go past 3,600 s after the sign-in.
        old = await aged(app, c, 400, signed_in=3300)
        r = await c.get("/api/auth/session")
        assert r.status_code == 200
        assert claims_of(c)["exp"] == old.auth_at // 1000 + 3600
        # Past it: signed out, whatever the cookie's own exp says; no read revives it.
        await aged(app, c, 120, signed_in=3601)
        cookie = c.cookies[COOKIE]
        r = await c.get("/api/auth/session")
        assert r.json() == {} and COOKIE not in c.cookies
        put(c, cookie)
        assert (await c.get("/api/me")).status_code == 401


async def test_a_revoked_or_banned_session_is_not_revived_by_a_session_read(instance):
    async with instance(**SLIDE) as app:
        uid = await app.add_user("ada@example.com")
        await app.add_user("bob@example.com")
        c = app.client
        await sign_in(c, "ada@example.com")
        old = await aged(app, c, 120)
        cookie = c.cookies[COOKIE]
        # Revoked in the database alone (not yet heard by this instance): the slide's write
        # finds it revoked and issues nothing.
        assert await app.services.sessions.records.revoke(old.jti, "user")
        assert await app.services.renewal.renew(old) is None
        assert await record_expiry_or_none(app, uid) is None
        # Revoked everywhere (sign-out on another device): the read answers {} and clears.
        await app.services.sessions.revocations.revoke(old.jti, old.exp)
        r = await c.get("/api/auth/session")
        assert r.json() == {} and all(
            "Max-Age=0" in h for h in r.headers.get_list("set-cookie"))
        put(c, cookie)
        assert (await c.get("/api/me")).status_code == 401

        # A banned user's due session: refused, nothing re-issued.
        c.cookies.clear()
        await sign_in(c, "bob@example.com")
        await aged(app, c, 120)
        cookie = c.cookies[COOKIE]
        bob = claims_of(c)["sub"]
        # Banned in the directory alone (its sessions not revoked): the validation refuses.
        await app.services.directory.set_banned_until(bob, FOREVER)
        await app.services.validator.user_changed(bob)
        r = await c.get("/api/auth/session")
        assert r.json() == {}
        assert not any("Max-Age=0" not in h for h in r.headers.get_list("set-cookie"))
        put(c, cookie)
        assert (await c.get("/api/me")).status_code == 401


async def record_expiry_or_none(app, user_id: str) -> int | None:
    records = await app.services.sessions.active(user_id)
    return int(records[0].expires_at.timestamp()) if records else None


# --- our refusals as NextAuth error codes ---------------------------------------------------

async def test_a_lockout_keeps_its_429_as_rate_limited(instance):
    limits = {"LOGIN_MAX_FAILURES_PER_ACCOUNT": 2, "LOGIN_LOCKOUT_SECONDS": 120, **SITE}
    async with instance(**limits) as app:
        await app.add_user("ada@example.com")
        c = app.client
        for _ in range(2):
            assert (await sign_in(c, "ada@example.com", "wrong")).status_code == 401
        r = await sign_in(c, "ada@example.com")  # the right password, locked all the same
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 120
        assert error_of(r) == {"error": ["RateLimited"]}
        assert COOKIE not in c.cookies
        # The same limiter as /api/auth/login: one use case, two doors.
        r = await c.post("/api/auth/login", json={"email": "ada@example.com",
                                                  "password": PASSWORD})
        assert r.status_code == 429


async def test_a_directory_that_does_not_answer_keeps_its_503(instance, pg_url):
    proxy = await TcpProxy(urlsplit(pg_url).port or 5432).start()
    parts = urlsplit(pg_url)
    user = f"{parts.username}@" if parts.username else ""
    url = f"postgresql://{user}127.0.0.1:{proxy.port}{parts.path}"
    try:
        async with instance("postgres", DATABASE_URL=url, DATABASE_TIMEOUT_SECONDS=0.5,
                            **SITE) as app:
            await app.add_user("ada@example.com")
            token = await csrf_token(app.client)
            proxy.frozen = True
            r = await sign_in(app.client, "ada@example.com", token=token)
            assert r.status_code == 503 and r.headers.get("retry-after")
            assert error_of(r) == {"error": ["ServiceUnavailable"]}
            assert COOKIE not in app.client.cookies
    finally:
        await proxy.stop()


@pytest.mark.parametrize("backends", [("sqlite", "memory"), ("postgres", "redis")])
async def test_signing_out_with_an_older_copy_revokes_the_slid_session_for_its_whole_life(
    instance, backends
):
    """A tab still holding the cookie from before a slide signs out: the revocation must last
    as long as the slid cookie, here, in Redis and in the record a restarted instance loads."""
    directory, cache = backends
    async with instance(directory, cache, **SLIDE) as app:
        uid = await app.add_user("ada@example.com")
        c = app.client
        await sign_in(c, "ada@example.com")
        old = await aged(app, c, 120)
        older_copy = c.cookies[COOKIE]
        await c.get("/api/auth/session")
        slid = c.cookies[COOKIE]
        new_exp = claims_of(c)["exp"]
        assert new_exp > old.exp + 100

        put(c, older_copy)
        assert (await c.post("/api/auth/logout")).status_code == 200
        left = app.services.revocations.local.remaining(old.jti)
        assert left >= new_exp - time.time() - 2, "revoked until the slid cookie's end"
        [revoked] = [r for r in await app.services.sessions.records.revoked() if r.id == old.jti]
        assert revoked.expires == new_exp
        put(c, slid)
        assert (await c.get("/api/auth/session")).json() == {}
        assert await record_expiry_or_none(app, uid) is None

    # A new process on the same database: the revocation comes back from the record.
    async with instance(directory, cache, **SLIDE) as again:
        assert again.services.revocations.local.remaining(old.jti) >= new_exp - time.time() - 2
        again.client.cookies.set(COOKIE, slid, domain="testserver.local")
        assert (await again.client.get("/api/me")).status_code == 401
        assert (await again.client.get("/api/auth/session")).json() == {}


async def test_a_deleted_users_due_session_is_not_revived(instance):
    async with instance(**SLIDE) as app:
        uid = await app.add_user("ada@example.com")
        c = app.client
        await sign_in(c, "ada@example.com")
        await aged(app, c, 120)
        cookie = c.cookies[COOKIE]
        # Deleted in the directory alone (sessions not revoked): the validation refuses.
        await app.services.directory.delete(uid, soft=False)
        await app.services.validator.user_changed(uid)
        r = await c.get("/api/auth/session")
        assert r.json() == {}
        assert all("Max-Age=0" in h for h in r.headers.get_list("set-cookie"))
        put(c, cookie)
        assert (await c.get("/api/me")).status_code == 401


async def test_over_https_the_csrf_cookie_is_host_prefixed_and_secure(instance):
    async with instance(NEXTAUTH_URL="https://testserver") as app:
        r = await app.client.get("/api/auth/csrf")
        line = r.headers["set-cookie"]
        token = r.json()["csrfToken"]
        assert line.startswith(f"__Host-next-auth.csrf-token={token}|")
        parts = [p.strip() for p in line.split(";")]
        assert "Secure" in parts and "Path=/" in parts and "HttpOnly" in parts
        assert not any(p.lower().startswith("domain") for p in parts), "__Host- forbids Domain"
        # The plain name is not read over https: its token does not verify.
        app.client.cookies.set(CSRF_COOKIE, line.split(";")[0].split("=", 1)[1])
        r = await app.client.post("/api/auth/signout", data={"csrfToken": token, "json": "true"})
        assert r.status_code == 403
