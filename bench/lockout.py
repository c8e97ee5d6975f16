"""Lockout delay across instances: time from a ban (admin API on one instance, or plain SQL on
auth.users) or a session revocation ("sign out everywhere" on one instance, or plain SQL on the
session records) until every one of three instances refuses the session.

    .venv/bin/python bench/lockout.py [--trials 50] [--paths api,sql,revoke-all,session-sql]
                                      [--pooler transaction|session]

Uses this machine's PostgreSQL and Redis (a database and key prefix of its own, removed
afterwards) and three `regcopilot serve` processes on loopback ports.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet import three_instances
from tests.cluster import PASSWORD, add_user
from tests.support import COOKIE


async def login(client: httpx.AsyncClient, email: str) -> str:
    r = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    client.cookies.clear()  # each request names its session: the jar must not add another
    return r.cookies[COOKIE]


async def refused_after(client: httpx.AsyncClient, cookie: str, t0: float,
                        deadline: float) -> float:
    while time.perf_counter() < deadline:
        r = await client.get("/api/me", cookies={COOKIE: cookie})
        if r.status_code == 401:
            return time.perf_counter() - t0
    raise TimeoutError("not refused before the deadline")


async def trial(clients: list[httpx.AsyncClient], pg: asyncpg.Connection, pg_url: str,
                admin_cookie: str, path: str) -> float:
    email = f"lock-{uuid.uuid4().hex[:10]}@example.com"
    user_id = await add_user(pg_url, email)
    cookie = await login(clients[1], email)
    caller = await login(clients[0], email)  # the device that signs the others out
    for c in clients:  # warm every near cache
        for _ in range(2):
            assert (await c.get("/api/me", cookies={COOKIE: cookie})).status_code == 200
    if path == "revoke-all":
        r = await clients[0].post("/api/auth/sessions/revoke-all", json={"keepCurrent": True},
                                  cookies={COOKIE: caller})
        r.raise_for_status()
    elif path == "session-sql":
        await pg.execute(
            "UPDATE public.regcopilot_sessions SET revoked_at = now() WHERE user_id = $1"
            " AND id <> $2", uuid.UUID(user_id), _jti(caller),
        )
    elif path == "api":
        r = await clients[0].post(f"/api/admin/users/{user_id}/ban", json={},
                                  cookies={COOKIE: admin_cookie})
        r.raise_for_status()
    else:
        await pg.execute(
            "UPDATE auth.users SET banned_until = now() + interval '1 hour' WHERE id = $1",
            uuid.UUID(user_id),
        )
    t0 = time.perf_counter()
    delays = await asyncio.gather(
        *(refused_after(c, cookie, t0, t0 + 10) for c in clients)
    )
    return max(delays)


def _jti(cookie: str) -> str:
    """The session id inside a cookie (the JWT's jti claim; the signature is not needed)."""
    body = cookie.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["jti"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(trials: int, paths: list[str], pooler: str | None) -> None:
    async with three_instances("lockout", pooler) as (pg_url, clients):
        admin_email = f"admin-{uuid.uuid4().hex[:6]}@example.com"
        await add_user(pg_url, admin_email, admin=True)
        admin_cookie = await login(clients[0], admin_email)
        pg = await asyncpg.connect(pg_url)
        results: dict[str, list[float]] = {path: [] for path in paths}
        for _ in range(trials):
            for path in results:
                results[path].append(await trial(clients, pg, pg_url, admin_cookie, path))
        await pg.close()
    via = f", DATABASE_URL through PgBouncer ({pooler} mode)" if pooler else ""
    print(f"refused on all 3 instances, {trials} trials per path{via} (ms):")
    print("| path | p50 | p99 | max | mean |")
    print("|---|---|---|---|---|")
    for path, values in results.items():
        ms = [v * 1000 for v in values]
        print(f"| {path} | {pct(ms, .5):.1f} | {pct(ms, .99):.1f} | {max(ms):.1f} "
              f"| {statistics.mean(ms):.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--paths", default="api,sql,revoke-all,session-sql",
                        help="ban by API / SQL; revoke-all by API; session revoked by SQL")
    parser.add_argument("--pooler", choices=["transaction", "session"],
                        help="the instances reach PostgreSQL through a PgBouncer in this mode")
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.paths.split(","), args.pooler))
