"""Brute force: failed sign-ins are limited per account and per client address — shared by all
instances through Redis, per process without it — with 429 + Retry-After, counted."""

from __future__ import annotations

import contextlib

import pytest

from tests.conftest import PASSWORD, serve
from tests.support import free_port

BEARER = {"Authorization": "Bearer monitor-token"}
LIMITS = {"LOGIN_MAX_FAILURES_PER_ACCOUNT": 3, "LOGIN_MAX_FAILURES_PER_ADDRESS": 6,
          "LOGIN_LOCKOUT_SECONDS": 120}


async def attempt(app, email: str, password: str = "wrong password"):
    app.client.cookies.clear()
    return await app.client.post("/api/auth/login", json={"email": email, "password": password})


def assert_limited(r) -> None:
    assert r.status_code == 429, r.text
    retry = int(r.headers["retry-after"])
    assert 0 < retry <= LIMITS["LOGIN_LOCKOUT_SECONDS"]
    assert "try again" in r.json()["error"].lower()


@pytest.mark.parametrize(("directory", "cache"),
                         [("sqlite", "memory"), ("sqlite", "redis"), ("gotrue", "redis")])
async def test_account_lockout_then_address_limit(instance, directory, cache):
    async with instance(directory, cache, **LIMITS) as app:
        await app.add_user("victim@example.com")
        await app.add_user("other@example.com")
        for _ in range(3):
            assert (await attempt(app, "victim@example.com")).status_code == 401
        # Locked: even the right password waits, and the case of the email does not matter.
        assert_limited(await attempt(app, "victim@example.com", PASSWORD))
        assert_limited(await attempt(app, "VICTIM@example.com "))
        # Another account from the same address still gets its own chances...
        assert (await attempt(app, "other@example.com", PASSWORD)).status_code == 200
        for i in range(3):
            assert (await attempt(app, f"nobody{i}@example.com")).status_code == 401
        # ...until the address has failed 6 times, on any accounts.
        assert_limited(await attempt(app, "other@example.com", PASSWORD))
        assert_limited(await attempt(app, "fresh@example.com"))

        security = (await app.client.get("/api/observability", headers=BEARER)).json()["security"]
        assert security["failedLogins"] == 6
        assert security["rateLimited"] == 4
        assert security["rateLimitedBy"] == {"account": 2, "address": 2}


async def test_success_resets_the_account_count(instance):
    async with instance("sqlite", "memory", **LIMITS) as app:
        await app.add_user("alice@example.com")
        for _ in range(2):
            assert (await attempt(app, "alice@example.com")).status_code == 401
        assert (await attempt(app, "alice@example.com", PASSWORD)).status_code == 200
        for _ in range(2):
            assert (await attempt(app, "alice@example.com")).status_code == 401
        assert (await attempt(app, "alice@example.com", PASSWORD)).status_code == 200


async def test_two_instances_share_the_limit_through_redis(settings_for, pg_clean):
    limits = {**LIMITS, "LOGIN_MAX_FAILURES_PER_ADDRESS": 100}
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(serve(settings_for("postgres", "redis", **limits)))
        b = await stack.enter_async_context(serve(settings_for("postgres", "redis", **limits)))
        await a.add_user("shared@example.com")
        assert (await attempt(a, "shared@example.com")).status_code == 401
        assert (await attempt(b, "shared@example.com")).status_code == 401
        assert (await attempt(a, "shared@example.com")).status_code == 401
        # Three failures spread over two instances lock the account on both.
        assert_limited(await attempt(b, "shared@example.com", PASSWORD))
        assert_limited(await attempt(a, "shared@example.com", PASSWORD))


async def test_limits_hold_per_process_while_redis_is_unreachable(instance):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with instance("sqlite", dead, **LIMITS) as app:
        await app.add_user("victim@example.com")
        for _ in range(3):
            assert (await attempt(app, "victim@example.com")).status_code == 401
        assert_limited(await attempt(app, "victim@example.com", PASSWORD))
