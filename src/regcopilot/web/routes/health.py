"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from regcopilot.users.directory import DirectoryUnavailable
from regcopilot.web.access import Access, access
from regcopilot.web.deps import errors, services
from regcopilot.web.drain import DRAIN
from regcopilot.web.front_door import EncodedJSON, fast
from regcopilot.web.refusals import retry_after

router = APIRouter(responses=errors(503))


HEALTHY = EncodedJSON(status="ok")  # encoded once: the front door sends its bytes


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
    status = "draining" if DRAIN.active else "ok" if directory == "ok" else "unavailable"
    body = {
        "status": status,
        "directory": directory,
        "cache": {"backend": svc.cache.backend, "lastError": svc.cache.breaker.last_error
                  if svc.cache.shared is not None and svc.cache.breaker.open else None},
        "invalidationFeed": "connected" if svc.feed.complete else "disconnected",
    }
    # Draining (SIGTERM): a balancer or orchestrator that probes this stops sending new
    # requests here before the port closes.
    ok = status == "ok"
    return JSONResponse(body, status_code=200 if ok else 503, headers={} if ok else retry_after())
