"""`GET /metrics`: the authentication metrics for Prometheus (see ops/exposition.py for why a
custom collector over the cluster totals rather than multiprocess mode)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from regcopilot.ops.exposition import exposition
from regcopilot.web.deps import monitor_or_admin, services

router = APIRouter()


@router.get("/metrics", dependencies=[Depends(monitor_or_admin)], include_in_schema=False)
async def metrics(request: Request) -> Response:
    svc = services(request)
    snap = await svc.metrics.snapshot()
    clustered = svc.metrics.cluster is not None
    usable = snap if not clustered or snap.scope == "cluster" else None
    body = exposition(
        usable,
        backend=svc.cache.backend,
        cache_size=await svc.cache.size(),
        max_size=svc.cache.reported_max_size,
        ttl_seconds=svc.cache.ttl,
        app_env=svc.settings.APP_ENV,
        scope=snap.scope,
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
