"""Sessions: the signed cookie, its attributes, logout, expiry, tampering, and the login
endpoint's answers to bad input."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt

from tests.conftest import PASSWORD, TEST_SECRET
from tests.support import COOKIE, SECURE_COOKIE, eventually


def set_cookie_attrs(header: str) -> tuple[str, str, dict[str, str]]:
    first, *attrs = [p.strip() for p in header.split(";")]
    name, _, value = first.partition("=")
    flags = {}
    for a in attrs:
        k, _, v = a.partition("=")
        flags[k.lower()] = v
    return name, value, flags


async def as_cookie(app, token: str, path: str = "/api/me", name: str = COOKIE):
    app.client.cookies.clear()
    return await app.client.get(path, headers={"Cookie": f"{name}={token}"})


async def test_login_sets_a_signed_httponly_lax_cookie(instance):
    async with instance() as app:
        user_id = await app.add_user("alice@example.com", tenant="acme")
        r = await app.login("Alice@Example.com ")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["user"]["id"] == user_id and body["user"]["email"] == "alice@example.com"
        # The session's tenant is the user's workspace (a personal one made at first sign-in).
        tenant = body["user"]["tenantId"]
        assert tenant and tenant != "acme" and body["user"]["tenantRole"] == "owner"
        name, token, flags = set_cookie_attrs(r.headers["set-cookie"])
        assert name == COOKIE
        assert "httponly" in flags and flags["samesite"].lower() == "lax"
        assert flags["path"] == "/" and flags["max-age"] == "86400"
        assert "secure" not in flags

        claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
        assert claims["sub"] == user_id and claims["email"] == "alice@example.com"
        assert claims["tenant"] == claims["currentTenantId"] == tenant and claims["role"] is None
        assert claims["exp"] - claims["iat"] == 86400 and claims["jti"]
        assert jwt.get_unverified_header(token)["alg"] == "HS256"


async def test_https_url_gives_a_secure_prefixed_cookie(instance):
    async with instance(NEXTAUTH_URL="https://copilot.example.com") as app:
        await app.add_user("alice@example.com")
        r = await app.login("alice@example.com")
        assert r.status_code == 200
        name, token, flags = set_cookie_attrs(r.headers["set-cookie"])
        assert name == SECURE_COOKIE and "secure" in flags and "httponly" in flags
        assert (await as_cookie(app, token, name=SECURE_COOKIE)).status_code == 200
        # The unprefixed name is not what this deployment reads.
        assert (await as_cookie(app, token, name=COOKIE)).status_code == 401
        # Logout clears the prefixed cookie, Secure as well.
        app.client.cookies.clear()
        r = await app.client.post("/api/auth/logout",
                                  headers={"Cookie": f"{SECURE_COOKIE}={token}"})
        name, value, flags = set_cookie_attrs(r.headers["set-cookie"])
        assert name == SECURE_COOKIE and value == "" and flags["max-age"] == "0"
        assert "secure" in flags
        assert (await as_cookie(app, token, name=SECURE_COOKIE)).status_code == 401


async def test_logout_revokes_the_token(instance):
    async with instance() as app:
        await app.add_user("alice@example.com")
        assert (await app.login("alice@example.com")).status_code == 200
        token = app.client.cookies.get(COOKIE)
        assert (await app.client.get("/api/me")).status_code == 200

        r = await app.client.post("/api/auth/logout")
        assert r.status_code == 200
        assert f"{COOKIE}=;" in r.headers["set-cookie"]

        r = await as_cookie(app, token)
        assert r.status_code == 401, "a replayed cookie after logout is refused"
        assert f"{COOKIE}=;" in r.headers["set-cookie"]
        r = await as_cookie(app, token, "/")
        assert r.status_code == 303 and r.headers["location"] == "/login"

        # A new login gives a new session that works.
        assert (await app.login("alice@example.com")).status_code == 200
        assert app.client.cookies.get(COOKIE) != token
        assert (await app.client.get("/api/me")).status_code == 200
        # Logging out without a session is harmless.
        app.client.cookies.clear()
        assert (await app.client.post("/api/auth/logout")).status_code == 200


async def test_session_expires(instance):
    async with instance(SESSION_MAX_AGE_SECONDS=1) as app:
        await app.add_user("alice@example.com")
        assert (await app.login("alice@example.com")).status_code == 200
        token = app.client.cookies.get(COOKIE)
        assert (await as_cookie(app, token)).status_code == 200
        # Checked again on every use, even though the decoded token is remembered.
        await eventually(lambda: _status(as_cookie(app, token), 401), timeout=5, interval=0.1)


def forge(claims: dict, secret: str = TEST_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


async def test_expired_tampered_and_forged_tokens_are_refused(instance):
    async with instance() as app:
        user_id = await app.add_user("alice@example.com")
        now = int(time.time())
        good = {"sub": user_id, "email": "alice@example.com", "tenant": "default",
                "role": None, "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
        assert (await as_cookie(app, forge(good))).status_code == 200

        expired = forge({**good, "iat": now - 100, "exp": now - 10})
        header, payload, sig = forge(good).split(".")
        flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
        admin_claims = base64.urlsafe_b64encode(
            json.dumps({**good, "role": "admin"}).encode()
        ).decode().rstrip("=")
        unsigned = jwt.encode(good, None, algorithm="none")
        bad_tokens = {
            "expired": expired,
            "bad signature": f"{header}.{payload}.{flipped}",
            "payload swapped": f"{header}.{admin_claims}.{sig}",
            "other secret": forge(good, secret="another-secret-" + "y" * 40),
            "alg none": unsigned,
            "no jti": forge({k: v for k, v in good.items() if k != "jti"}),
            "no exp": forge({k: v for k, v in good.items() if k != "exp"}),
            "not a uuid subject": forge({**good, "sub": "alice"}),
            "garbage": "not-a-jwt",
            "oversized": "a" * 5000,
        }
        for what, token in bad_tokens.items():
            r = await as_cookie(app, token)
            assert r.status_code == 401, what
            assert f"{COOKIE}=;" in r.headers.get("set-cookie", ""), what
        # None of them reached the directory.
        assert app.counters()["databaseQueries"] == 1


async def test_wrong_password_and_unknown_email_look_the_same(instance):
    async with instance() as app:
        await app.add_user("alice@example.com")
        wrong = await app.login("alice@example.com", "not the password")
        unknown = await app.login("nobody@example.com", PASSWORD)
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json() and wrong.json()["error"]
        assert "set-cookie" not in wrong.headers and "set-cookie" not in unknown.headers


async def test_login_input_errors(instance):
    async with instance() as app:
        await app.add_user("alice@example.com")
        cases = [
            ({"email": "alice@example.com"}, 422),
            ({"password": PASSWORD}, 422),
            ({}, 422),
            ({"email": 5, "password": PASSWORD}, 422),
        ]
        for body, status in cases:
            r = await app.client.post("/api/auth/login", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.json().get("error"), (body, r.text)
        r = await app.client.post("/api/auth/login", content=b"{not json",
                                  headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]
        r = await app.client.post("/api/auth/login", json=["alice@example.com", PASSWORD])
        assert r.status_code == 400 and r.json()["error"]
        r = await app.client.post("/api/auth/login", content=b"email=alice",
                                  headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]
        r = await app.client.post("/api/auth/login", content=b"")
        assert r.status_code == 415
        assert app.client.cookies.get(COOKIE) is None


async def test_auth_session_endpoint(instance):
    async with instance() as app:
        user_id = await app.add_user("alice@example.com", admin=True)
        r = await app.client.get("/api/auth/session")
        assert r.status_code == 200 and r.json() == {}

        assert (await app.login("alice@example.com")).status_code == 200
        r = await app.client.get("/api/auth/session")
        assert r.status_code == 200
        body = r.json()
        me = (await app.client.get("/api/me")).json()
        assert body["user"] == {"id": user_id, "email": "alice@example.com",
                                "tenantId": me["tenantId"], "tenantRole": "owner",
                                "tenantName": "Personal Workspace", "role": "admin",
                                # next-auth/react's useSession fields, added for the move;
                                # a user without a name shows the email, as upstream
                                "name": "alice@example.com", "image": None,
                                "currentTenantId": me["tenantId"]}
        assert body["expires"]

        # A bad cookie on this public route: no session, and no refusal either.
        r = await as_cookie(app, "not-a-jwt", "/api/auth/session")
        assert r.status_code == 200 and r.json() == {}


async def _status(response, expected: int) -> bool:
    return (await response).status_code == expected
