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


class GuardedHttpProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = Limits.from_settings(Settings())
        self._limits = cls.limits
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            CAP_REACHED.hit(len(self.connections) - 1)
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Where the request stands after this read, from uvicorn's own state rather than from
        # parser callbacks of ours: headers complete ⇔ the current cycle was made from the
        # current scope (on_message_begin makes a scope, on_headers_complete its cycle). The
        # usual request (headers in one read) thus arms and cancels no timer, and no hook of
        # ours runs per parser event; a later request on a kept-alive connection whose headers
        # span reads gets its deadline at the end of the read that began it.
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:
            if self._header_timer is not None:
                self._cancel_header_timer()
            if DRAIN.active:
                # Draining (web/drain.py): answer, then close; this connection is not reused.
                cycle.keep_alive = False
        elif self.parser.should_upgrade():
            self._cancel_header_timer()  # a WebSocket now: no HTTP request to wait for
        elif self._header_timer is None:
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            self._limits.header_timeout, self._header_timed_out
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            HEADER_TIMEOUTS.hit(self._limits.header_timeout)
            self.transport.close()
