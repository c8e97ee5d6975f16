"""Test helpers: real servers the tests start themselves, and small polling utilities."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from regcopilot.auth.passwords import Hasher

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


# bcrypt's minimum cost: hashes made by the tests verify in ~1 ms instead of ~250 ms. Servers
# the tests start get the same cost through PASSWORD_HASH_ROUNDS (their timing-equaliser hash).
TEST_HASH_ROUNDS = 4
TEST_HASHER = Hasher(rounds=TEST_HASH_ROUNDS)
hash_password = TEST_HASHER.hash
verify_password = TEST_HASHER.verify


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Poll until truthy; the tests and the benchmark harness both wait on servers with it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(interval)


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0,
                     interval: float = 0.02) -> Any:
    """Poll an async or sync predicate until it is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def changes_applied(app: Any, timeout: float = 10.0) -> None:
    """Until this instance has applied every change its directory's log holds now: a test that
    writes cache entries itself must not have them deleted by a late invalidation of its own
    set-up (users added, deleted, banned just before)."""
    head = (await app.services.directory.read_log()).head
    freshness = app.services.cache.freshness
    await eventually(lambda: freshness.position >= head, timeout=timeout)


@contextlib.contextmanager
def answering(proc: subprocess.Popen[bytes], url: str, log: Path, what: str
              ) -> Iterator[None]:
    """Wait until the process answers `url` with 200 (failing with its log if it exits), and
    stop it — by its own PID, gently first — however the block ends."""
    import httpx

    def ready() -> bool:
        assert proc.poll() is None, log.read_text(errors="replace")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=1).status_code == 200
        return False

    try:
        wait_until(ready, timeout=30, interval=0.1, what=what)
        yield
    finally:
        end_process(proc)


def end_process(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    """Stop a process the test started, by its own PID: SIGTERM, then SIGKILL after `grace`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


class RedisServer:
    """A redis-server of the test's own, on a free loopback port: to kill, pause, restart."""

    def __init__(self, *extra: str, port: int | None = None, password: str | None = None):
        self.port = port or free_port()
        self.password = password
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix="regcopilot-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, *self.extra]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), timeout=10)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        wait_until(lambda: not port_open(self.port), timeout=5)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class TcpProxy:
    """A loopback TCP proxy that can stop answering (a database that hangs) or refuse."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.frozen = False
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                while self.frozen:
                    await asyncio.sleep(0.01)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while self.frozen:
            await asyncio.sleep(0.01)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def cut(self) -> None:
        """Drop every open connection (a restart or a killed backend)."""
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.close()
        self._writers.clear()

    async def stop(self) -> None:
        self.frozen = False
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


def new_prefix() -> str:
    """A Redis key prefix of the caller's own (the app's keys all live under it)."""
    return f"regcopilot-test-{uuid.uuid4().hex[:12]}:copilot:auth:"


def delete_prefix(prefix: str, url: str = "redis://127.0.0.1:6379/0") -> None:
    """Remove every key under a prefix this test run made — and nothing else."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def status(app: Any, cookie: str, path: str = "/api/me") -> int:
    """The status an in-process app answers `path` with, for this session cookie alone."""
    app.client.cookies.clear()
    app.client.cookies.set(COOKIE, cookie)
    try:
        return (await app.client.get(path)).status_code
    finally:
        app.client.cookies.clear()


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# The product's contract, written once for every test (not imported from the app: a test must
# notice if the app changes them). The cookie name; over HTTPS it carries the __Secure- prefix.
COOKIE = "regcopilot.session-token"
SECURE_COOKIE = "__Secure-regcopilot.session-token"

def validation_key(prefix: str, user_id: str) -> str:
    """A user's validation entry in Redis (shared with the upstream Node tier)."""
    return f"{prefix}validation:{user_id}"
