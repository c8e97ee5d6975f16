"""Failover on the real engines, under signed-in load on several `regcopilot serve` processes:
a Redis Sentinel master SIGKILLed, a Redis Cluster master SIGKILLed, a PostgreSQL standby
promoted after its primary stops, and a rolling restart of three instances behind nginx with
deploy/nginx/regcopilot.conf. Every server is started here on free loopback ports; the figures
each test prints are the ones in docs/multi-instance.md ("Failover")."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import (
    PASSWORD,
    ServerProcess,
    add_user,
    cluster_env,
    login,
    me,
    report,
    reset_users,
    running,
)
from tests.failover import (
    ClusterSet,
    HttpLoad,
    PgPair,
    SentinelSet,
    ban,
    nginx,
    refused_on_every,
    sql,
    subscribers,
    summary,
)
from tests.support import COOKIE, delete_prefix, eventually, new_prefix

pytestmark = [pytest.mark.xdist_group("failover"), pytest.mark.slow]

LOCKOUT_S = 3.0  # the lockout bound the product promises under these faults
BACK_ON_REDIS_S = 15.0
SLOWEST_MS = 2000.0
USERS = 8
PROMOTE_AFTER_S = 3.0
SERVED_NOT = frozenset({401, 503})


def figures(name: str, **values: Any) -> None:
    """One line per scenario in the test output (-s): the numbers the docs quote."""
    print(f"\n[failover] {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


async def sign_in_all(url: str, emails: list[str]) -> list[str]:
    return [await login(url, e) for e in emails]


async def new_users(pg_url: str, n: int, tag: str) -> tuple[list[str], list[str]]:
    emails = [f"{tag}{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(n)]
    return emails, [await add_user(pg_url, e) for e in emails]


async def back_on_redis(servers: list[ServerProcess], since_wall_ms: int,
                        bus: Callable[[], int]) -> bool:
    """Every instance reports the shared cache, its metrics flush has reached the promoted
    master since `since_wall_ms`, and every instance's event bus is subscribed there again."""
    pids = {s.proc.pid for s in servers if s.proc is not None}
    for s in servers:
        try:
            body = await report(s.url)
        except (httpx.HTTPError, AssertionError):
            return False
        if body["validationCache"]["backend"] != "redis":
            return False
        flushed = {i["pid"] for i in body.get("instances", []) if i["lastSeen"] > since_wall_ms}
        if not pids <= flushed:
            return False
    return bus() >= len(servers)


async def redis_failover(
    pg_url: str, tmp_path: Path, redis_url: str, kill: Callable[[], None],
    bus: Callable[[str], int], name: str,
) -> None:
    """Signed-in load on two instances; `kill` takes the Redis master down; a user banned in
    plain SQL 0.5 s later is refused everywhere within LOCKOUT_S; every instance is back on
    the promoted master within BACK_ON_REDIS_S; a new instance signs a new user in."""
    await reset_users(pg_url)
    prefix = new_prefix()
    env = cluster_env(pg_url, prefix, tmp_path, REDIS_URL=redis_url)
    channel = f"{prefix}events"

    def on_bus() -> int:
        return bus(channel)

    emails, _ = await new_users(pg_url, USERS, "load")
    (victim,), (victim_id,) = await new_users(pg_url, 1, "victim")
    with running(env, tmp_path, ("a", "b")) as servers:
        targets = [s.url for s in servers]
        cookies = await sign_in_all(targets[0], emails)
        victim_cookie = await login(targets[1], victim)
        for t in targets:
            assert await me(t, victim_cookie) == 200
        await eventually(lambda: back_on_redis(servers, 0, on_bus), timeout=15)
        async with HttpLoad(targets, cookies) as load:
            await load.more(300)
            killed_wall_ms = int(time.time() * 1000)
            killed = time.monotonic()
            kill()
            await asyncio.sleep(0.5 - (time.monotonic() - killed))  # the scenario: 0.5 s later
            banned = await ban(pg_url, victim_id)
            lockout = await refused_on_every(targets, victim_cookie, banned, LOCKOUT_S)
            deadline = killed + BACK_ON_REDIS_S
            while not await back_on_redis(servers, killed_wall_ms, on_bus):
                assert time.monotonic() < deadline, "not back on the promoted master in time"
                await asyncio.sleep(0.05)
            recovered = time.monotonic() - killed
            await load.more(300)
        assert not load.failed(), summary(load.samples)
        assert load.slowest_ms() <= SLOWEST_MS, summary(load.samples)
        after = ServerProcess("late", env, tmp_path).start()
        try:
            (newcomer,), _ = await new_users(pg_url, 1, "newcomer")
            cookie = await login(after.url, newcomer)
            assert await me(after.url, cookie) == 200
            assert (await report(after.url))["validationCache"]["backend"] == "redis"
        finally:
            after.stop()
    slow = sorted(load.samples, key=lambda x: -x.ms)[:5]
    figures(name, requests=len(load.samples), failed=len(load.failed()),
            slowest_ms=round(load.slowest_ms()),
            slowest_at_s=[round(x.at - killed, 2) for x in slow],
            lockout_s=round(max(lockout.values()), 3),
            back_on_redis_s=round(recovered, 2))


@pytest.fixture
def sentinels() -> Any:
    group = SentinelSet(down_after_ms=1000).start()
    yield group
    group.stop()


async def test_sentinel_master_killed_under_load(sentinels, pg_url, tmp_path):
    """Master + replica + 3 Sentinels (quorum 2, down-after-milliseconds 1000); SIGKILL the
    master."""
    assert sentinels.master is not None

    def bus(channel: str) -> int:
        return subscribers([sentinels.master_port()], channel)

    await redis_failover(pg_url, tmp_path, sentinels.url, sentinels.master.kill, bus,
                         "sentinel")
    assert sentinels.replica is not None and sentinels.master_port() == sentinels.replica.port


@pytest.fixture
def redis_cluster() -> Any:
    group = ClusterSet(node_timeout_ms=1000).start()
    yield group
    group.stop()


async def test_cluster_master_killed_under_load(redis_cluster, pg_url, tmp_path):
    """Three masters with a replica each (cluster-node-timeout 1000); SIGKILL the master that
    serves the metrics keys (one hash tag: one slot)."""
    victim = redis_cluster.node_of("{metrics}")

    def bus(channel: str) -> int:
        return subscribers([n.port for n in redis_cluster.alive()], channel)

    await redis_failover(pg_url, tmp_path, redis_cluster.url, victim.kill, bus, "cluster")
    assert redis_cluster.healthy()


async def test_rolling_restart_behind_nginx(pg_url, tmp_path):
    """Three instances behind deploy/nginx/regcopilot.conf; each in turn gets SIGTERM, exits
    and is started again on its port, under signed-in load (GET /api/me, and a sign-in POST
    every tenth request) through nginx: no request fails, the same cookies work throughout. A
    user banned in plain SQL while the second instance drains is refused by the others within
    LOCKOUT_S, and by that instance once it is back."""
    await reset_users(pg_url)
    prefix = new_prefix()
    env = cluster_env(pg_url, prefix, tmp_path)
    emails, _ = await new_users(pg_url, USERS, "load")
    (victim,), (victim_id,) = await new_users(pg_url, 1, "victim")
    lockout: dict[str, float] = {}
    try:
        with running(env, tmp_path, ("r1", "r2", "r3")) as servers, \
                nginx(tmp_path, [s.port for s in servers]) as lb:
            cookies = await sign_in_all(lb, emails)
            victim_cookie = await login(lb, victim)
            for s in servers:
                assert await me(s.url, victim_cookie) == 200

            async def ban_while_draining() -> None:
                others = [s.url for s in servers if s is not servers[1]]
                banned = await ban(pg_url, victim_id)
                lockout.update(await refused_on_every([lb, *others], victim_cookie, banned,
                                                      LOCKOUT_S))

            drains: list[float] = []
            async with HttpLoad([lb], cookies, logins=emails, login_every=10,
                                concurrency=8, max_seconds=50) as load:
                await load.more(300)
                for n, s in enumerate(servers):
                    drains.append(await restart(s, ban_while_draining if n == 1 else None))
                    await load.more(150)
            restarted_ok = [await me(lb, c) for c in cookies]
            assert await me(servers[1].url, victim_cookie) == 401
        nginx_log = (tmp_path / "error.log").read_text()
    finally:
        delete_prefix(prefix)
    failed = load.failed()
    logins = sum(1 for x in load.samples if x.what == "login")
    figures("rolling restart", requests=len(load.samples), sign_ins=logins, failed=len(failed),
            slowest_ms=round(load.slowest_ms()), drain_to_exit_s=[round(d, 2) for d in drains],
            lockout_s=round(max(lockout.values()), 3),
            nginx_retried_refused=nginx_log.count("(111: Connection refused)"),
            nginx_cut_after_sending=nginx_log.count("prematurely closed"))
    assert not failed, summary(load.samples)
    assert logins > 0
    assert restarted_ok == [200] * len(cookies)


async def restart(server: ServerProcess, during: Callable[[], Any] | None = None) -> float:
    """SIGTERM one instance, see its readiness say "draining" before its port closes, (run
    `during`), wait for it to exit, start it again on the same port; the seconds from SIGTERM
    to exit."""
    assert server.proc is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as probe:
        assert (await probe.get("/api/ready")).status_code == 200  # a kept-alive connection
        sent = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGTERM)
        r = await probe.get("/api/ready")
        assert r.status_code == 503 and r.json()["status"] == "draining", r.text
        assert r.headers.get("connection") == "close"
    if during is not None:
        await during()
    await asyncio.to_thread(server.proc.wait, 30)
    exited = time.monotonic() - sent
    await asyncio.to_thread(server.start)
    return exited


@pytest.fixture
def pg_pair() -> Any:
    pair = PgPair().start()
    yield pair
    pair.stop()


@dataclass
class Probe:
    """Requests that need the database, made in a loop from the stop until they succeed again
    after the promotion: each answer with its time from the stop."""

    answers: list[tuple[float, int, str | None]] = field(default_factory=list)

    def resumed_after(self) -> float:
        """Seconds from the stop to the first success that was never followed by a failure."""
        last_bad = max((i for i, (_, code, _) in enumerate(self.answers) if code != 200),
                       default=-1)
        return self.answers[last_bad + 1][0]

    def failures(self) -> list[tuple[float, int, str | None]]:
        return [a for a in self.answers if a[1] != 200]


async def probe_until_back(targets: list[str], promoted: asyncio.Event, started: float,
                           ask: Callable[[httpx.AsyncClient, str], Any]) -> Probe:
    probe = Probe()
    ok_after_promotion = 0
    async with httpx.AsyncClient(timeout=10) as client:
        i = 0
        while ok_after_promotion < 2 * len(targets):
            assert time.monotonic() - started < 30, f"not back: {probe.answers[-5:]}"
            r = await ask(client, targets[i % len(targets)])
            i += 1
            probe.answers.append((time.monotonic() - started, r.status_code,
                                  r.headers.get("retry-after")))
            ok_after_promotion = ok_after_promotion + 1 if (
                promoted.is_set() and r.status_code == 200) else 0
            await asyncio.sleep(0.02)
    return probe


async def test_standby_promoted_under_load(pg_pair, tmp_path):
    """A private primary with a streaming standby; DATABASE_URL names both hosts with
    target_session_attrs=read-write. Stop the primary, promote the standby, under load on two
    instances: sign-ins and cold validations come back; a ban committed on the old primary
    just before the stop and one on the new primary just after are refused everywhere."""
    url = pg_pair.url
    await reset_users(url)
    prefix = new_prefix()
    env = cluster_env(url, prefix, tmp_path)
    emails, _ = await new_users(url, USERS, "load")
    cold, cold_ids = await new_users(url, 40, "cold")
    (early, late), (early_id, late_id) = await new_users(url, 2, "victim")
    (signer,), _ = await new_users(url, 1, "signer")
    try:
        with running(env, tmp_path, ("p1", "p2")) as servers:
            targets = [s.url for s in servers]
            cookies = await sign_in_all(targets[0], emails)
            cold_cookies = await sign_in_all(targets[1], cold)
            victims = await sign_in_all(targets[0], [early, late])
            for t in targets:
                for c in victims:
                    assert await me(t, c) == 200
            for user_id in cold_ids:  # every instance drops what it holds for them
                await sql(url, "SELECT public.regcopilot_announce($1)", user_id)
            cold_queue = list(cold_cookies)

            async def cold_validation(client: httpx.AsyncClient, target: str) -> Any:
                r = await client.get(f"{target}/api/me",
                                     headers={"cookie": f"{COOKIE}={cold_queue[0]}"})
                if r.status_code == 200:
                    cold_queue.pop(0)  # validated once: no longer cold
                return r

            async def sign_in(client: httpx.AsyncClient, target: str) -> Any:
                return await client.post(f"{target}/api/auth/login",
                                         json={"email": signer, "password": PASSWORD})

            async with HttpLoad(targets, cookies) as load:
                await load.more(300)
                early_ban = await ban(pg_pair.node_url(pg_pair.primary), early_id)
                stopped = time.monotonic()
                promoted = asyncio.Event()
                probes = [asyncio.create_task(probe_until_back(targets, promoted, stopped, ask))
                          for ask in (sign_in, cold_validation)]
                # No session is served once the ban is committed: refused, or 503 while no
                # database answers (it cannot be proved valid).
                early_locked = asyncio.create_task(refused_on_every(
                    targets, victims[0], early_ban, LOCKOUT_S, SERVED_NOT))
                await asyncio.to_thread(pg_pair.stop_primary)
                early_lockout = await early_locked
                # A failover manager's detection time (longer than DATABASE_TIMEOUT_SECONDS,
                # so requests that need the database are refused meanwhile).
                await asyncio.sleep(PROMOTE_AFTER_S - (time.monotonic() - stopped))
                await asyncio.to_thread(pg_pair.promote_standby)
                promoted_after = time.monotonic() - stopped
                promoted.set()
                late_ban = await ban(pg_pair.node_url(pg_pair.standby), late_id)
                early_refused, late_lockout = await asyncio.gather(
                    refused_on_every(targets, victims[0], early_ban, PROMOTE_AFTER_S + LOCKOUT_S),
                    refused_on_every(targets, victims[1], late_ban, LOCKOUT_S))
                signed_in, validated = await asyncio.gather(*probes)
                await load.more(300)
    finally:
        delete_prefix(prefix)
    probe_failures = signed_in.failures() + validated.failures()
    figures("standby promoted", requests=len(load.samples), failed=len(load.failed()),
            slowest_ms=round(load.slowest_ms()), promoted_after_s=round(promoted_after, 2),
            sign_in_back_s=round(signed_in.resumed_after(), 2),
            cold_validation_back_s=round(validated.resumed_after(), 2),
            probe_503s=len(probe_failures),
            lockout_before_stop_s=round(max(early_lockout.values()), 3),
            early_ban_401_s=round(max(early_refused.values()), 2),
            lockout_after_promotion_s=round(max(late_lockout.values()), 3))
    # Requests that need the database may be refused for a while: with 503 and Retry-After.
    assert all(code == 503 and retry for _, code, retry in probe_failures), probe_failures
    # Requests served from the shared cache never notice.
    assert not load.failed(), summary(load.samples)


async def attempt(client: httpx.AsyncClient, cookie: str) -> str:
    """One request: "ok", "refused" (no connection: nothing was sent, safe to retry anywhere),
    or "lost: …" (cut after it was sent: a balancer may not retry a POST)."""
    try:
        r = await client.get("/api/me", headers={"cookie": f"{COOKIE}={cookie}"})
    except httpx.ConnectError:
        return "refused"
    except httpx.HTTPError as exc:
        return f"lost: {type(exc).__name__}"
    return "ok" if r.status_code == 200 else f"status {r.status_code}"


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_answers_or_refuses_every_request(pg_url, tmp_path, workers):
    """SIGTERM to the whole process group (as systemd sends it) under load over kept-alive and
    new connections: every request is answered, or refused before it was sent; none is cut
    after it was sent. (uvicorn alone closes idle kept-alive connections at once, so a request
    written into one just then is lost; with --workers the supervisor's socket queued
    connections for nobody.)"""
    await reset_users(pg_url)
    prefix = new_prefix()
    env = cluster_env(pg_url, prefix, tmp_path)
    emails, _ = await new_users(pg_url, 4, "drain")
    server = ServerProcess("drain", env, tmp_path, workers=workers).start()
    outcomes: list[str] = []
    stop = asyncio.Event()
    try:
        cookies = await sign_in_all(server.url, emails)

        async def kept_alive(n: int) -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                while not stop.is_set():
                    outcomes.append(await attempt(client, cookies[n % len(cookies)]))
                    await asyncio.sleep(0.005)

        async def new_connections(n: int) -> None:
            while not stop.is_set():
                async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                    outcomes.append(await attempt(client, cookies[n % len(cookies)]))
                await asyncio.sleep(0.005)

        tasks = [asyncio.create_task(f(n)) for n in range(4) for f in (kept_alive,
                                                                        new_connections)]
        while len(outcomes) < 200:
            await asyncio.sleep(0.01)
        assert server.proc is not None
        sent = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGTERM)
        await asyncio.to_thread(server.proc.wait, 30)
        exited = time.monotonic() - sent
        answered_until_exit = len(outcomes)
        while outcomes.count("refused") < 20:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        server.stop()
        delete_prefix(prefix)
    lost = [o for o in outcomes if o not in ("ok", "refused")]
    figures(f"SIGTERM --workers {workers}", requests=len(outcomes),
            answered=outcomes.count("ok"), refused=outcomes.count("refused"), lost=len(lost),
            exit_s=round(exited, 2), before_exit=answered_until_exit)
    assert not lost, lost
