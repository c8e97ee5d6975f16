"""The Redis faults again, against a real `regcopilot serve` process over HTTP: the timings an
operator sees (uvicorn, sockets, the server's own event loop), and the log lines they grep for
in the server's output. Redis is killed and restarted, then stalled (SIGSTOP) and resumed,
while a bounded client load runs against the server."""

from __future__ import annotations

import asyncio
import time

import httpx

from regcopilot.users.sqlite import SqliteDirectory
from tests.cluster import MONITOR_TOKEN, ServerProcess, cluster_env
from tests.conftest import PASSWORD
from tests.load import Sample, stats
from tests.support import COOKIE, RedisServer, eventually, hash_password

USERS = 8
WORKERS = 4
MAX_REQUESTS = 8000
BEARER = {"Authorization": f"Bearer {MONITOR_TOKEN}"}


async def add_users(db: str) -> None:
    directory = SqliteDirectory(db)
    await directory.open()
    try:
        for i in range(USERS):
            await directory.add(f"user{i}@example.com", hash_password(PASSWORD))
    finally:
        await directory.close()


async def test_serve_process_redis_killed_then_stalled(tmp_path, redis_prefix):
    redis_server = RedisServer().start()
    db = tmp_path / "users.db"
    await add_users(str(db))
    env = cluster_env(f"sqlite:///{db}", redis_prefix, tmp_path / "data",
                      REDIS_URL=redis_server.url, REDIS_TIMEOUT_MS=50,
                      CACHE_TTL_SECONDS=1, SESSION_VALIDATION_INTERVAL_SECONDS=1,
                      CACHE_MAX_AGE_SECONDS=1)
    server = ServerProcess("serve", env, tmp_path)
    samples: list[Sample] = []
    stop = asyncio.Event()
    try:
        await asyncio.to_thread(server.start)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            cookies = []
            for i in range(USERS):
                r = await client.post("/api/auth/login",
                                      json={"email": f"user{i}@example.com", "password": PASSWORD})
                assert r.status_code == 200, r.text
                cookies.append(r.cookies[COOKIE])
                client.cookies.clear()

            async def backend() -> str:
                r = await client.get("/api/observability", headers=BEARER)
                return r.json()["validationCache"]["backend"]

            async def worker(n: int) -> None:
                i = n
                while not stop.is_set() and len(samples) < MAX_REQUESTS:
                    started = time.monotonic()
                    try:
                        r = await client.get("/api/me", headers={
                            "cookie": f"{COOKIE}={cookies[i % USERS]}"})
                        status = r.status_code
                    except httpx.HTTPError:
                        status = 0
                    samples.append(Sample(started, (time.monotonic() - started) * 1000, status))
                    i += 1
                    await asyncio.sleep(0.005)

            async def queries() -> int:
                r = await client.get("/api/observability", headers=BEARER)
                return r.json()["authentication"]["validations"]["databaseQueries"]

            def served_since(start: float) -> int:
                return sum(1 for s in samples if s.at >= start and s.status == 200)

            tasks = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
            try:
                await eventually(lambda: len(samples) > 200, timeout=10)
                assert await backend() == "redis"

                # Killed, then restarted on the same port.
                killed_at = time.monotonic()
                await asyncio.to_thread(redis_server.kill)
                await eventually(lambda: _is(backend(), "redis-disconnected"), timeout=5,
                                 interval=0.02)
                took_over_at = time.monotonic()
                took_over_s = took_over_at - killed_at
                # An outage under load, long enough for cached answers to run out (1 s TTL)
                # and be asked again from the memory tier: the directory is queried anew.
                queried = await queries()
                await eventually(lambda: _more(queries(), queried), timeout=10, interval=0.05)
                await eventually(lambda: served_since(took_over_at) >= 300, timeout=10,
                                 interval=0.02)
                restarted_at = time.monotonic()
                await asyncio.to_thread(redis_server.start)
                await eventually(lambda: _is(backend(), "redis"), timeout=5, interval=0.02)
                recovery_s = time.monotonic() - restarted_at

                # Stalled, then resumed.
                paused_at = time.monotonic()
                redis_server.pause()
                await eventually(lambda: _is(backend(), "redis-error", "redis-disconnected"),
                                 timeout=5, interval=0.02)
                opened_s = time.monotonic() - paused_at
                await eventually(lambda: served_since(paused_at + opened_s + 0.2) >= 300,
                                 timeout=10, interval=0.02)
                resumed_at = time.monotonic()
                redis_server.resume()
                await eventually(lambda: _is(backend(), "redis"), timeout=5, interval=0.02)
                stall_recovery_s = time.monotonic() - resumed_at
            finally:
                stop.set()
                await asyncio.gather(*tasks)

        failed = [s for s in samples if s.status != 200]
        outage = [s for s in samples if killed_at <= s.at < restarted_at + recovery_s]
        stall = [s for s in samples if paused_at <= s.at < resumed_at]
        open_phase = [s for s in samples if paused_at + opened_s + 0.2 <= s.at < resumed_at]
        print(f"\nserve: {len(samples)} requests, {len(failed)} failed; kill: memory tier after "
              f"{took_over_s * 1000:.0f} ms, latency {stats(outage)}, back to redis "
              f"{recovery_s:.2f} s after restart; stall: breaker open after "
              f"{opened_s * 1000:.0f} ms, latency {stats(stall)}, breaker open {stats(open_phase)},"
              f" back {stall_recovery_s:.2f} s after resume")
        assert not failed, failed[:5]
        assert stats(stall)["max"] < 1000, stats(stall)  # never redis-py's seconds of retries
        log = server.log_path.read_text()
        assert "Redis cache connected successfully" in log
        lost = log.index("Redis cache failing")
        assert log.index("Redis cache connected successfully", lost) > lost
        for secret in (PASSWORD, env["NEXTAUTH_SECRET"], MONITOR_TOKEN, *cookies):
            assert secret not in log  # the server's whole output, uvicorn's lines included
    finally:
        server.stop()
        redis_server.stop()


async def _more(value, than: int) -> bool:
    return (await value) > than


async def _is(value, *options: str) -> bool:
    return (await value) in options
