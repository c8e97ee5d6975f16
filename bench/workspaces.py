"""Access lost → effect across instances: time from a member's removal from a workspace (the
members API on one instance, or plain SQL on copilot_core.tenant_memberships) until every one
of three instances serves that member's session in their personal workspace.

    .venv/bin/python bench/workspaces.py [--trials 30]

Uses this machine's PostgreSQL and Redis (a database and key prefix of its own, removed
afterwards) and three `regcopilot serve` processes on loopback ports. Bounded: each trial
gives up after 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet import three_instances
from bench.lockout import login, pct
from tests.cluster import add_user
from tests.support import COOKIE


def as_cookie(cookie: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={cookie}"}


async def served_personal_after(client: httpx.AsyncClient, cookie: str, personal: str,
                                t0: float, deadline: float) -> float:
    while time.perf_counter() < deadline:
        r = await client.get("/api/me", headers=as_cookie(cookie))
        if r.status_code == 200 and r.json()["tenantId"] == personal:
            return time.perf_counter() - t0
    raise TimeoutError("not moved before the deadline")


async def trial(clients: list[httpx.AsyncClient], pg: asyncpg.Connection, owner: str,
                team: str, member: dict[str, str], path: str) -> float:
    r = await clients[0].post(f"/api/workspaces/{team}/members", headers=as_cookie(owner),
                              json={"email": member["email"]})
    r.raise_for_status()
    cookie = await switched_everywhere(clients, member["cookie"], team)
    if path == "api":
        r = await clients[0].delete(f"/api/workspaces/{team}/members/{member['id']}",
                                    headers=as_cookie(owner))
        r.raise_for_status()
    else:
        await pg.execute(
            "UPDATE copilot_core.tenant_memberships SET status = 'removed', deleted_at = now()"
            " WHERE tenant_id = $1 AND user_id = $2", uuid.UUID(team), uuid.UUID(member["id"]))
    return await moved_out_everywhere(clients, cookie, member["personal"])


async def switched_everywhere(clients: list[httpx.AsyncClient], cookie: str, team: str) -> str:
    """The member switches into the team on instance B, and every instance's near cache then
    holds the member there; the re-issued cookie."""
    r = await clients[1].post("/api/workspaces/switch", headers=as_cookie(cookie),
                              json={"tenantId": team})
    r.raise_for_status()
    cookie = r.cookies[COOKIE]
    for c in clients:
        for _ in range(2):
            assert (await c.get("/api/me", headers=as_cookie(cookie))).json()["tenantId"] == team
    return cookie


async def moved_out_everywhere(clients: list[httpx.AsyncClient], cookie: str,
                               personal: str) -> float:
    """Seconds from now until every instance serves the session in `personal`."""
    t0 = time.perf_counter()
    delays = await asyncio.gather(
        *(served_personal_after(c, cookie, personal, t0, t0 + 10) for c in clients))
    return max(delays)


async def member_of_fleet(pg_url: str, clients: list[httpx.AsyncClient]
                          ) -> tuple[str, dict[str, str]]:
    """The owner's session (instance A) and a member signed in on instance B."""
    await add_user(pg_url, "owner@bench.example")
    owner = await login(clients[0], "owner@bench.example")
    member_id = await add_user(pg_url, "member@bench.example")
    r = await clients[1].post("/api/auth/login", json={
        "email": "member@bench.example", "password": "cluster password 1"})
    r.raise_for_status()
    return owner, {"id": member_id, "email": "member@bench.example",
                   "cookie": r.cookies[COOKIE], "personal": r.json()["user"]["tenantId"]}


async def timed_paths(pg_url: str, trials: int,
                      one: Callable[[asyncpg.Connection, str], Awaitable[float]],
                      ) -> dict[str, list[float]]:
    """`trials` rounds of `one(pg, path)` for the API path and the plain SQL path, in turn."""
    pg = await asyncpg.connect(pg_url)
    try:
        results: dict[str, list[float]] = {"api": [], "sql": []}
        for _ in range(trials):
            for path in results:
                results[path].append(await one(pg, path))
    finally:
        await pg.close()
    return results


def print_table(title: str, results: dict[str, list[float]]) -> None:
    print(title)
    print("| path | p50 | p99 | max |")
    print("|---|---|---|---|")
    for path, values in results.items():
        ms = [v * 1000 for v in values]
        print(f"| {path} | {pct(ms, .5):.1f} | {pct(ms, .99):.1f} | {max(ms):.1f} |")


async def main(trials: int) -> None:
    async with three_instances("wsbench") as (pg_url, clients):
        owner, member = await member_of_fleet(pg_url, clients)
        r = await clients[0].post("/api/workspaces", headers=as_cookie(owner),
                                  json={"name": "Bench Team"})
        r.raise_for_status()
        team = r.json()["id"]
        results = await timed_paths(
            pg_url, trials, lambda pg, path: trial(clients, pg, owner, team, member, path))
    print_table(f"access lost → served in the personal workspace on all 3 instances, "
                f"{trials} trials per path (ms):", results)


def run_trials(main: Callable[[int], Awaitable[None]], doc: str) -> None:
    """The command line both workspace benches share: `--trials N` (default 30)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    asyncio.run(main(parser.parse_args().trials))


if __name__ == "__main__":
    run_trials(main, __doc__)
