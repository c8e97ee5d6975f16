"""The server's own CPU per request without sockets: uvicorn's HTTP protocol (ours with its
connection guards, GuardedHttpProtocol; plain httptools for the others) is fed request bytes
on a fake transport under uvloop, and the response is awaited. Everything the server process
does per request is in it except the socket calls and the epoll wake-up, which are the same for
every app — so differences between variants here are differences in their own code.

    .venv/bin/python -m bench.wire_cost [--requests 20000] [--case me] [--users 1000]

With --users N, N signed-in users take turns (each request another user's cookie, as wrk's
script sends them in bench/run): every user's cached objects are then as cold in the CPU's
caches as on a real server; with one user they all stay hot.

Under valgrind the figure is an instruction count, which the other programs on a shared
machine cannot disturb (bench/instructions runs it that way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench.asgi_cost import ours_signed_in, signed_in_cookie
from bench.bare_app import app as bare

PEER = ("127.0.0.1", 5555)
LOCAL = ("127.0.0.1", 3000)


class Transport(asyncio.Transport):
    """Collects what the protocol writes; never blocks, never closes by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": PEER, "sockname": LOCAL}.get(name, default)

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def request_bytes(path: str, cookie: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1:3000", "User-Agent: bench"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connection(app: Any, protocol: type[HttpToolsProtocol]) -> tuple[Any, Transport]:
    """One kept-alive connection, as wrk holds 64 of; signals each completed response."""
    from regcopilot.web.connections import SERVE_OPTIONS

    # Ours as `regcopilot serve` runs it, the others on uvicorn's defaults (as bench/run's).
    options = (SERVE_OPTIONS if protocol is SERVE_OPTIONS["http"]
               else {"http": protocol, "proxy_headers": True, "access_log": False})
    config = Config(app, **options, lifespan="off", log_level="warning")
    config.load()

    class Driven(protocol):  # type: ignore[misc, valid-type]
        done: asyncio.Future[None] | None = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.done is not None:
                self.done.set_result(None)

    state = ServerState()
    # The headers uvicorn's server loop adds to every answer (it sets them once a second):
    # the date, and `server: uvicorn` unless turned off. Each is one more pass of uvicorn's
    # per-header checks.
    state.default_headers = [(b"date", formatdate(usegmt=True).encode()), *config.encoded_headers]
    conn = Driven(config=config, server_state=state, app_state={})
    transport = Transport()
    conn.connection_made(transport)
    return conn, transport


async def per_request_us(app: Any, protocol: type[HttpToolsProtocol],
                         request: bytes | list[bytes], n: int) -> float:
    conn, transport = connection(app, protocol)
    loop = asyncio.get_running_loop()
    requests = request if isinstance(request, list) else [request]

    async def one(data: bytes) -> None:
        conn.done = loop.create_future()
        conn.data_received(data)
        await conn.done

    for i in range(max(200, len(requests))):  # warm: every user once
        await one(requests[i % len(requests)])
    status = transport.written[-2].split(b" ", 2)[1]
    if status != b"200":
        raise SystemExit(f"{requests[0].splitlines()[0]!r} answered {status!r}")
    transport.written.clear()
    k = len(requests)
    with quiet_feed():
        started = time.process_time()
        for i in range(n):
            await one(requests[i % k])
            if i & 255 == 0:
                transport.written.clear()
        return (time.process_time() - started) / n * 1e6


@contextlib.contextmanager
def quiet_feed() -> Iterator[None]:
    """The SQLite change feed polled once an hour while requests are counted, not every 0.2 s:
    a poll is background work, not the request's, and under callgrind (bench.instructions,
    ~50 times slower) the polls that fell into a run moved its count per request by up to
    ±10 %. The feed stays proved by its earlier polls, so the near tier is trusted as before."""
    from regcopilot.users import sqlite

    every = sqlite.POLL_SECONDS
    sqlite.POLL_SECONDS = 3600.0
    try:
        yield
    finally:
        sqlite.POLL_SECONDS = every


CASES = ("raw", "bare", "health", "me", "session")


async def main(n: int, only: str | None, users: int = 1) -> None:
    from bench.raw_app import app as raw
    from regcopilot.web.connections import GuardedHttpProtocol

    async with ours_signed_in() as (ours, cookie):
        cookies = [cookie, *[await signed_in_cookie(ours.services, f"wire{i}@example.com")
                             for i in range(users - 1)]]

        def turns(path: str) -> list[bytes]:
            # Every case gets the same session cookies, as wrk sends them to every variant of
            # bench/run: parsing them is the server's work, not the app's.
            return [request_bytes(path, c) for c in cookies]

        table: dict[str, tuple[str, Any, type[HttpToolsProtocol], list[bytes]]] = {
            "raw": ("(R) raw ASGI app", raw, HttpToolsProtocol, turns("/api/health")),
            "bare": ("(0) bare FastAPI app", bare, HttpToolsProtocol, turns("/api/health")),
            "health": ("(1) ours /api/health", ours, GuardedHttpProtocol, turns("/api/health")),
            "me": ("(2) ours /api/me", ours, GuardedHttpProtocol, turns("/api/me")),
            "session": ("ours GET /api/auth/session", ours, GuardedHttpProtocol,
                        turns("/api/auth/session")),
        }
        for key in (only,) if only else CASES:
            name, app, protocol, requests = table[key]
            print(f"{name:28} {await per_request_us(app, protocol, requests, n):7.1f} µs per "
                  "request", flush=True)


def run(argv: list[str] | None = None, runner: Callable[..., Any] = uvloop.run) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--case", choices=CASES)
    parser.add_argument("--users", type=int, default=1,
                        help="signed-in users taking turns (default 1: all caches hot)")
    a = parser.parse_args(argv)
    if a.users < 1:
        parser.error("--users must be at least 1")
    runner(main(a.requests, a.case, a.users))


if __name__ == "__main__":
    run()
