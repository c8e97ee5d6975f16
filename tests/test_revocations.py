"""Logout on one instance ends the session on the others — also when Redis was away."""

from __future__ import annotations

from tests.conftest import serve
from tests.support import COOKIE, RedisServer, eventually


async def test_logout_made_while_redis_was_down_reaches_other_instances(settings_for):
    server = RedisServer().start()
    try:
        settings = settings_for("sqlite", server.url)
        async with serve(settings) as a, serve(settings) as b:
            await a.add_user("carol@example.com")
            assert (await a.login("carol@example.com")).status_code == 200
            cookie = a.client.cookies[COOKIE]
            b.client.cookies.set(COOKIE, cookie)
            assert (await b.client.get("/api/me")).status_code == 200

            server.kill()
            assert (await a.client.post("/api/auth/logout")).status_code == 200
            b.client.cookies.set(COOKIE, cookie)
            # B cannot know yet: the revocation is held by A until Redis answers again.
            server.start()

            async def b_refuses() -> bool:
                b.client.cookies.set(COOKIE, cookie)
                return (await b.client.get("/api/me")).status_code == 401

            await eventually(b_refuses, timeout=10)
    finally:
        server.stop()
