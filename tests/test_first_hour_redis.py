"""A dead Redis while serving goes on: the outage is logged once, then reminded with its age,
and the probe backs off (issue 16: 0.5 s probes logged ~7,200 error lines an hour)."""

from __future__ import annotations

import itertools
import logging
import time

from regcopilot.cache import tiers
from regcopilot.cache.redis import RedisStore
from tests.conftest import PASSWORD
from tests.support import RedisServer, eventually, free_port


async def test_dead_redis_is_logged_once_then_reminded_and_probed_with_back_off(
        instance, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="regcopilot")
    # A reminder a second instead of a minute, so the test sees two of them.
    monkeypatch.setattr(tiers, "REMINDER_SECONDS", 1.0)
    probes: list[float] = []
    ping = RedisStore.ping

    async def counted(self: RedisStore) -> None:
        probes.append(time.monotonic())
        await ping(self)

    monkeypatch.setattr(RedisStore, "ping", counted)
    port = free_port()  # nothing listens there
    async with instance("sqlite", f"redis://127.0.0.1:{port}/0") as app:
        await eventually(lambda: caplog.text.count("Redis cache still unavailable after") >= 2,
                         timeout=15, interval=0.05)
        await app.add_user("alice@example.com")
        assert (await app.login("alice@example.com", PASSWORD)).status_code == 200
        assert (await app.client.get("/api/me")).status_code == 200  # serving goes on

        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "Redis cache unavailable" in errors[0].getMessage(), errors
        reminders = [r.getMessage() for r in caplog.records
                     if "still unavailable after" in r.getMessage()]
        assert all(r.levelno == logging.WARNING for r in caplog.records
                   if "still unavailable" in r.getMessage())
        assert all(" s (" in m and "using in-memory cache" in m for m in reminders), reminders
        gaps = [b - a for a, b in itertools.pairwise(probes)]
        assert gaps and gaps[0] < 0.9, gaps  # the first retry is prompt
        assert max(gaps) >= 1.5, gaps  # then it backs off
        assert max(gaps) < 3.0, gaps  # capped: recovery stays prompt

        server = RedisServer(port=port).start()
        try:
            started = time.monotonic()
            # The breaker closes on the probe's answer; the line follows once the missed
            # invalidations are replayed: wait for both, then count.
            await eventually(lambda: app.services.cache.backend == "redis"
                             and "Redis cache connected successfully" in caplog.text, timeout=5)
            print(f"\nback to redis {time.monotonic() - started:.2f} s after Redis started; "
                  f"probe gaps {[round(g, 2) for g in gaps]}")
            assert caplog.text.count("Redis cache connected successfully") == 1
        finally:
            server.stop()
