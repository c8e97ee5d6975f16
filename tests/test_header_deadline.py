"""web/connections.py on uvicorn's own protocol fed bytes in-process. The header deadline: a
request whose headers arrive within HTTP_HEADER_TIMEOUT_SECONDS is answered however slowly
they came, one that does not finish them is closed, never before the deadline and soon after
(tests/test_hostile_load.py checks the same against a real `regcopilot serve`). And the drain's
`Connection: close`, given without a check on every request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from regcopilot.web import connections
from regcopilot.web.connections import GuardedHttpProtocol, Limits

TIMEOUT = 0.3
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\nUser-Agent: pytest\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Transport(asyncio.Transport):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.written = b""
        self.closed_at: float | None = None
        self.loop = loop

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 3000)}.get(name)

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def is_closing(self) -> bool:
        return self.closed_at is not None

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = self.loop.time()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(GuardedHttpProtocol, "limits", Limits(TIMEOUT, 100))
    monkeypatch.setattr(connections, "LOOK_EVERY_SECONDS", TIMEOUT / 4)

    def open_one() -> tuple[GuardedHttpProtocol, Transport, float]:
        config = Config(app, http=GuardedHttpProtocol, lifespan="off", log_level="warning")
        config.load()
        loop = asyncio.get_running_loop()
        conn = GuardedHttpProtocol(config=config, server_state=ServerState(), app_state={})
        transport = Transport(loop)
        conn.connection_made(transport)
        return conn, transport, loop.time()

    return open_one


async def until(predicate: Any, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


async def test_slow_but_complete_headers_are_answered_and_the_connection_kept(opened):
    conn, transport, _ = opened()
    for i in range(0, len(REQUEST), 8):  # the whole request over ~0.2 s of the 0.3 s
        conn.data_received(REQUEST[i:i + 8])
        await asyncio.sleep(0.2 / (len(REQUEST) / 8))
    await until(lambda: b"\r\n\r\nok" in transport.written, 2)
    await asyncio.sleep(TIMEOUT * 2)  # idle after the answer: not the header deadline's case
    assert transport.closed_at is None
    conn.connection_lost(None)


@pytest.mark.parametrize("later", [False, True], ids=["first request", "later request"])
async def test_unfinished_headers_close_the_connection_at_the_deadline(opened, later):
    conn, transport, opened_at = opened()
    if later:  # one request answered, then the next one's first bytes and nothing more
        conn.data_received(REQUEST)
        await until(lambda: b"ok" in transport.written, 2)
        await asyncio.sleep(TIMEOUT)  # several looks find it idle
    began = asyncio.get_running_loop().time()
    conn.data_received(REQUEST[:10])
    await until(lambda: transport.closed_at is not None, TIMEOUT * 5)
    assert transport.closed_at is not None
    # The first request's deadline counts from the connection's opening, a later one's from
    # its first byte.
    waited = transport.closed_at - (began if later else opened_at)
    # Never early; late by at most one look (a quarter of the timeout here), plus slack.
    assert TIMEOUT <= waited <= TIMEOUT + TIMEOUT / 4 + 0.15, waited
    conn.connection_lost(None)


async def test_while_draining_every_answer_closes_its_connection(opened, monkeypatch):
    """web/drain.py: a connection open when the drain starts is told so
    (close_after_each_response); one opened during the drain is told at once. Either answers
    its next request with `Connection: close` and is then closed; before the drain the same
    connection is kept alive."""
    from regcopilot.web import drain

    before, before_transport, _ = opened()
    before.data_received(REQUEST)
    await until(lambda: b"ok" in before_transport.written, 2)
    assert b"connection: close" not in before_transport.written.lower()
    assert before_transport.closed_at is None

    monkeypatch.setattr(drain.DRAIN, "started", 1.0)  # draining from here on
    before.close_after_each_response()  # what _drain_connections does for every connection
    during, during_transport, _ = opened()
    for conn, transport in ((before, before_transport), (during, during_transport)):
        transport.written = b""
        conn.data_received(REQUEST)
        await until(lambda t=transport: t.closed_at is not None, 2)
        assert b"connection: close" in transport.written.lower()
        assert transport.written.endswith(b"ok")
        conn.connection_lost(None)
