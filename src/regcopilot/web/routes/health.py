"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from regcopilot.users.directory import DirectoryUnavailable
from regcopilot.web.access import Access, access
from regcopilot.web.deps import errors, services
from regcopilot.web.front_door import fast
from regcopilot.web.refusals import retry_after

router = APIRouter(responses=errors(503))


HEALTHY = {"status": "ok"}


@router.get("/api/health")
@access(Access.PUBLIC)
@fast
async def health() -> dict:
    return HEALTHY


@router.get("/api/ready")
@access(Access.PUBLIC)
async def ready(request: Request) -> JSONResponse:
    svc = services(request)
    directory = "ok"
    try:
        await svc.directory.ping()
    except DirectoryUnavailable as exc:
        directory = f"unavailable: {exc}"
    body = {
        "status": "ok" if directory == "ok" else "unavailable",
        "directory": directory,
        "cache": {"backend": svc.cache.backend, "lastError": svc.cache.breaker.last_error
                  if svc.cache.shared is not None and svc.cache.breaker.open else None},
        "invalidationFeed": "connected" if svc.feed_connected else "disconnected",
    }
    headers = {} if directory == "ok" else retry_after()
    return JSONResponse(body, status_code=200 if directory == "ok" else 503, headers=headers)
