"""The authentication metrics in the Prometheus text format.

Built from the same AuthMetrics snapshot as `/api/observability`, through a custom collector,
instead of prometheus-client's own counters in multiprocess mode:
- the request path records each event once (AuthMetrics), not twice;
- with Redis the snapshot holds the cluster's totals, so every worker of every host answers a
  scrape with the same numbers — correct whichever worker the kernel hands the connection to,
  with no PROMETHEUS_MULTIPROC_DIR to create, share and wipe at each restart (multiprocess
  mode only sums the workers of one host anyway);
- without Redis the CLI refuses more than one worker, so the process's totals are the totals.
Consequence for queries: totals are cluster-wide, so aggregate instances with max(), not sum().
When Redis is configured but cannot be read, the counters are left out (a gap) rather than
replaced by this process's smaller numbers, which Prometheus would take for a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from regcopilot import __version__
from regcopilot.metrics.counters import LATENCY_BOUNDS_MS, Snapshot
from regcopilot.names import Count

NS = "regcopilot"
BACKENDS = ("redis", "in-memory", "redis-disconnected", "redis-error")

# counter name in the snapshot → (metric name without _total, help)
COUNTERS = {
    Count.LOGINS: ("logins", "Successful sign-ins."),
    Count.VALIDATIONS: ("validations", "Session validations (every protected request)."),
    Count.CACHE_HITS: ("validation_cache_hits", "Validations answered from the cache."),
    Count.CACHE_MISSES: ("validation_cache_misses", "Validations the cache could not answer."),
    Count.DATABASE_QUERIES: ("database_queries", "User directory queries made by validations."),
    Count.FAILURES: ("validation_failures", "Validations that refused the session."),
    Count.DELETED_DETECTED: ("deleted_users_detected", "Sessions of deleted users refused."),
    Count.BANNED_DETECTED: ("banned_users_detected", "Sessions of banned users refused."),
    Count.COALESCED: ("coalesced_misses", "Misses answered by another request's query."),
    Count.MIGRATED_SESSIONS: ("migrated_sessions",
                         "Sessions moved from the other cookie format (NextAuth) on first use."),
    Count.WORKSPACE_SWITCHES: ("workspace_switches", "Workspace switches asked for (API)."),
    Count.WORKSPACE_AUTO_SWITCHES: ("workspace_automatic_switches",
                              "Sessions moved to another workspace after losing theirs."),
    Count.WORKSPACE_ACCESS_LOST: ("workspace_access_lost",
                            "Current workspaces found no longer accessible."),
}


def families(
    snap: Snapshot | None,
    *,
    backend: str,
    cache_size: int,
    max_size: int | None,
    ttl_seconds: int,
    app_env: str,
    scope: str,
) -> list[Metric]:
    out: list[Metric] = []
    info = GaugeMetricFamily(f"{NS}_info", "This instance: version, APP_ENV and whose totals "
                             "the counters are (cluster: every instance, via Redis).",
                             labels=["version", "app_env", "scope"])
    info.add_metric([__version__, app_env, scope], 1)
    out.append(info)

    gauge = GaugeMetricFamily(f"{NS}_cache_backend",
                              "Validation cache backend of this process (1 = in use).",
                              labels=["backend"])
    for name in BACKENDS:
        gauge.add_metric([name], 1 if name == backend else 0)
    out.append(gauge)
    out.append(GaugeMetricFamily(f"{NS}_validation_cache_entries",
                                 "Entries in the validation cache.", value=cache_size))
    if max_size is not None:
        out.append(GaugeMetricFamily(f"{NS}_validation_cache_max_entries",
                                     "Capacity of the in-memory cache.", value=max_size))
    out.append(GaugeMetricFamily(f"{NS}_validation_cache_ttl_seconds",
                                 "How long a validation result is reused.", value=ttl_seconds))
    out.append(GaugeMetricFamily(f"{NS}_cluster_metrics_available",
                                 "1 when the totals below are the cluster's (or, without Redis, "
                                 "this process's); 0 while Redis cannot be read.",
                                 value=0 if snap is None else 1))
    if snap is None:
        return out

    for key, (name, doc) in COUNTERS.items():
        out.append(CounterMetricFamily(f"{NS}_{name}", doc, value=snap.counters.get(key, 0)))
    out.append(_latency(snap))
    out.append(GaugeMetricFamily(f"{NS}_active_users",
                                 "Distinct users validated or signed in over the last 24 h.",
                                 value=snap.active_users))
    out.append(GaugeMetricFamily(f"{NS}_start_time_seconds",
                                 "When the counters started (Unix time).",
                                 value=snap.start_ms / 1000))
    if snap.last_login_ms:
        out.append(GaugeMetricFamily(f"{NS}_last_login_time_seconds",
                                     "Most recent sign-in (Unix time).",
                                     value=snap.last_login_ms / 1000))
    if snap.instances:
        inst = GaugeMetricFamily(f"{NS}_instances", "Processes reporting to Redis, by status.",
                                 labels=["status"])
        for status in ("up", "stale"):
            inst.add_metric([status], sum(1 for i in snap.instances if i.get("status") == status))
        out.append(inst)
    return out


def _latency(snap: Snapshot) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip(LATENCY_BOUNDS_MS, snap.latency, strict=False):
        running += n
        buckets.append((_le(bound / 1000), running))
    total = sum(snap.latency)
    buckets.append(("+Inf", total))
    return HistogramMetricFamily(
        f"{NS}_validation_latency_seconds", "Time to validate a session.",
        buckets=buckets, sum_value=snap.time_sum_ms / 1000,
    )


def _le(seconds: float) -> str:
    return repr(float(f"{seconds:.7g}"))


class _Fixed:
    """A collector over families already built (collect() must not await)."""

    def __init__(self, items: Iterable[Metric]) -> None:
        self.items = list(items)

    def collect(self) -> Iterator[Metric]:
        return iter(self.items)


def render(items: Iterable[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(items))  # type: ignore[arg-type]
    return generate_latest(registry)


def exposition(snap: Snapshot | None, **kwargs: Any) -> bytes:
    return render(families(snap, **kwargs))
