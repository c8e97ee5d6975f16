"""`GET /metrics`: the authentication metrics for Prometheus (see ops/exposition.py for why a
custom collector over the cluster totals rather than multiprocess mode)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from regcopilot.metrics.sessions import active_sessions, session_families
from regcopilot.ops.exposition import families, feed_families, render
from regcopilot.web.access import Access, access
from regcopilot.web.deps import requires, services

router = APIRouter()
# The classic text format, which every Prometheus 2.x and 3.x scrapes; the names used here are
# all legacy-valid, so the newer 1.0.0 text format would be byte for byte the same.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", dependencies=[Depends(requires(Access.MONITOR))], include_in_schema=False)
@access(Access.MONITOR)
async def metrics(request: Request) -> Response:
    svc = services(request)
    snap = await svc.metrics.snapshot()
    clustered = svc.metrics.cluster is not None
    usable = snap if not clustered or snap.scope == "cluster" else None
    body = render([*families(
        usable,
        backend=svc.cache.backend,
        cache_size=await svc.cache.size(),
        max_size=svc.cache.reported_max_size,
        ttl_seconds=svc.cache.ttl,
        app_env=svc.settings.APP_ENV,
        scope=snap.scope,
    ), *session_families(usable.counters if usable else None, await active_sessions(svc)),
        *feed_families(svc.feed, svc.bus.state if svc.bus is not None else None)])
    return Response(body, media_type=CONTENT_TYPE)  # never stored: web/no_store.py
