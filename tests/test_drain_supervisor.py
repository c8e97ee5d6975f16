"""`serve --workers N`'s supervisor (web/drain.py Supervisor) on SIGTERM, in this process: the
port it holds must stop listening when the signal arrives, not at uvicorn's next look at its
signal queue (every 0.5 s), or connections queue on it for nobody after the workers drained
and are reset, after their request was sent. The whole drain under load is
tests/test_failover.py::test_sigterm_answers_or_refuses_every_request."""

from __future__ import annotations

import signal
import socket

import pytest
import uvicorn
from uvicorn.supervisors.multiprocess import SIGNALS

from regcopilot.web.drain import Supervisor


@pytest.fixture
def supervisor():
    """A Supervisor on a real listening socket, its workers never started; every signal
    handler uvicorn's supervisor installs is put back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config("regcopilot.web.factory:app", factory=True, workers=2)
    try:
        yield Supervisor(config, sockets=[listener])
    finally:
        listener.close()
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_supervisor_lets_go_of_the_port_when_the_signal_arrives(supervisor, sig):
    port = supervisor.sockets[0].getsockname()[1]
    assert not refused(port)
    signal.raise_signal(sig)
    # Before the supervisor's loop has looked at its queue: nothing listens any more.
    assert refused(port)
    assert supervisor.signal_queue == [sig]
    supervisor.handle_signals()  # and uvicorn's own stop still follows
    assert supervisor.should_exit.is_set()


def test_no_worker_is_started_once_the_port_is_let_go(supervisor):
    supervisor.signal_queue.append(signal.SIGTTIN)  # would start one more worker
    signal.raise_signal(signal.SIGTERM)
    supervisor.handle_signals()
    supervisor.keep_subprocess_alive()
    assert supervisor.processes == []
    assert supervisor.should_exit.is_set()
