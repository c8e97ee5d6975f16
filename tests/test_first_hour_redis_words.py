"""Issue 25, item 5: Redis problems worded for the operator. The guide's line is kept verbatim
and followed by a hint naming REDIS_URL and `regcopilot doctor`; a password given to a Redis
that has none (redis-py's HELLO AUTH is accepted there whatever the password) is said once by
the app and by `doctor`."""

from __future__ import annotations

import logging
import subprocess

from regcopilot.cache.redis import UNNEEDED_PASSWORD
from tests.commands import REGCOPILOT, cli_env
from tests.support import RedisServer, free_port


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


async def test_unreachable_redis_keeps_the_guides_line_and_adds_the_hint(instance, caplog):
    caplog.set_level(logging.INFO, logger="regcopilot")
    async with instance("sqlite", f"redis://127.0.0.1:{free_port()}/0"):
        pass
    said = messages(caplog)
    at = next(i for i, m in enumerate(said) if m.startswith("Redis cache unavailable ("))
    assert said[at].endswith(") - using in-memory cache"), said[at]
    hint = said[at + 1]
    assert "REDIS_URL" in hint and "regcopilot doctor" in hint, said


async def test_a_password_redis_does_not_have_is_said_once(instance, caplog, tmp_path):
    server = RedisServer().start()
    try:
        with_password = server.url.replace("redis://", "redis://:not-needed@", 1)
        caplog.set_level(logging.INFO, logger="regcopilot")
        async with instance("sqlite", with_password) as app:
            await app.add_user("pw@example.com")
            assert (await app.login("pw@example.com")).status_code == 200
            for _ in range(3):
                assert (await app.client.get("/api/me")).status_code == 200
            await app.services.cache._check()  # the probe's own check, run again
        assert app.services.cache.backend == "redis"  # it works: it is only said
        assert messages(caplog).count(UNNEEDED_PASSWORD) == 1, messages(caplog)

        env = cli_env(tmp_path) | {"REDIS_URL": with_password}
        done = subprocess.run([REGCOPILOT, "doctor"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        line = next(x for x in done.stdout.splitlines() if "redis auth+ping" in x)
        assert line.startswith("warn") and UNNEEDED_PASSWORD in line, done.stdout
    finally:
        server.stop()


async def test_a_needed_password_is_not_questioned(instance, caplog):
    server = RedisServer(password="s3cret-pw").start()
    try:
        caplog.set_level(logging.INFO, logger="regcopilot")
        async with instance("sqlite", server.url) as app:
            assert app.services.cache.backend == "redis"
        assert UNNEEDED_PASSWORD not in messages(caplog)
        assert "Redis cache connected successfully" in messages(caplog)
    finally:
        server.stop()
