"""Workspace deleted → its members moved out on every instance: time from the deletion
(`DELETE /api/workspaces/{id}` on instance A returned, or the plain SQL `UPDATE
copilot_core.tenants SET deleted_at = now()` committed) until all three instances serve a
member's session in their personal workspace. Issue 22's bound is 1 s.

    .venv/bin/python bench/workspace_delete.py [--trials 30]

Each trial makes a team, invites the member (POST /api/invitations), the member accepts and
switches into it on instance B, every instance serves that from its cache, then the team is
deleted. Uses this machine's PostgreSQL and Redis (a database and key prefix of its own,
removed afterwards) and three `regcopilot serve` processes on loopback ports. Bounded: each
trial gives up after 10 s.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet import three_instances
from bench.workspaces import (
    as_cookie,
    member_of_fleet,
    moved_out_everywhere,
    print_table,
    run_trials,
    switched_everywhere,
    timed_paths,
)
from tests.support import COOKIE


async def trial(clients: list[httpx.AsyncClient], pg: asyncpg.Connection, owner: str,
                member: dict[str, str], path: str) -> float:
    a, b = clients[0], clients[1]
    r = await a.post("/api/workspaces", headers=as_cookie(owner), json={"name": "Doomed"})
    r.raise_for_status()
    team = r.json()["id"]
    r = await a.post("/api/workspaces/switch", headers=as_cookie(owner), json={"tenantId": team})
    r.raise_for_status()
    owner_in_team = r.cookies[COOKIE]
    r = await a.post("/api/invitations", headers=as_cookie(owner_in_team),
                     json={"email": member["email"], "role": "member"})
    r.raise_for_status()
    token = r.json()["invitation"]["inviteUrl"].rsplit("/", 1)[1]
    r = await b.post(f"/api/invitations/{token}/accept", headers=as_cookie(member["cookie"]))
    r.raise_for_status()
    cookie = await switched_everywhere(clients, member["cookie"], team)
    if path == "api":
        r = await a.delete(f"/api/workspaces/{team}", headers=as_cookie(owner_in_team))
        r.raise_for_status()
    else:
        await pg.execute("UPDATE copilot_core.tenants SET deleted_at = now() WHERE id = $1",
                         uuid.UUID(team))
    return await moved_out_everywhere(clients, cookie, member["personal"])


async def main(trials: int) -> None:
    async with three_instances("wsdelete") as (pg_url, clients):
        owner, member = await member_of_fleet(pg_url, clients)
        results = await timed_paths(
            pg_url, trials, lambda pg, path: trial(clients, pg, owner, member, path))
    print_table(f"workspace deleted → member served in the personal workspace on all 3"
                f" instances, {trials} trials per path (ms):", results)


if __name__ == "__main__":
    run_trials(main, __doc__)
