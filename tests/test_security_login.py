"""Hostile sign-in requests: injection strings, odd unicode, huge fields, missing fields, wrong
content types, malformed JSON — always a 4xx with a message that says what is wrong, never a
500, never a session; the directory is unharmed afterwards."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PASSWORD
from tests.support import COOKIE

INJECTIONS = [
    "' OR '1'='1",
    "admin@example.com' --",
    "admin@example.com'; DROP TABLE auth.users; --",
    '" OR ""="',
    "x@y.z' UNION SELECT id, email, encrypted_password FROM auth.users --",
    "admin@example.com\u0000",
    "admin@example.com%00",
    "*)(uid=*))(|(uid=*",
    "{\"$gt\": \"\"}",
]
ODD_UNICODE = [
    "ädmin@exämple.com",
    "ＡＤＭＩＮ@example.com",  # fullwidth letters
    "admin\u200b@example.com",  # zero-width space
    "\U0001f512@\U0001f4a5.com",
    "admin@example.com\u202e",  # right-to-left override
    "\ud800@example.com",  # lone surrogate
]


def ok_4xx(r, name) -> None:
    assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:200])
    assert r.headers["content-type"].startswith("application/json"), name
    assert r.json()["error"], name
    assert COOKIE not in r.headers.get("set-cookie", ""), name


def login_json(email: str, password: str) -> bytes:
    # ensure_ascii: lone surrogates travel as JSON escapes, as an attacker would send them.
    return json.dumps({"email": email, "password": password}).encode()


@pytest.mark.parametrize("directory", ["sqlite", "postgres"])
async def test_injection_and_unicode_are_plain_failed_logins(instance, directory):
    async with instance(directory, LOGIN_MAX_FAILURES_PER_ACCOUNT=1000,
                        LOGIN_MAX_FAILURES_PER_ADDRESS=1000) as app:
        await app.add_user("admin@example.com", admin=True)
        # Each refused attempt costs a bcrypt verify (~0.3 s): SQLite gets a short list.
        strings = INJECTIONS + ODD_UNICODE if directory == "postgres" else INJECTIONS[:3]
        attempts = [(email, PASSWORD) for email in strings]
        attempts += [("admin@example.com", p) for p in (INJECTIONS[0], "\x00", "\ud800")]
        for email, password in attempts:
            r = await app.client.post("/api/auth/login", content=login_json(email, password),
                                      headers={"content-type": "application/json"})
            ok_4xx(r, (email, password))
            assert r.status_code in (401, 422), (email, password, r.status_code)
            if "\x00" in email + password or "\ud800" in email + password:
                assert (r.status_code == 422 and "email" in r.json()["error"]) or (
                    "password" in r.json()["error"]), r.text
        # The directory is intact and the real password still works.
        assert len(await app.services.directory.list()) == 1
        assert (await app.login("admin@example.com")).status_code == 200


async def test_bad_shapes_sizes_and_content_types(instance):
    async with instance() as app:
        await app.add_user("admin@example.com")
        post = app.client.post
        cases = {
            "email too long": post("/api/auth/login", json={"email": "a" * 10_000 + "@x.io",
                                                            "password": PASSWORD}),
            "password too long": post("/api/auth/login", json={"email": "admin@example.com",
                                                               "password": "p" * 100_000}),
            "missing password": post("/api/auth/login", json={"email": "admin@example.com"}),
            "missing email": post("/api/auth/login", json={"password": PASSWORD}),
            "empty object": post("/api/auth/login", json={}),
            "email a number": post("/api/auth/login", json={"email": 12345, "password": "x"}),
            "email a list": post("/api/auth/login", json={"email": ["a@b.c"], "password": "x"}),
            "password an object": post("/api/auth/login", json={"email": "admin@example.com",
                                                                "password": {"$ne": ""}}),
            "password null": post("/api/auth/login", json={"email": "admin@example.com",
                                                           "password": None}),
            "JSON array": post("/api/auth/login", json=[{"email": "admin@example.com",
                                                         "password": PASSWORD}]),
            "JSON string": post("/api/auth/login", json="admin@example.com"),
            "JSON null": post("/api/auth/login", content=b"null",
                              headers={"content-type": "application/json"}),
            "malformed JSON": post("/api/auth/login", content=b'{"email": "admin@',
                                   headers={"content-type": "application/json"}),
            "not UTF-8": post("/api/auth/login", content=b'{"email": "\xff\xfe"}',
                              headers={"content-type": "application/json"}),
            "deeply nested": post("/api/auth/login", content=b"[" * 100_000 + b"]" * 100_000,
                                  headers={"content-type": "application/json"}),
            "huge body": post("/api/auth/login", content=b'{"email": "' + b"a" * 2_000_000
                              + b'"}', headers={"content-type": "application/json"}),
            "text/plain": post("/api/auth/login", content=b"email=admin@example.com",
                               headers={"content-type": "text/plain"}),
            "no content type": post("/api/auth/login", content=b'{"email": "a@b.c"}'),
            "xml": post("/api/auth/login", content=b"<login/>",
                        headers={"content-type": "application/xml"}),
            "empty JSON body": post("/api/auth/login", content=b"",
                                    headers={"content-type": "application/json"}),
        }
        for name, request in cases.items():
            ok_4xx(await request, name)

        # Past bcrypt's 72 bytes (bcrypt >= 5 raises on it): a failed login, not a 500.
        for email in ("admin@example.com", "nobody@example.com"):
            r = await post("/api/auth/login", json={"email": email, "password": "é" * 100})
            assert r.status_code == 401, r.text
        r = await post("/api/auth/login", content=b"x", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and "application/json" in r.json()["error"]
        r = await post("/api/auth/login", json={"email": "admin@example.com"})
        assert r.status_code == 422 and "password" in r.json()["error"]
        r = await post("/api/auth/login", content=b"{",
                       headers={"content-type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json()["error"]
        r = await post("/api/auth/login", json=[])
        assert r.status_code == 400 and "object" in r.json()["error"]


async def test_form_login_errors_render_the_form(instance):
    async with instance() as app:
        await app.add_user("admin@example.com")
        for data in ({"email": "admin@example.com"}, {"email": "' OR 1=1 --", "password": "x"},
                     {"email": "a" * 5000, "password": "x"}):
            r = await app.client.post("/api/auth/login", data=data)
            assert 400 <= r.status_code < 500, (data, r.status_code)
            assert "<form" in r.text and 'class="error"' in r.text
            assert COOKIE not in r.headers.get("set-cookie", "")
        # A file where a field belongs is no field at all.
        r = await app.client.post("/api/auth/login", files={"email": ("e.txt", b"a@b.c"),
                                                            "password": ("p.txt", b"x")})
        assert r.status_code == 422 and "<form" in r.text


def test_unknown_or_unusable_accounts_cost_a_real_bcrypt_verify(monkeypatch):
    """Without a timing assertion: every case runs at least one verify against a genuine
    bcrypt hash of the configured cost, as a known account does."""
    from regcopilot.auth.passwords import Hasher

    hasher = Hasher(rounds=4)
    stored = hasher.hash("correct horse")
    seen: list[str] = []
    real = hasher._hash.verify

    def spy(password: str, hashed: str) -> bool:
        seen.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(hasher._hash, "verify", spy)
    for password, hashed in [("correct horse", stored), ("guess", stored), ("guess", None),
                             ("guess", ""), ("guess", "not-a-hash"), ("x" * 2000, stored)]:
        seen.clear()
        hasher.verify(password, hashed)
        assert any(h.startswith("$2b$04$") for h in seen), (password[:10], hashed, seen)
