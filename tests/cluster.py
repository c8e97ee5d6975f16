"""Real `regcopilot serve` processes on loopback ports, sharing one Redis and one PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from regcopilot.users.postgres import PostgresDirectory
from tests.support import COOKIE, TEST_HASH_ROUNDS, free_port, hash_password, port_open, wait_until

MONITOR_TOKEN = "cluster-monitor-token"


class ServerProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path, port: int | None = None,
                 workers: int = 1):
        self.name = name
        self.env = env
        self.port = port or free_port()
        self.workers = workers
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_from = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        log = self.log_path.open("ab")
        self._log_from = log.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "regcopilot.cli", "serve", "--port", str(self.port),
             "--workers", str(self.workers)],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._healthy, timeout=30, interval=0.1)
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
        if not port_open(self.port):
            return False
        with self.log_path.open("rb") as log:
            log.seek(self._log_from)
            # serve prints this once the port passed its check: before it, whoever answers
            # is not ours (another run's server on a port that was free a moment ago).
            if b"Regulatory Intelligence Copilot on" not in log.read():
                return False
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200
        return False

    def kill(self) -> None:
        """SIGKILL the whole process group (uvicorn's workers too): nothing gets to flush."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        wait_until(lambda: not port_open(self.port), timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def running(
    env: dict[str, str], log_dir: Path, names: Iterable[str]
) -> Iterator[list[ServerProcess]]:
    """Start one server per name; stop them all afterwards, whatever happened."""
    procs = [ServerProcess(name, env, log_dir) for name in names]
    try:
        # Side by side: each start is mostly waiting (imports, preflight, lifespan).
        with ThreadPoolExecutor(max(1, len(procs))) as pool:
            list(pool.map(ServerProcess.start, procs))
        yield procs
    finally:
        for p in procs:
            p.stop()


def cluster_env(pg_url: str, prefix: str, data_dir: Path, **extra: Any) -> dict[str, str]:
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_KEY_PREFIX": prefix,
        "NEXTAUTH_SECRET": "cluster-secret-" + "y" * 40,
        "OBSERVABILITY_TOKEN": MONITOR_TOKEN,
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "PASSWORD_HASH_ROUNDS": str(TEST_HASH_ROUNDS),
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --- users and requests against a running cluster ---------------------------------------------
PASSWORD = "cluster password 1"


async def reset_users(pg_url: str) -> None:
    directory = PostgresDirectory(pg_url)
    await directory.open()  # creates the schema and the trigger
    await directory.close()
    conn = await asyncpg.connect(pg_url)
    await conn.execute("DELETE FROM auth.users")
    await conn.close()


async def add_user(pg_url: str, email: str, *, admin: bool = False) -> str:
    directory = PostgresDirectory(pg_url)
    await directory.open()
    try:
        user = await directory.add(email, hash_password(PASSWORD), admin=admin)
    finally:
        await directory.close()
    return user.id


async def login(url: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return r.cookies[COOKIE]


async def me(url: str, cookie: str) -> int:
    async with httpx.AsyncClient(base_url=url, cookies={COOKIE: cookie}) as client:
        return (await client.get("/api/me")).status_code


async def report(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/api/observability",
                             headers={"Authorization": f"Bearer {MONITOR_TOKEN}"})
        assert r.status_code == 200, r.text
        return r.json()


async def flushed_validations(servers: list[ServerProcess]) -> dict[str, Any]:
    """Cluster totals with nothing pending: asking each instance for its report makes it
    flush its own batch first."""
    for s in servers:
        await report(s.url)
    return (await report(servers[0].url))["authentication"]["validations"]
