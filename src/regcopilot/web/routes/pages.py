"""HTML pages: sign-in form and the signed-in home."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from regcopilot.web.deps import current_user, errors
from regcopilot.web.pages import render
from regcopilot.web.routes.workspaces import workspace_choices
from regcopilot.web.session import SessionUser

router = APIRouter(responses=errors(401, 503))


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    return render(request, "login.html")


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, user: SessionUser = Depends(current_user)) -> Response:
    return render(request, "home.html", {"user": user,
                                         "workspaces": await workspace_choices(request, user)})


def me_body(user: SessionUser) -> dict:
    return {"id": user.id, "email": user.email, "tenantId": user.tenant_id, "role": user.role,
            "tenantRole": user.tenant_role, "tenantName": user.tenant_name}


@router.get("/api/me")
async def me(request: Request) -> dict:
    # No Depends(): the hottest authenticated route skips dependency resolution.
    return me_body(current_user(request))


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return Response(status_code=204)
