"""The `/api/observability` JSON: the guide's shape exactly, plus added keys only."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from regcopilot.metrics.counters import Snapshot, last_hours, percentile
from regcopilot.names import Count

COST_PER_QUERY = 0.01 / 1000  # dollars, the guide's figure: $0.01 per 1,000 queries


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def effectiveness(hit_rate: float) -> str:
    if hit_rate > 95:
        return "Excellent"
    if hit_rate > 90:
        return "Good"
    if hit_rate > 80:
        return "Fair"
    return "Poor"


def ttl_advice(hit_rate: float) -> str:
    return "Consider increasing cache TTL" if hit_rate < 90 else "Current TTL is optimal"


def time_rating(avg_ms: float) -> str:
    if avg_ms < 10:
        return "Excellent"
    if avg_ms < 50:
        return "Good"
    return "Needs optimization"


def costs(total_validations: int, queries: int, hours: float) -> dict[str, Any]:
    with_cache = queries * COST_PER_QUERY
    without = total_validations * COST_PER_QUERY
    savings = max(0.0, without - with_cache)
    pct = savings / without * 100 if without else 0.0
    return {
        "estimatedDatabaseCost": f"{with_cache:.4f}",
        "costWithoutCache": f"{without:.4f}",
        "savings": f"{savings:.4f}",
        "savingsPercentage": f"{pct:.2f}",
        "queriesPerHour": round(queries / hours),
    }


def build(
    snap: Snapshot,
    *,
    cache_size: int,
    max_size: int | None,
    ttl_seconds: int,
    backend: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    uptime_ms = max(0, now_ms - snap.start_ms)
    hours = uptime_ms / 3_600_000
    # Per-hour averages over at least one hour: a minute-old process must not extrapolate.
    per_hour_base = max(hours, 1.0)
    c = snap.counters
    total, hits = c[Count.VALIDATIONS], c[Count.CACHE_HITS]
    hit_rate = round(hits / total * 100, 2) if total else 0.0
    avg_ms = round(snap.time_sum_ms / total, 3) if total else 0.0
    hourly = {h: snap.logins_hourly.get(h, 0) for h in last_hours(now_ms / 1000)}
    body: dict[str, Any] = {
        "authentication": {
            "uptime": {
                "milliseconds": uptime_ms,
                "hours": round(hours, 2),
                "startTime": iso_ms(snap.start_ms),
            },
            "logins": {
                "total": c[Count.LOGINS],
                "last24Hours": hourly,
                "lastLoginTimestamp": iso_ms(snap.last_login_ms) if snap.last_login_ms else None,
                "averagePerHour": round(c[Count.LOGINS] / per_hour_base, 1),
            },
            "validations": {
                "total": total,
                "cacheHits": hits,
                "cacheMisses": c[Count.CACHE_MISSES],
                "cacheHitRate": hit_rate,
                "databaseQueries": c[Count.DATABASE_QUERIES],
                "failures": c[Count.FAILURES],
                "averageTimeMs": avg_ms,
                "averagePerHour": round(total / per_hour_base, 1),
                "coalescedMisses": c[Count.COALESCED],
                "latencyMs": {
                    "p50": percentile(snap.latency, 0.50),
                    "p95": percentile(snap.latency, 0.95),
                    "p99": percentile(snap.latency, 0.99),
                },
            },
            "users": {
                "activeCount": snap.active_users,
                "deletedDetected": c[Count.DELETED_DETECTED],
                "bannedDetected": c[Count.BANNED_DETECTED],
            },
            "costs": costs(total, c[Count.DATABASE_QUERIES], per_hour_base),
            "performance": {
                "cacheEffectiveness": effectiveness(hit_rate),
                "recommendedCacheTTL": ttl_advice(hit_rate),
                "avgValidationTime": time_rating(avg_ms),
            },
            "scope": snap.scope,
            # Added key: sessions moved from the Node tier's NextAuth cookie (docs/migration.md).
            "migratedSessions": c[Count.MIGRATED_SESSIONS],
        },
        "validationCache": {
            "size": cache_size,
            "maxSize": max_size,
            "ttlMs": ttl_seconds * 1000,
            "backend": backend,
        },
    }
    if snap.instances:
        body["instances"] = snap.instances
    if extra:
        body.update(extra)
    return body
