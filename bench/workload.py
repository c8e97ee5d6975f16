"""The guide's workload model, time-compressed: each user validates 12 times an hour, at random
(Poisson) moments, against a TTL of 300 s (or, event-driven, against the max age). Compressing
time by K turns the TTL into 300/K s and each user's rate into 12·K per hour, so a minute of
wall time is an hour of the model at K=60.

This is an open-loop, fixed-rate load (not a throughput test), so a small asyncio client is
enough; the measure is the hit rate and the directory queries it leaves, from the server's own
/api/observability, set beside the guide's cost table."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx

from bench.counters import validations

MODEL_TTL_S = 300
MODEL_VALIDATIONS_PER_HOUR = 12
TTL_JITTER_MEAN = 0.05  # the cache shortens each entry's TTL by up to 10 % (mean 5 %)
GUIDE_ROW_1000 = {"users": 1000, "validationsPerHour": 12_000, "queriesNoCache": 12_000,
                  "queriesWithCache": 200, "savingsPercent": 98.3}


@dataclass
class WorkloadResult:
    users: int
    compression: int
    ttl_s: int
    max_age_s: int
    model_hours: float
    requests_sent: int
    failed: int
    validations: int
    hits: int
    db_queries: int
    hit_rate: float
    steady_hit_rate: float
    expected_hit_rate: float
    validations_per_hour_per_1000: float
    queries_per_hour_per_1000: float
    steady_queries_per_hour_per_1000: float
    queries_per_user_per_ttl: float
    savings_percent: float

    def to_json(self) -> dict:
        return {**asdict(self), "guide": GUIDE_ROW_1000}


def schedule(
    users: int, rate_per_s: float, seconds: float, seed: int = 7
) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    events = []
    for u in range(users):
        t = rng.expovariate(rate_per_s)
        while t < seconds:
            events.append((t, u))
            t += rng.expovariate(rate_per_s)
    events.sort()
    return events


async def _drive(base: str, cookie: str, tokens: list[str], events: list[tuple[float, int]],
                 mark_at: float, on_mark: Callable[[], object]) -> tuple[int, int]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    sem = asyncio.Semaphore(64)
    sent = failed = 0
    marked = False
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:

        async def one(u: int) -> None:
            nonlocal failed
            async with sem:
                try:
                    r = await client.get("/api/me", cookies={cookie: tokens[u]})
                    failed += r.status_code != 200
                except httpx.HTTPError:
                    failed += 1

        tasks = set()
        start = time.monotonic()
        for t, u in events:
            if not marked and t >= mark_at:
                await asyncio.gather(*tasks)
                await asyncio.to_thread(on_mark)
                marked = True
            delay = start + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(u))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.gather(*tasks)
    return sent, failed


def run_model(base: str, obs_token: str, cookie: str, tokens: list[str], *, ttl_s: int,
              seconds: float, max_age_s: int | None = None) -> WorkloadResult:
    """`max_age_s` (wall seconds): how long the server keeps entries while its change feed is
    complete; warm-up ends after the first of them (each user's first fill)."""
    users = len(tokens)
    k = MODEL_TTL_S // ttl_s
    life = max(ttl_s, max_age_s or ttl_s)
    rate = MODEL_VALIDATIONS_PER_HOUR * k / 3600  # per user per wall second
    events = schedule(users, rate, seconds)
    start = validations(base, obs_token)
    mark: dict[str, dict[str, int]] = {}
    sent, failed = asyncio.run(_drive(
        base, cookie, tokens, events, mark_at=life,
        on_mark=lambda: mark.setdefault("m", validations(base, obs_token))))
    end = validations(base, obs_token)
    mid = mark.get("m", start)

    def delta(a: dict[str, int], b: dict[str, int], key: str) -> int:
        return b[key] - a[key]

    total, hits, dbq = (delta(start, end, k2) for k2 in ("total", "cacheHits", "databaseQueries"))
    steady_total = delta(mid, end, "total")
    steady_hits = delta(mid, end, "cacheHits")
    steady_dbq = delta(mid, end, "databaseQueries")
    model_hours = seconds * k / 3600
    steady_hours = (seconds - life) * k / 3600
    per1000 = 1000 / users
    mean_ttl = life * (1 - TTL_JITTER_MEAN)
    expected = rate * mean_ttl / (1 + rate * mean_ttl)  # Poisson arrivals: λT/(1+λT)
    return WorkloadResult(
        users=users,
        compression=k,
        ttl_s=ttl_s,
        max_age_s=life,
        model_hours=round(model_hours, 3),
        requests_sent=sent,
        failed=failed,
        validations=total,
        hits=hits,
        db_queries=dbq,
        hit_rate=round(100 * hits / total, 2) if total else 0.0,
        steady_hit_rate=round(100 * steady_hits / steady_total, 2) if steady_total else 0.0,
        expected_hit_rate=round(100 * expected, 2),
        validations_per_hour_per_1000=round(total / model_hours * per1000, 1),
        queries_per_hour_per_1000=round(dbq / model_hours * per1000, 1),
        steady_queries_per_hour_per_1000=round(steady_dbq / steady_hours * per1000, 1)
        if steady_hours > 0 else 0.0,
        queries_per_user_per_ttl=round(dbq / users / (seconds / life), 3),
        savings_percent=round(100 * (1 - dbq / total), 2) if total else 0.0,
    )
