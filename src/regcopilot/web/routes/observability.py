"""`GET /api/observability`: the guide's authentication metrics for the cluster."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from regcopilot.metrics.report import build
from regcopilot.metrics.sessions import active_sessions, sessions_block
from regcopilot.names import Count
from regcopilot.web.access import Access, access
from regcopilot.web.deps import errors, requires, services

router = APIRouter(responses=errors(401, 503))


async def observability_report(request: Request) -> dict:
    svc = services(request)
    cache = svc.cache
    snap = await svc.metrics.snapshot()
    freshness = cache.freshness
    body = build(
        snap,
        cache_size=await cache.size(),
        max_size=cache.reported_max_size,
        ttl_seconds=cache.ttl,
        backend=cache.backend,
        extra={
            "security": svc.security.report(),
            # The Redis tier's circuit breaker: each open/close is one transition.
            "cacheBreaker": {
                "open": cache.shared is not None and cache.breaker.open,
                "state": cache.backend,
                "failures": cache.breaker.failures,
                "transitions": cache.breaker.transitions,
                "lastError": cache.breaker.last_error if cache.shared is not None else None,
            },
            "invalidation": {
                "feed": "connected" if svc.feed_connected else "disconnected",
                "events": (
                    "n/a" if svc.bus is None
                    else "connected" if svc.bus.connected else "disconnected"
                ),
                "nearCacheTrusted": cache.near_trusted,
                # How far this process has applied the directory's change log.
                "changeLogPosition": freshness.position,
                "changeLogComplete": freshness.proving,
            },
            "sessions": sessions_block(
                snap.counters, await active_sessions(svc), len(svc.revocations.local)
            ),
            "workspaces": {
                "switches": snap.counters.get(Count.WORKSPACE_SWITCHES, 0),
                "automaticSwitches": snap.counters.get(Count.WORKSPACE_AUTO_SWITCHES, 0),
                "accessLost": snap.counters.get(Count.WORKSPACE_ACCESS_LOST, 0),
            },
        },
    )
    # Which age is in force (README, "Freshness"): the max age while every change since an
    # entry was read is known to be applied, the TTL otherwise.
    body["validationCache"]["freshness"] = freshness.model.value
    body["validationCache"]["maxAgeMs"] = int(freshness.max_age * 1000)
    return body


@router.get("/api/observability", dependencies=[Depends(requires(Access.MONITOR))])
@access(Access.MONITOR)
async def observability(request: Request) -> dict:
    return await observability_report(request)
