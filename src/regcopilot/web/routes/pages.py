"""HTML pages (the sign-in page, the signed-in home) and /api/me with the user's JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from regcopilot.auth.identity import SessionUser
from regcopilot.web.access import Access, access
from regcopilot.web.deps import current_user, errors, services
from regcopilot.web.front_door import EncodedJSON, fast
from regcopilot.web.next_path import destination
from regcopilot.web.pages import render
from regcopilot.web.routes.workspaces import workspace_choices

router = APIRouter(responses=errors(401, 503))


@router.get("/login", response_class=HTMLResponse)
@access(Access.PUBLIC)
async def login_page(request: Request) -> Response:
    base = services(request).settings.NEXTAUTH_URL
    return render(request, "login.html", {"next": destination(request.query_params, base)})


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, user: SessionUser = Depends(current_user)) -> Response:
    from regcopilot.web.routes.invitations import pending_links

    return render(request, "home.html", {"user": user,
                                         "workspaces": await workspace_choices(request, user),
                                         "invitations": await pending_links(request, user)})


def user_json(user: SessionUser) -> dict[str, Any]:
    """The signed-in user as every JSON answer shows it: /api/me, the sign-in's answer and
    /api/auth/session (which adds NextAuth's `currentTenantId`); one builder, so the three
    cannot drift apart. Made once per SessionUser (kept on it): not to be changed, only copied."""
    body = user.user_answer
    if body is None:
        body = user.user_answer = EncodedJSON(
            id=user.id,
            email=user.email,
            name=user.name,
            tenantId=user.tenant_id,
            tenantRole=user.tenant_role,
            tenantName=user.tenant_name,
            role=user.role,
        )
    return body


@router.get("/api/me")
@fast
async def me(user: SessionUser = Depends(current_user)) -> dict:
    return user_json(user)


@router.get("/favicon.ico", include_in_schema=False)
@access(Access.PUBLIC)
async def favicon() -> Response:
    return Response(status_code=204)
