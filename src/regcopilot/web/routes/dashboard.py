"""`GET /admin/observability`: the observability report drawn for people. The page fetches
`/api/observability` itself (same origin, the admin's cookie) and redraws on a timer, so it
needs no front-end build and shows the same numbers monitors read."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from regcopilot.auth.identity import SessionUser
from regcopilot.ops.grading import MIN_GRADED_VALIDATIONS
from regcopilot.ops.monitor import THRESHOLDS
from regcopilot.web.access import Access
from regcopilot.web.deps import admitted, current_user
from regcopilot.web.middleware import AuthState
from regcopilot.web.pages import render

router = APIRouter()



@router.get("/admin/observability", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(
    request: Request,
    user: SessionUser = Depends(current_user),
    refresh: int = Query(5, ge=1, le=300, description="Seconds between refreshes."),
) -> Response:
    if not admitted(Access.ADMIN, AuthState.of(request.scope)):
        return render(request, "dashboard.html", {"user": user, "forbidden": True},
                      status_code=403)
    return render(request, "dashboard.html", {
        "user": user, "forbidden": False, "refresh": refresh, "thresholds": THRESHOLDS,
        "min_sample": MIN_GRADED_VALIDATIONS,
    })
