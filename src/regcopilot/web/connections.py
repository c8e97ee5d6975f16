"""Slow and idle clients: uvicorn's HTTP protocol with a header-read deadline and a cap on
open connections per process.

uvicorn (0.54) closes a connection only when it sits idle *after* a response
(`timeout_keep_alive`); one that connects and sends nothing, or sends its headers a byte at a
time, is held forever, and its `limit_concurrency` answers 503 to requests but still accepts
every connection. Here:

- a connection must complete its request headers within HTTP_HEADER_TIMEOUT_SECONDS of
  opening (or of the first byte of a later request on it), or it is closed;
- past HTTP_MAX_CONNECTIONS open connections, a new one gets a 503 and is closed, with a
  warning in the log (at most one every 10 s, with the count refused meanwhile);
- while the process drains after SIGTERM (web/drain.py), every response closes its connection.

The limits are read from the environment (and `.env`) in each process, so they hold in every
worker `--workers` spawns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from regcopilot.config import Settings
from regcopilot.web.drain import DRAIN

log = logging.getLogger("regcopilot.http")

LOG_EVERY_SECONDS = 10.0
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 26\r\n"
    b"retry-after: 1\r\nconnection: close\r\n\r\ntoo many open connections\n"
)


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.HTTP_HEADER_TIMEOUT_SECONDS, settings.HTTP_MAX_CONNECTIONS)


class _RateLimitedWarning:
    """One warning per LOG_EVERY_SECONDS, saying how many happened since the last one."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.count = 0
        self._last = -LOG_EVERY_SECONDS

    def hit(self, *args: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_SECONDS:
            self._last = now
            log.warning(self.message, *args, self.count)
            self.count = 0


CAP_REACHED = _RateLimitedWarning(
    "Connection limit reached: %d connections open (HTTP_MAX_CONNECTIONS) - new connections "
    "answered 503 and closed (%d since the last warning)"
)
HEADER_TIMEOUTS = _RateLimitedWarning(
    "Closed connections that sent no complete request headers within %.1f s "
    "(HTTP_HEADER_TIMEOUT_SECONDS) (%d since the last warning)"
)


# What a new connection waits for until its first request's headers are complete: counted from
# the opening, whether bytes of that request have come or not.
_FIRST_REQUEST = object()
# How often a connection is looked at once it has sent complete headers, at most: a later
# request's deadline is counted from the first look that finds it unfinished (so it is closed
# between the timeout and the timeout plus this after its first byte).
LOOK_EVERY_SECONDS = 1.0


class GuardedHttpProtocol(HttpToolsProtocol):
    """No hook of ours runs per request (bench.wire_cost: a data_received override that read
    the request's state after every read cost 0.64 µs of a ~14 µs request). Instead each
    connection is looked at by a timer of its own: at HTTP_HEADER_TIMEOUT_SECONDS after it
    opens, then every LOOK_EVERY_SECONDS (or a quarter of the timeout, if shorter); a look that
    finds the same request still without complete headers the timeout after it first found it
    closes the connection. uvicorn's own state tells: headers are complete exactly when the
    current cycle was made from the current scope (on_message_begin makes a scope,
    on_headers_complete its cycle)."""

    limits: ClassVar[Limits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = Limits.from_settings(Settings())
        self._limits = cls.limits
        self._every = min(LOOK_EVERY_SECONDS, self._limits.header_timeout / 4)
        self._look_timer: asyncio.TimerHandle | None = None
        self._waiting: Any = None  # the request found without complete headers at a look
        self._waiting_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            CAP_REACHED.hit(len(self.connections) - 1)
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        if DRAIN.active:
            self.close_after_each_response()
        # Waiting since now: the first look is at the deadline itself.
        self._waiting, self._waiting_since = _FIRST_REQUEST, self.loop.time()
        self._look_in(self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._look_timer is not None:
            self._look_timer.cancel()
            self._look_timer = None
        super().connection_lost(exc)

    def close_after_each_response(self) -> None:
        """Draining (web/drain.py): the request in flight and every later one on this
        connection is answered with `Connection: close`. Done by wrapping the app this
        connection hands each request (uvicorn reads `self.app` per request), so that a
        process that is not draining runs no check for it."""
        if not isinstance(self.app, CloseAfterResponse):
            self.app = CloseAfterResponse(self.app)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False

    def _awaited(self) -> Any:
        """The request (its scope) whose headers are not complete yet, _FIRST_REQUEST for a
        connection's first; None when no headers are awaited (a request in flight, or idle
        between two: uvicorn's keep-alive timeout takes care of that)."""
        cycle = self.cycle
        if cycle is None:
            return _FIRST_REQUEST
        return None if cycle.scope is self.scope else self.scope

    def _look_in(self, seconds: float) -> None:
        self._look_timer = self.loop.call_later(seconds, self._look)

    def _look(self) -> None:
        self._look_timer = None
        if self.transport.is_closing() or self not in self.connections:
            return  # closed, or handed over to a WebSocket protocol
        awaited = self._awaited()
        now = self.loop.time()
        if awaited is None:
            self._waiting = None
            self._look_in(self._every)
            return
        if awaited is not self._waiting:
            self._waiting, self._waiting_since = awaited, now
        left = self._waiting_since + self._limits.header_timeout - now
        if left > 0:
            self._look_in(left)  # at its deadline: if it has finished by then, so be it
            return
        HEADER_TIMEOUTS.hit(self._limits.header_timeout)
        self.transport.close()


# How uvicorn serves this app, whatever else is given (host, port, workers, log level, the
# keep-alive timeout): `regcopilot serve` runs it so, and bench/ measures it so.
SERVE_OPTIONS: dict[str, Any] = {
    "access_log": False,
    "proxy_headers": True,
    # No `Server: uvicorn`: naming the server software tells a scanner what to try and a
    # client nothing; and it is one header less for uvicorn to check and write on every
    # answer (bench.instructions: ~4,700 of /api/me's ~164,000 instructions a request).
    # Date stays: RFC 9110 asks it of an origin server with a clock.
    "server_header": False,
    "http": GuardedHttpProtocol,
}


class CloseAfterResponse:
    """An ASGI app that answers as `app` does, with `Connection: close` (uvicorn then closes
    the connection once the response is sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message,
                           "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing if scope["type"] == "http" else send)
