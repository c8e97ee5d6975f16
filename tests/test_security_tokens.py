"""Hostile session tokens: every forgery, expiry and malformation is a 401 — never a 500, never
a pass — and each one is counted in the observability JSON's `security` block."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest

from tests.conftest import TEST_SECRET
from tests.support import COOKIE

BEARER = {"Authorization": "Bearer monitor-token"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, payload: dict, signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def signed(payload: dict, key: str = TEST_SECRET) -> str:
    """HS256 by hand, so claims PyJWT would refuse to encode can be signed anyway."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    mac = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def claims(user_id: str, **changes) -> dict:
    now = int(time.time())
    body = {"sub": user_id, "email": "eve@example.com", "tenant": "default", "role": "admin",
            "iat": now, "exp": now + 3600, "jti": uuid.uuid4().hex}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def forgeries(user_id: str, good: str) -> dict[str, str | bytes]:
    head, payload, sig = good.split(".")
    tampered_body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_body["role"] = "admin"
    tampered_body["sub"] = str(uuid.uuid4())
    now = int(time.time())
    return {
        "tampered payload": f"{head}.{b64(json.dumps(tampered_body).encode())}.{sig}",
        "truncated signature": f"{head}.{payload}.{sig[:-4]}",
        "wrong key": jwt.encode(claims(user_id), "another-secret-" + "y" * 40, "HS256"),
        "alg none": unsigned({"alg": "none", "typ": "JWT"}, claims(user_id)),
        "alg None, signature kept": unsigned({"alg": "None"}, claims(user_id)) + sig,
        "HS512 with the right key": jwt.encode(claims(user_id), TEST_SECRET, "HS512"),
        "HS384 with the right key": jwt.encode(claims(user_id), TEST_SECRET, "HS384"),
        "RS256-shaped": unsigned({"alg": "RS256", "typ": "JWT"}, claims(user_id), b"x" * 256),
        "ES256-shaped": unsigned({"alg": "ES256", "kid": "../../etc/passwd"}, claims(user_id),
                                 b"y" * 64),
        "expired": jwt.encode(claims(user_id, iat=now - 7200, exp=now - 3600), TEST_SECRET),
        "nbf in the future": jwt.encode(claims(user_id, nbf=now + 3600), TEST_SECRET),
        "iat in the future": jwt.encode(claims(user_id, iat=now + 3600, exp=now + 7200),
                                        TEST_SECRET),
        "missing sub": jwt.encode(claims(user_id, sub=None), TEST_SECRET),
        "non-UUID sub": jwt.encode(claims("admin@example.com' OR '1'='1"), TEST_SECRET),
        "numeric sub": signed({**claims(user_id), "sub": 12345}),
        "list sub": signed({**claims(user_id), "sub": [user_id]}),
        "missing exp": jwt.encode(claims(user_id, exp=None), TEST_SECRET),
        "string exp": signed({**claims(user_id), "exp": "tomorrow"}),
        "float iat": signed({**claims(user_id), "iat": time.time()}),
        "missing jti": jwt.encode(claims(user_id, jti=None), TEST_SECRET),
        "huge jti": jwt.encode(claims(user_id, jti="j" * 2000), TEST_SECRET),
        "oversized cookie": jwt.encode(claims(user_id, pad="p" * 6000), TEST_SECRET),
        "payload not an object": f"{head}.{b64(b'[1,2,3]')}.{sig}",
        "not base64": "!!!.@@@.###",
        "two segments": f"{head}.{payload}",
        "garbage": "garbage",
        "unicode": "тест.токен.🔑",
        "header not JSON": f"{b64(b'{not json')}.{payload}.{sig}",
    }


async def as_cookie(app, token: str | bytes, path: str = "/api/me"):
    app.client.cookies.clear()
    raw = token.encode("utf-8") if isinstance(token, str) else token
    return await app.client.get(path, headers={"cookie": COOKIE.encode() + b"=" + raw})


async def security(app) -> dict:
    r = await app.client.get("/api/observability", headers=BEARER)
    assert r.status_code == 200, r.text
    return r.json()["security"]


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_forged_and_malformed_tokens_are_401_and_counted(instance):
    async with instance() as app:
        user_id = await app.add_user("eve@example.com", admin=True)
        assert (await app.login("eve@example.com")).status_code == 200
        good = app.client.cookies.get(COOKIE)
        assert (await as_cookie(app, good)).status_code == 200

        cases = forgeries(user_id, good)
        before = (await security(app))["invalidTokens"]
        for name, token in cases.items():
            r = await as_cookie(app, token)
            assert r.status_code == 401, (name, r.status_code, r.text)
            assert r.json()["error"], name
            assert f"{COOKIE}=;" in r.headers.get("set-cookie", ""), name  # cookie cleared
            page = await as_cookie(app, token, "/")
            assert page.status_code == 303 and page.headers["location"] == "/login", name
            admin = await as_cookie(app, token, "/api/admin/users")
            assert admin.status_code == 401, name

        report = await security(app)
        # Each forgery was presented three times (API, page, admin route).
        assert report["invalidTokens"] - before == 3 * len(cases), report
        reasons = report["invalidTokensByReason"]
        for reason in ("bad signature", "algorithm not allowed", "expired", "not yet valid",
                       "bad subject", "oversized", "malformed"):
            assert reasons.get(reason, 0) > 0, (reason, reasons)
        assert any(e["type"] == "invalid_token" for e in report["recentEvents"])
        # Nothing of a token is echoed back into the report.
        assert good not in json.dumps(report)

        # The genuine session is untouched by all of that.
        assert (await as_cookie(app, good)).status_code == 200


async def test_raw_bytes_and_broken_cookie_headers_are_401(instance):
    async with instance() as app:
        await app.add_user("eve@example.com")
        bad_headers = [
            COOKIE.encode() + b"=\xff\xfe\x00\x01",
            COOKIE.encode() + b'="unterminated',
            COOKIE.encode() + b"=" + b"A" * 100_000,
            b"; ; =; " + COOKIE.encode() + b"=;;;",
            COOKIE.encode() + b"=a.b.c; " + COOKIE.encode() + b"=d.e.f",
        ]
        before = (await security(app))["invalidTokens"]
        for raw in bad_headers:
            app.client.cookies.clear()
            r = await app.client.get("/api/me", headers={"cookie": raw})
            assert r.status_code == 401, (raw[:40], r.status_code, r.text)
        # All but the empty value carried something that claimed to be a token: counted.
        assert (await security(app))["invalidTokens"] - before == len(bad_headers) - 1
        for header in ({"authorization": "Bearer " + "x" * 10_000},
                       {"authorization": "Basic Zm9vOmJhcg=="}):
            r = await app.client.get("/api/observability", headers=header)
            assert r.status_code == 401, header


async def test_revoked_session_is_refused_everywhere(instance):
    async with instance() as app:
        await app.add_user("eve@example.com")
        assert (await app.login("eve@example.com")).status_code == 200
        token = app.client.cookies.get(COOKIE)
        assert (await app.client.post("/api/auth/logout")).status_code == 200
        before = (await security(app))["invalidTokensByReason"].get("revoked", 0)
        for path in ("/api/me", "/api/admin/users"):
            r = await as_cookie(app, token, path)
            assert r.status_code == 401 and r.json()["error"] == "session ended"
        r = await as_cookie(app, token, "/api/auth/session")
        assert r.status_code == 200 and r.json() == {}
        after = (await security(app))["invalidTokensByReason"]["revoked"]
        assert after - before == 3


async def test_clock_skew_within_the_leeway_is_accepted_beyond_it_refused(instance):
    """Another host whose clock runs ahead signs tokens dated in our future."""
    async with instance(TOKEN_CLOCK_LEEWAY_SECONDS=60) as app:
        user_id = await app.add_user("eve@example.com")
        now = int(time.time())
        max_age = app.services.settings.SESSION_MAX_AGE_SECONDS

        def minted(ahead: int, **changes) -> str:
            body = claims(user_id, iat=now + ahead, exp=now + ahead + 3600)
            return jwt.encode({**body, **changes}, TEST_SECRET)

        for ahead in (2, 30):
            r = await as_cookie(app, minted(ahead))
            assert r.status_code == 200, (ahead, r.text)
            r = await as_cookie(app, minted(0, nbf=now + ahead))
            assert r.status_code == 200, (ahead, "nbf", r.text)
        # A full-length session from a host 30 s ahead is still within the cap.
        assert (await as_cookie(app, minted(30, exp=now + 30 + max_age))).status_code == 200

        before = (await security(app))["invalidTokensByReason"]
        refused = {
            "iat beyond the leeway": minted(600),
            "nbf beyond the leeway": minted(0, nbf=now + 600),
            "exp ten years ahead": minted(0, exp=now + 10 * 365 * 86_400),
            "exp just past max age and leeway": minted(0, exp=now + max_age + 120),
        }
        for name, token in refused.items():
            r = await as_cookie(app, token)
            assert r.status_code == 401, (name, r.text)
        after = (await security(app))["invalidTokensByReason"]
        assert after.get("not yet valid", 0) - before.get("not yet valid", 0) == 2, after
        assert after.get("lifetime too long", 0) - before.get("lifetime too long", 0) == 2, after


async def test_leeway_is_a_setting(instance):
    async with instance(TOKEN_CLOCK_LEEWAY_SECONDS=5) as app:
        user_id = await app.add_user("eve@example.com")
        now = int(time.time())
        ahead = jwt.encode(claims(user_id, iat=now + 30, exp=now + 3630), TEST_SECRET)
        assert (await as_cookie(app, ahead)).status_code == 401


async def test_duplicate_session_cookies_are_refused_and_counted(instance):
    async with instance() as app:
        await app.add_user("eve@example.com")
        assert (await app.login("eve@example.com")).status_code == 200
        good = app.client.cookies.get(COOKIE)
        app.client.cookies.clear()
        one_header = [("cookie", f"{COOKIE}={good}; {COOKIE}=garbage")]
        planted_first = [("cookie", f"{COOKIE}=garbage; {COOKIE}={good}")]
        two_headers = [("cookie", f"{COOKIE}={good}"), ("cookie", f"{COOKIE}={good}")]
        for headers in (one_header, planted_first, two_headers):
            r = await app.client.get("/api/me", headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert f"{COOKIE}=;" in r.headers.get("set-cookie", "")
        reasons = (await security(app))["invalidTokensByReason"]
        assert reasons.get("duplicate-cookie") == 3, reasons

        # A cookie whose name merely ends with ours is someone else's: ignored.
        suffix = [("cookie", f"__Secure-{COOKIE}=garbage; x{COOKIE}=junk; {COOKIE}={good}")]
        assert (await app.client.get("/api/me", headers=suffix)).status_code == 200


@pytest.mark.parametrize("cache", ["memory", "redis"])
async def test_a_reused_answer_from_a_host_whose_clock_runs_ahead_still_sees_the_sign_out(
        instance, cache):
    """A session signed by a host 30 s ahead, answered from its reused answer (warm), is
    refused on its next request once signed out, and stays refused: the revocation is held
    whatever the clocks say, not read against a deadline of its own."""
    async with instance("sqlite", cache, TOKEN_CLOCK_LEEWAY_SECONDS=60) as app:
        user_id = await app.add_user("eve@example.com")
        now = int(time.time())
        body = claims(user_id, iat=now + 30, exp=now + 30 + 3600)
        token = jwt.encode(body, TEST_SECRET)
        for _ in range(3):  # judged once, then reused
            assert (await as_cookie(app, token)).status_code == 200
        await app.services.sessions.logout(body["jti"], user_id, body["exp"])
        for _ in range(3):
            r = await as_cookie(app, token)
            assert r.status_code == 401 and r.json()["error"] == "session ended", r.text
