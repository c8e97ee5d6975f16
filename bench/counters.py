"""Directory-query counters read around each run: our /api/observability for our servers,
PostgreSQL's own transaction counts for the peer (which has no such endpoint)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.infra import BenchPostgres

# A PostgreSQL 15 backend that just went idle publishes its pending statistics within 10 s.
PG_STATS_IDLE_FLUSH_S = 11.0


def observability(base: str, token: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/api/observability", headers={"Authorization": f"Bearer {token}"},
                  timeout=10)
    r.raise_for_status()
    return r.json()


def validations(base: str, token: str) -> dict[str, Any]:
    report = observability(base, token)
    v = report["authentication"]["validations"]
    out: dict[str, Any] = {k: int(v[k]) for k in ("total", "cacheHits", "cacheMisses",
                                                   "databaseQueries")}
    out["backend"] = report.get("validationCache", {}).get("backend")
    return out


class PeerQueries:
    """The peer's database is its own, so every transaction on it is the peer's: one per
    authenticated request (BEGIN; SELECT user; ROLLBACK). Reads wait until the peer has been
    idle long enough for PostgreSQL to have published its counts."""

    def __init__(self, pg: BenchPostgres, url: str) -> None:
        self.pg, self.url = pg, url
        self.last_load = 0.0

    def loaded(self) -> None:
        self.last_load = time.monotonic()

    def settled(self) -> int:
        wait = self.last_load + PG_STATS_IDLE_FLUSH_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return asyncio.run(self.pg.transactions(self.url))
