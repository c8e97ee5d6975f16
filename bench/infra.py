"""What a benchmark run stands on: its own redis-server, its own PostgreSQL databases, and the
server processes under load, each pinned to a core. Everything is on loopback and removed
afterwards; nothing the run did not create is touched."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from tests.support import free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER_CORE = os.environ.get("BENCH_SERVER_CORE", "0")
LOAD_CORE = os.environ.get("BENCH_LOAD_CORE", "1")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(predicate, timeout, 0.05, what=f"{what} ready")


def pinned(core: str, argv: Sequence[str]) -> list[str]:
    """taskset execs the program, so the PID we hold is the program's own."""
    return ["taskset", "-c", core, *argv]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU of a process so far: per request, they hold steady while other
    programs on a shared machine steal the core, where req/s does not. Apart, they tell
    whether a cost is the process's own code or the kernel's work for it (sockets, epoll)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


class BenchRedis:
    """A redis-server of the run's own: its command counters see only the benchmark."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="regcopilot-bench-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> BenchRedis:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 10, "redis-server")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def commands(self) -> tuple[int, dict[str, int]]:
        """total_commands_processed and calls per command, for deltas around a run."""
        with self.client() as r:
            total = int(r.info("stats")["total_commands_processed"])
            per = {k.removeprefix("cmdstat_"): int(v["calls"])
                   for k, v in r.info("commandstats").items()}
        return total, per

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class BenchPostgres:
    """Databases of the run's own on the machine's PostgreSQL, dropped at the end."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:10]
        self.names: list[str] = []
        self.base = PG_ADMIN.rsplit("/", 1)[0]

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self, suffix: str) -> str:
        name = f"regcopilot_bench_{self.tag}_{suffix}"
        await self._admin(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return f"{self.base}/{name}"

    async def transactions(self, url: str) -> int:
        """Committed + rolled-back transactions of a database (each peer query is one)."""
        name = url.rsplit("/", 1)[1]
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            return int(await conn.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                name,
            ))
        finally:
            await conn.close()

    async def drop_all(self) -> None:
        for name in self.names:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.names.clear()


class Server:
    """One HTTP server process under test, pinned to the server core."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int,
                 log_dir: Path, core: str = SERVER_CORE) -> None:
        self.name, self.port = name, port
        self.argv = pinned(core, argv)
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_kib = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Server:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, path: str = "/api/health", timeout: float = 60) -> Server:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(self.base + path, timeout=1).status_code == 200
            return False

        wait_for(ready, timeout, f"{self.name} on port {self.port}")
        return self

    def cpu(self) -> tuple[float, float]:
        """User and system CPU so far (cpu_times)."""
        return cpu_times(self.pid)

    def sample_rss(self) -> int:
        kib = rss_kib(self.pid)
        self.peak_rss_kib = max(self.peak_rss_kib, kib)
        return kib

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
