"""HTML pages: sign-in form and the signed-in home."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from regcopilot.auth.identity import SessionUser
from regcopilot.web.access import Access, access
from regcopilot.web.deps import current_user, errors
from regcopilot.web.front_door import fast
from regcopilot.web.next_path import safe_next
from regcopilot.web.pages import render
from regcopilot.web.routes.auth import login
from regcopilot.web.routes.workspaces import workspace_choices

router = APIRouter(responses=errors(401, 503))


@router.get("/login", response_class=HTMLResponse)
@access(Access.PUBLIC)
async def login_page(request: Request) -> Response:
    return render(request, "login.html", {"next": safe_next(request.query_params.get("next"))})


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
@access(Access.PUBLIC)
async def login_form(request: Request) -> Response:
    """The sign-in form posts here, so a failure re-renders the form at /login (with the email
    kept) instead of leaving the browser on /api/auth/login."""
    return await login(request)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, user: SessionUser = Depends(current_user)) -> Response:
    return render(request, "home.html", {"user": user,
                                         "workspaces": await workspace_choices(request, user)})


def me_body(user: SessionUser) -> dict:
    return {"id": user.id, "email": user.email, "tenantId": user.tenant_id, "role": user.role,
            "tenantRole": user.tenant_role, "tenantName": user.tenant_name}


@router.get("/api/me")
@fast
async def me(request: Request) -> dict:
    return me_body(current_user(request))


@router.get("/favicon.ico", include_in_schema=False)
@access(Access.PUBLIC)
async def favicon() -> Response:
    return Response(status_code=204)
