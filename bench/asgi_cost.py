"""CPU per request inside the app, without a server or a network: an ASGI driver calls the app
N times and divides the process CPU time. Compares a bare one-route FastAPI app with our
/api/health, /api/me and GET /api/auth/session (a signed-in user, SQLite, in-memory cache).

    .venv/bin/python -m bench.asgi_cost [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def scope_for(path: str, cookie: str | None = None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:3000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 5555),
            "server": ("127.0.0.1", 3000)}


async def per_request_us(app: Any, scope: dict[str, Any], n: int) -> float:
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(200):  # warm
        await app(dict(scope), receive, send)
    if statuses[-1] != 200:
        raise SystemExit(f"{scope['path']} answered {statuses[-1]}")
    started = time.process_time()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / n * 1e6


@asynccontextmanager
async def ours_signed_in() -> AsyncIterator[tuple[Any, str]]:
    """Our app on SQLite with the in-memory cache, started, and a signed-in user's cookie."""
    data = tempfile.mkdtemp(prefix="regcopilot-asgi-cost-")
    os.environ.update(NEXTAUTH_SECRET="asgi-cost-" + "s" * 40, DATA_DIR=data,
                      DATABASE_URL=f"sqlite:///{data}/users.db", LOG_LEVEL="WARNING")
    from regcopilot.web.app import create_app  # after the environment is set

    ours = create_app()
    async with ours.router.lifespan_context(ours):
        yield ours, await signed_in_cookie(ours.services, "bench@example.com")


async def signed_in_cookie(services: Any, email: str) -> str:
    """A new user's session cookie, issued in the workspace the session is served in, as a
    sign-in would (which makes the personal one): a token naming another one is re-issued on
    every request."""
    from regcopilot.workspaces.store import WorkspaceStore

    login = await services.directory.add(email, "-")
    workspace = (await WorkspaceStore(services.directory).ensure_personal(login)).tenant_id
    token, _ = services.tokens.issue(sub=login.id, email=login.email, tenant=workspace or "",
                                     role=None)
    return f"regcopilot.session-token={token}"


async def main(n: int) -> None:
    from bench.bare_app import app as bare

    async with ours_signed_in() as (ours, cookie):
        cases = (("bare FastAPI /api/health", bare, scope_for("/api/health")),
                 ("ours /api/health", ours, scope_for("/api/health")),
                 ("ours /api/me", ours, scope_for("/api/me", cookie)),
                 ("ours GET /api/auth/session", ours, scope_for("/api/auth/session", cookie)))
        for name, app, scope in cases:
            print(f"{name:28} {await per_request_us(app, scope, n):7.1f} µs per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().requests))
