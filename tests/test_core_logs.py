"""The guide's four log lines, verbatim, at the moments it names (operators grep for them)."""

from __future__ import annotations

import logging

import pytest

from tests.support import free_port

NO_REDIS = "REDIS_URL not configured - using in-memory cache"
CONNECTED = "Redis cache connected successfully"
MISS = "Cache miss - validating user against database"
HIT = "Using cached validation result"



def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("regcopilot")]


@pytest.mark.parametrize(("cache", "start_line", "absent"),
                         [("memory", NO_REDIS, CONNECTED), ("redis", CONNECTED, NO_REDIS)])
async def test_the_guides_log_lines(instance, caplog, cache, start_line, absent):
    caplog.set_level(logging.DEBUG, logger="regcopilot")
    async with instance("sqlite", cache) as app:
        assert messages(caplog).count(start_line) == 1
        assert absent not in messages(caplog)

        await app.add_user("alice@example.com")
        assert (await app.login("alice@example.com")).status_code == 200
        caplog.clear()
        assert (await app.client.get("/api/me")).status_code == 200
        assert MISS in messages(caplog) and HIT not in messages(caplog)

        caplog.clear()
        assert (await app.client.get("/api/me")).status_code == 200
        assert HIT in messages(caplog) and MISS not in messages(caplog)


async def test_start_line_when_redis_is_unreachable_names_the_fallback(instance, caplog):
    caplog.set_level(logging.DEBUG, logger="regcopilot")
    async with instance("sqlite", f"redis://127.0.0.1:{free_port()}/0"):
        msgs = messages(caplog)
        assert CONNECTED not in msgs and NO_REDIS not in msgs
        failures = [r for r in caplog.records
                    if r.name.startswith("regcopilot") and r.levelno >= logging.WARNING
                    and "Redis" in r.getMessage()]
        assert failures, msgs
