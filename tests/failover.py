"""Real failover topologies the tests start on free loopback ports, and a bounded signed-in load
over HTTP against `regcopilot serve` processes: Redis Sentinel (master, replica, three
Sentinels), Redis Cluster (three masters, three replicas), a PostgreSQL primary with a
streaming standby (PostgreSQL 15's own tools, run as the `postgres` OS user), and nginx in
front of several instances with deploy/nginx/regcopilot.conf."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from tests.cluster import PASSWORD
from tests.support import (
    COOKIE,
    REDIS_SERVER,
    RedisServer,
    free_port,
    port_open,
    repo_root,
    wait_until,
)

# --- load ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float  # monotonic start
    ms: float
    status: int  # 0: no HTTP answer at all
    target: str
    what: str
    retry_after: str | None = None
    error: str = ""


@dataclass
class HttpLoad:
    """Bounded signed-in load: `concurrency` clients, each cycling through the cookies and the
    targets with GET /api/me; every `login_every`-th request of a client is a sign-in POST
    instead (0: none). Stops at `max_requests`, `max_seconds`, or when stopped."""

    targets: list[str]
    cookies: list[str]
    logins: list[str] = field(default_factory=list)
    concurrency: int = 6
    max_requests: int = 20000
    max_seconds: float = 45.0
    login_every: int = 0
    think_seconds: float = 0.005
    timeout: float = 10.0
    samples: list[Sample] = field(default_factory=list)

    async def __aenter__(self) -> HttpLoad:
        self._stop = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self.timeout,
                                         limits=httpx.Limits(max_connections=self.concurrency))
        self._tasks = [asyncio.create_task(self._worker(n)) for n in range(self.concurrency)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._client.aclose()

    async def _worker(self, n: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        i = n
        while (not self._stop.is_set() and len(self.samples) < self.max_requests
               and time.monotonic() < deadline):
            i += 1
            target = self.targets[i % len(self.targets)]
            login = self.login_every and self.logins and i % self.login_every == 0
            started = time.monotonic()
            what = "login" if login else "me"
            try:
                if login:
                    email = self.logins[i % len(self.logins)]
                    r = await self._client.post(f"{target}/api/auth/login",
                                                json={"email": email, "password": PASSWORD})
                else:
                    cookie = self.cookies[i % len(self.cookies)]
                    r = await self._client.get(f"{target}/api/me",
                                               headers={"cookie": f"{COOKIE}={cookie}"})
                sample = Sample(started, (time.monotonic() - started) * 1000, r.status_code,
                                target, what, r.headers.get("retry-after"))
            except httpx.HTTPError as exc:
                sample = Sample(started, (time.monotonic() - started) * 1000, 0, target, what,
                                error=f"{type(exc).__name__}: {exc}")
            self.samples.append(sample)
            await asyncio.sleep(self.think_seconds)

    async def more(self, n: int, timeout: float = 15.0) -> None:
        target = len(self.samples) + n
        deadline = time.monotonic() + timeout
        while len(self.samples) < target:
            assert time.monotonic() < deadline, f"load stalled at {len(self.samples)}"
            assert not all(t.done() for t in self._tasks), "load ended early"
            await asyncio.sleep(0.02)

    def failed(self) -> list[Sample]:
        return [s for s in self.samples if s.status != 200]

    def slowest_ms(self) -> float:
        return max((s.ms for s in self.samples), default=0.0)


def summary(samples: list[Sample]) -> str:
    codes: dict[int, int] = {}
    for s in samples:
        codes[s.status] = codes.get(s.status, 0) + 1
    bad = [s for s in samples if s.status != 200][:5]
    return f"{len(samples)} requests, status counts {codes}, first failures {bad}"


# --- users and lockout ---------------------------------------------------------------------------


async def sql(url: str, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.execute(statement, *args)
    finally:
        await conn.close()


async def ban(url: str, user_id: str) -> float:
    """Ban in plain SQL, as from the Supabase dashboard; the monotonic time of the commit."""
    await sql(url, "UPDATE auth.users SET banned_until = now() + interval '1 day' WHERE id = $1",
              uuid.UUID(user_id))
    return time.monotonic()


async def refused_on_every(targets: list[str], cookie: str, since: float, timeout: float,
                           refusals: frozenset[int] = frozenset({401})) -> dict[str, float]:
    """Poll each target with the cookie until it refuses it (401, or any of `refusals`);
    seconds from `since` per target."""
    times: dict[str, float] = {}
    deadline = since + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while len(times) < len(targets):
            for t in targets:
                if t in times:
                    continue
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"{t}/api/me", headers={"cookie": f"{COOKIE}={cookie}"})
                    if r.status_code in refusals:
                        times[t] = time.monotonic() - since
            if time.monotonic() > deadline:
                raise AssertionError(f"still not refused after {timeout}s on "
                                     f"{set(targets) - set(times)} (refused: {times})")
            await asyncio.sleep(0.01)
    return times


# --- Redis Sentinel -------------------------------------------------------------------------------


class SentinelSet:
    """A master, one replica and three Sentinels watching them (quorum 2)."""

    SERVICE = "mymaster"

    def __init__(self, down_after_ms: int = 1000, failover_timeout_ms: int = 5000) -> None:
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.master: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinels: list[tuple[int, subprocess.Popen[bytes]]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="regcopilot-sentinel-"))

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port, _ in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}"

    def start(self) -> SentinelSet:
        self.master = RedisServer().start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.master.port)).start()
        for n in range(3):
            port = free_port()
            conf = self.dir / f"sentinel{n}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.SERVICE} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n")
            proc = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.sentinels.append((port, proc))
        for port, _ in self.sentinels:
            wait_until(lambda p=port: port_open(p), timeout=10, what="sentinel port")

        def everyone_known() -> bool:
            for port, _ in self.sentinels:
                with redis.Redis(port=port, decode_responses=True, socket_timeout=1) as s:
                    if (len(s.sentinel_slaves(self.SERVICE)) < 1
                            or len(s.sentinel_sentinels(self.SERVICE)) < 2):
                        return False
            with redis.Redis(port=self.replica.port, decode_responses=True) as r:
                return r.info("replication").get("master_link_status") == "up"

        wait_until(everyone_known, timeout=20, interval=0.1, what="sentinels see each other")
        return self

    def master_port(self) -> int:
        port, _ = self.sentinels[-1]
        with redis.Redis(port=port, decode_responses=True, socket_timeout=1) as s:
            return int(s.sentinel_get_master_addr_by_name(self.SERVICE)[1])

    def stop(self) -> None:
        for _, proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for server in (self.master, self.replica):
            if server is not None:
                server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- Redis Cluster ------------------------------------------------------------------------------


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        port = 20000 + free_port() % 30000
        if port_open(port) or port_open(port + 10000):
            continue
        with contextlib.suppress(OSError), socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 10000))
            return port
    raise AssertionError("no free port pair for a cluster node")


class ClusterSet:
    """Three masters with `replicas` replicas each (redis-cli --cluster create …
    --cluster-replicas N)."""

    def __init__(self, node_timeout_ms: int = 1000, replicas: int = 1) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.replicas = replicas
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def start(self) -> ClusterSet:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> ClusterSet:
        for _ in range(3 * (1 + self.replicas)):
            self.nodes.append(RedisServer(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                port=cluster_port()).start())
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        wait_until(self.healthy, timeout=20, interval=0.1, what="cluster ok, replicas in sync")
        return self

    def alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def roles(self) -> dict[int, str]:
        out = {}
        for n in self.alive():
            with redis.Redis(port=n.port, decode_responses=True, socket_timeout=1) as c:
                out[n.port] = c.info("replication")["role"]
        return out

    def healthy(self) -> bool:
        masters = 0
        for n in self.alive():
            with redis.Redis(port=n.port, decode_responses=True, socket_timeout=1) as c:
                if c.cluster("info")["cluster_state"] != "ok":
                    return False
                info = c.info("replication")
                if info["role"] == "master":
                    masters += 1
                elif info.get("master_link_status") != "up":
                    return False
        return masters == 3

    def node_of(self, key: str) -> RedisServer:
        with redis.Redis(port=self.alive()[0].port, decode_responses=True) as c:
            slot = c.cluster("keyslot", key)
            for start, end, master, *_ in c.cluster("slots"):
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(master[1]))
        raise AssertionError(f"no node serves {key}")

    def client(self) -> redis.cluster.RedisCluster:
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port)
                                           for n in self.alive()], decode_responses=True)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def subscribers(ports: list[int], channel: str) -> int:
    """Subscriptions to `channel` over these Redis nodes (PUBSUB NUMSUB is per node)."""
    total = 0
    for port in ports:
        with contextlib.suppress(redis.RedisError), redis.Redis(
                port=port, decode_responses=True, socket_timeout=1) as c:
            total += int(dict(c.pubsub_numsub(channel)).get(channel, 0))
    return total


# --- PostgreSQL primary + streaming standby -----------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{args[0]} failed: {done.stdout}\n{done.stderr}"
    return done


class PgNode:
    def __init__(self, root: Path, name: str) -> None:
        self.data = root / name
        self.port = free_port()
        self.log = root / f"{name}.log"

    def ctl(self, *args: str, timeout: float = 60) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args,
                     timeout=timeout)

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


class PgPair:
    """A private PostgreSQL primary with a streaming standby (pg_basebackup -R), each on its own
    loopback port, data in a temporary directory owned by the `postgres` user."""

    DB = "regcopilot_failover"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="regcopilot-pg-"))
        pw = pwd.getpwnam("postgres")
        os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.primary = PgNode(self.root, "primary")
        self.standby = PgNode(self.root, "standby")

    def settings(self, node: PgNode) -> list[str]:
        return ["-o", f"-p {node.port} -c listen_addresses=127.0.0.1 "
                      f"-c unix_socket_directories={self.root} -c fsync=off "
                      "-c wal_level=replica -c max_wal_senders=5 -c hot_standby=on "
                      "-c wal_keep_size=64MB"]

    def start(self) -> PgPair:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PgPair:
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.primary.data), "-U", "postgres",
                     "--auth=trust", "--no-sync", "-E", "UTF8")
        with (self.primary.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self.primary.ctl("-w", *self.settings(self.primary), "start")
        _as_postgres(str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.primary.port),
                     "-U", "postgres", "-c", f"CREATE DATABASE {self.DB}")
        _as_postgres(str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p",
                     str(self.primary.port), "-U", "postgres", "-D", str(self.standby.data),
                     "-R", "-X", "stream", "-c", "fast", "--no-sync")
        self.standby.ctl("-w", *self.settings(self.standby), "start")
        wait_until(self._streaming, timeout=20, interval=0.1, what="standby streaming")
        return self

    def _streaming(self) -> bool:
        async def check() -> bool:
            conn = await asyncpg.connect(self.node_url(self.primary))
            try:
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))
            finally:
                await conn.close()

        return asyncio.run(check())

    def node_url(self, node: PgNode) -> str:
        return f"postgresql://postgres@127.0.0.1:{node.port}/{self.DB}"

    @property
    def url(self) -> str:
        """Both hosts; whichever accepts writes is used."""
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:"
                f"{self.standby.port}/{self.DB}?target_session_attrs=read-write")

    def stop_primary(self) -> None:
        """A clean, fast stop: the primary hands the standby all its WAL before it exits."""
        self.primary.ctl("-m", "fast", "-w", "stop")

    def promote_standby(self) -> None:
        self.standby.ctl("-w", "promote")

    def stop(self) -> None:
        for node in (self.primary, self.standby):
            if node.running:
                with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                    node.ctl("-m", "immediate", "-w", "stop", timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


# --- nginx ----------------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
_UPSTREAM_LINE = re.compile(r"^(\s*)server app:3000( [^;]*)?;$", re.M)


def nginx_conf(tmp: Path, port: int, upstreams: list[int]) -> Path:
    """deploy/nginx/regcopilot.conf as shipped, its upstream listing these loopback ports (with
    the shipped server parameters) and listening on `port`, in a minimal nginx.conf."""
    site = (repo_root() / "deploy/nginx/regcopilot.conf").read_text()
    found = _UPSTREAM_LINE.search(site)
    assert found, "deploy/nginx/regcopilot.conf lost its `server app:3000 …;` line"
    indent, params = found.group(1), found.group(2) or ""
    servers = "\n".join(f"{indent}server 127.0.0.1:{p}{params};" for p in upstreams)
    site = _UPSTREAM_LINE.sub(servers, site, count=1)
    assert "listen 80;" in site
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp / "site.conf").write_text(site)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
""")
    return conf


@contextlib.contextmanager
def nginx(tmp: Path, upstreams: list[int]) -> Any:
    """nginx in front of the upstream ports; yields its URL."""
    port = free_port()
    conf = nginx_conf(tmp, port, upstreams)
    check = subprocess.run([NGINX, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), timeout=10, what="nginx listening")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
