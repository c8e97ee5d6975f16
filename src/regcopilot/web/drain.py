"""A graceful drain on SIGTERM, for the processes `regcopilot serve` runs.

uvicorn, on SIGTERM, closes its listening socket and every idle kept-alive connection at once.
Behind a balancer that loses requests: one the balancer has just written into a kept-alive
connection being closed, or into a connection still waiting in the listen queue, fails after
it was sent, and nginx retries a GET elsewhere but never a POST (a sign-in). Measured with
SIGTERM under load on kept-alive and new connections (tests/test_failover.py): 3 of ~235
requests cut after being sent with one process, 7 with `--workers 2`; none with this drain.

Here the first SIGTERM starts a drain instead:

1. `/api/ready` answers 503 `draining`, and every response carries `Connection: close`, so
   each connection closes after the request it is serving: nothing kept alive is reused;
2. once no connection sits idle between requests (each was used once more, or its client
   closed it: nginx drops an idle upstream connection after its `keepalive_timeout`, 4 s in
   deploy/nginx/regcopilot.conf), or SHUTDOWN_DRAIN_SECONDS have passed, the connections
   already queued are accepted and the listening socket is closed: a new connection is
   refused, which any client (nginx included) may retry elsewhere, whatever the method;
3. the connections still open (requests in flight or just arrived) are answered;
4. then uvicorn's own shutdown runs (lifespan shutdown: metrics flushed, connections closed).

A SIGTERM during the drain changes nothing (systemd signals every process of the unit, and
uvicorn's supervisor signals its workers again); SIGINT (Ctrl-C) stops at once, as before.

With `--workers N` the supervisor holds the listening socket too: `run_workers` closes its copy
as soon as the signal arrives (not at uvicorn's next 0.5 s look at its signal queue), so once
every worker has drained, the port refuses new connections instead of queueing them for nobody
until the supervisor gets round to closing it (they would be reset then, after being sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from types import FrameType
from typing import Any

from uvicorn.supervisors.multiprocess import Multiprocess

log = logging.getLogger("regcopilot.http")

POLL_SECONDS = 0.02
# Time for a request on a connection accepted in the last moment to arrive and be answered,
# when the drain's own time is already up.
LAST_ANSWERS_SECONDS = 1.0
# The signals that end `serve --workers N` (uvicorn's supervisor stops on both).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Drain:
    """Whether this process is draining: read by `/api/ready`, and by the HTTP protocol for a
    connection opened meanwhile (`Connection: close` on every response; the connections open
    when the drain starts are told by _drain_connections)."""

    def __init__(self) -> None:
        self.started: float | None = None

    @property
    def active(self) -> bool:
        return self.started is not None

    def begin(self) -> None:
        self.started = time.monotonic()


DRAIN = Drain()


def install(seconds: float) -> None:
    """Put the drain in front of uvicorn's SIGTERM handler. Called by the app factory, inside
    the uvicorn server that runs it (its signal handlers are set by then), in every worker."""
    import uvicorn

    previous = signal.getsignal(signal.SIGTERM)
    server = getattr(previous, "__self__", None)
    if not isinstance(server, uvicorn.Server) or not callable(previous):
        log.warning("SIGTERM is not uvicorn's: no drain on shutdown")
        return
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def start(sig: int, frame: FrameType | None) -> None:
        tasks.add(loop.create_task(_drain(server, seconds, lambda: previous(sig, frame))))

    def on_term(sig: int, frame: FrameType | None) -> None:
        if DRAIN.active:
            return
        DRAIN.begin()
        loop.call_soon_threadsafe(start, sig, frame)  # wakes the loop; safe from a handler

    signal.signal(signal.SIGTERM, on_term)


async def _drain(server: Any, seconds: float, stop: Any) -> None:
    try:
        await _drain_connections(server, seconds)
    except Exception:  # the process must stop whatever went wrong here
        log.exception("Drain failed; shutting down now")
    finally:
        stop()


async def _drain_connections(server: Any, seconds: float) -> None:
    state = server.server_state
    log.info("SIGTERM: draining (/api/ready answers 503, responses close their connection; "
             "at most %.1f s)", seconds)
    deadline = time.monotonic() + seconds
    for conn in list(state.connections):
        close_after = getattr(conn, "close_after_each_response", None)
        if close_after is not None:
            close_after()  # this request and any later one (web/connections.py)
            continue
        cycle = getattr(conn, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
    # Polled: uvicorn's connection set has no event to wait on.
    while any(_idle(c) for c in state.connections) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(POLL_SECONDS)
    answered = state.total_requests
    _stop_listening(server)
    last = max(deadline, time.monotonic() + LAST_ANSWERS_SECONDS)
    while any(not _idle(c) for c in state.connections) and time.monotonic() < last:  # noqa: ASYNC110
        await asyncio.sleep(POLL_SECONDS)
    assert DRAIN.started is not None
    log.info("Drained in %.2f s (%d request(s) answered after closing the port, %d connection(s) "
             "left)", time.monotonic() - DRAIN.started, state.total_requests - answered,
             len(state.connections))


def _idle(conn: Any) -> bool:
    """Kept alive between two requests: closing it could cut a request already on its way."""
    cycle = getattr(conn, "cycle", None)
    transport = getattr(conn, "transport", None)
    return (cycle is not None and cycle.response_complete
            and transport is not None and not transport.is_closing())


def _stop_listening(server: Any) -> None:
    """Accept what the kernel has already queued (a queued connection is reset when the socket
    closes, after its client has sent the request), then close the listening sockets, with no
    await in between."""
    loop = asyncio.get_running_loop()
    config = server.config

    def protocol() -> asyncio.Protocol:
        return config.http_protocol_class(config=config, server_state=server.server_state,
                                          app_state=server.lifespan.state, _loop=loop)

    for listener in server.servers:
        for sock in listener.sockets or ():
            with contextlib.suppress(OSError):
                _accept_queued(loop, sock.fileno(), protocol)
        listener.close()


def _accept_queued(loop: asyncio.AbstractEventLoop, fd: int, protocol: Any) -> None:
    with socket.socket(fileno=os.dup(fd)) as dup:
        dup.setblocking(False)
        while True:
            try:
                conn, _ = dup.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            loop.create_task(loop.connect_accepted_socket(protocol, conn))


class Supervisor(Multiprocess):
    """uvicorn's supervisor for `serve --workers N`, letting go of its own copy of the listening
    socket the moment SIGTERM or SIGINT arrives, before it signals the workers to drain.

    uvicorn's own handlers only queue the signal, and the supervisor reads its queue every
    0.5 s: under SIGTERM to the process group the workers drained and closed the port in
    0.02-0.3 s, and the supervisor's copy kept it listening for nobody until its next look
    (255 ms more in the run timed): every connection made meanwhile was reset when it closed,
    after its request was sent (test_sigterm_answers_or_refuses_every_request[2] lost 2 to 9
    requests in 5 of 8 runs, and 6 of 8 on issue 23's branch alone; 0 in 10 with this). So
    the copy is closed in the handler itself (no lock is taken there: an Event.set() could
    deadlock on the lock the interrupted wait holds), then the signal is queued as uvicorn
    does."""

    def __init__(self, config: Any, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.let_go = False
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.on_stop)

    def on_stop(self, sig: int, frame: FrameType | None) -> None:
        self.close_sockets()
        self.signal_queue.append(sig)

    def close_sockets(self) -> None:
        self.let_go = True
        for sock in self.sockets:
            sock.close()

    # Once the port is let go no worker may start (it would have no socket): neither a
    # replacement for one that exited after draining, nor one for SIGHUP or SIGTTIN.
    def keep_subprocess_alive(self) -> None:
        if not self.let_go:
            super().keep_subprocess_alive()

    def handle_signals(self) -> None:
        if self.let_go:  # on_stop queued a stop signal before anything here runs
            self.signal_queue[:] = [s for s in self.signal_queue if s in STOP_SIGNALS]
        super().handle_signals()

    def terminate_all(self) -> None:
        self.close_sockets()
        super().terminate_all()


def run_workers(config: Any) -> None:
    """`serve --workers N`."""
    Supervisor(config, sockets=[config.bind_socket()]).run()
