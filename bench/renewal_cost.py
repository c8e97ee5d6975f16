"""What a sliding session costs (auth/renewal.py): the re-issue alone in each cookie format,
and a whole `GET /api/auth/session` in process (SQLite, in-memory cache) when the cookie is
fresh (nothing re-issued) against one that is due (re-signed and its record's expiry written,
on every request here since the driver keeps sending the old cookie).

    .venv/bin/python -m bench.renewal_cost [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import timeit
from dataclasses import replace
from typing import Any

from bench.asgi_cost import scope_for


async def per_request(app: Any, scope: dict[str, Any], n: int) -> tuple[float, float, int]:
    """(CPU µs, wall µs) per request, and how many answers carried a Set-Cookie."""
    cookies = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal cookies
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message
            cookies += any(k == b"set-cookie" for k, _ in message["headers"])

    for _ in range(50):  # warm
        await app(dict(scope), receive, send)
    cookies = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return ((time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6,
            cookies)


async def main(n: int) -> None:
    data = tempfile.mkdtemp(prefix="regcopilot-renewal-cost-")
    os.environ.update(NEXTAUTH_SECRET="renewal-cost-" + "s" * 40, DATA_DIR=data,
                      DATABASE_URL=f"sqlite:///{data}/users.db", LOG_LEVEL="WARNING")
    from regcopilot.auth.nextauth import NextAuthTokens
    from regcopilot.auth.tokens import SessionTokens
    from regcopilot.web.app import create_app  # after the environment is set

    claims = SessionTokens("s" * 48, 86_400).issue(sub="0" * 32, email="a@example.com",
                                                   tenant="t", role=None)[1]
    for name, fmt in (("regcopilot (HS256)", SessionTokens("s" * 48, 86_400)),
                      ("nextauth (JWE A256GCM)", NextAuthTokens("s" * 48, 86_400))):
        loops = 5000
        # CPU time: what the server pays, and steadier than wall time on a shared machine.
        cost = timeit.timeit(lambda fmt=fmt: fmt.encode(fmt.renewed(claims)), number=loops,
                             timer=time.process_time)
        print(f"re-issue, {name:24} {cost / loops * 1e6:7.1f} µs CPU")

    app = create_app()
    async with app.router.lifespan_context(app):
        svc = app.services
        user = await svc.directory.add("bench@example.com", "-")
        workspace = (await svc.validator.validate(user.id)).tenant_id or ""
        token, fresh = svc.tokens.issue(sub=user.id, email=user.email, tenant=workspace,
                                        role=None)
        await svc.sessions.issued(fresh.jti, user.id, fresh.exp, "bench", "127.0.0.1")
        old = replace(fresh, iat=fresh.iat - 2 * svc.settings.SESSION_UPDATE_AGE_SECONDS,
                      exp=fresh.exp - 2 * svc.settings.SESSION_UPDATE_AGE_SECONDS)
        due = svc.tokens.encode(old)
        for name, cookie in (("fresh cookie", token), ("due cookie", due)):
            scope = scope_for("/api/auth/session", f"regcopilot.session-token={cookie}")
            cpu, wall, issued = await per_request(app, scope, n)
            print(f"GET /api/auth/session, {name:13} {cpu:7.1f} µs CPU {wall:7.1f} µs wall"
                  f"  ({issued} of {n} re-issued)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    asyncio.run(main(parser.parse_args().requests))
