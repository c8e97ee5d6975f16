"""Invitations (the upstream's /api/invitations routes and shapes) and the page an invitee
opens: /invite/{token}. The page needs a session like every page, so a signed-out visitor is
sent to the sign-in form and back here afterwards; it shows the workspace and who invited,
and accepts on a click (a form post, no script needed)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from regcopilot.auth.identity import SessionUser
from regcopilot.users.directory import DirectoryUnavailable, User
from regcopilot.web.deps import current_user, errors, services
from regcopilot.web.pages import render
from regcopilot.web.routes.workspaces import store
from regcopilot.workspaces.invitations import Invitations, Refused

router = APIRouter(prefix="/api/invitations", responses=errors(400, 401, 403, 404, 409, 503))
pages = APIRouter()
T = TypeVar("T")
MAX_BODY = 16 * 1024


def invitations(request: Request) -> Invitations:
    return Invitations(store(request), services(request).settings.NEXTAUTH_URL)


async def refusable(work: Awaitable[T]) -> T:
    try:
        return await work
    except Refused as refused:
        raise HTTPException(refused.status, refused.message) from None


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says what is wrong (never a 500)."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HTTPException(400, "request body too large")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, RecursionError):
        raise HTTPException(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "expected a JSON object")
    return body


async def _account(request: Request, user: SessionUser) -> User:
    """The signed-in account as the directory has it now (its email decides acceptance)."""
    account = await services(request).directory.get(user.id)
    if account is None:
        raise HTTPException(401, "not signed in")
    return account


INVITE_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["email", "role"],
        "properties": {"email": {"type": "string"},
                       "role": {"type": "string", "enum": ["admin", "member", "viewer"]}},
    }}},
}


@router.post("", openapi_extra={"requestBody": INVITE_BODY})
async def invite(request: Request, user: SessionUser = Depends(current_user)) -> dict:
    """Invite an email into the caller's current workspace (its owners and admins)."""
    body = await json_object(request)
    made = invitations(request)
    found = await refusable(made.create(user.tenant_id, body.get("email"), body.get("role"),
                                   user.id))
    return {"success": True, "invitation": {
        "id": found.id, "email": found.email, "role": found.role,
        "workspaceName": found.workspace_name, "inviteUrl": made.url(found.token),
        "expiresAt": found.expires_at.isoformat()}}


@router.get("")
async def pending(request: Request, user: SessionUser = Depends(current_user)) -> dict:
    """The signed-in user's pending invitations (by their email)."""
    account = await _account(request, user)
    found = await refusable(invitations(request).pending_for(account.email))
    return {"invitations": [i.public() for i in found]}


@router.delete("/{invitation_id}")
async def cancel(invitation_id: str, request: Request,
                 user: SessionUser = Depends(current_user)) -> dict:
    await refusable(invitations(request).cancel(invitation_id, user.id))
    return {"success": True, "invitationId": invitation_id}


@router.post("/{token}/accept")
async def accept(token: str, request: Request,
                 user: SessionUser = Depends(current_user)) -> dict:
    return await refusable(invitations(request).accept(token, await _account(request, user)))


async def pending_links(request: Request, user: SessionUser) -> list[dict[str, Any]]:
    """For the home page: the user's pending invitations and the page that accepts each; a
    directory that cannot answer leaves the list empty."""
    try:
        found = await invitations(request).pending_for(user.email)
    except DirectoryUnavailable:
        return []
    return [{"invitation": i, "path": f"/invite/{i.token}"} for i in found]


@pages.get("/invite/{token}", response_class=HTMLResponse, include_in_schema=False)
async def invite_page(token: str, request: Request,
                      user: SessionUser = Depends(current_user)) -> Response:
    found = await invitations(request).by_token(token)
    problem = None
    if found is None:
        problem = "This invitation is not valid: it is unknown or was cancelled."
    elif found.email != (await _account(request, user)).email:
        problem = "This invitation was sent to a different email address."
    elif found.workspace_deleted:
        problem = "The workspace of this invitation was deleted."
    elif found.accepted_at is None and found.expired:
        problem = "This invitation has expired."
    return render(request, "invite.html", {
        "user": user, "invitation": found if problem is None else None, "token": token,
        "problem": problem}, status_code=200 if problem is None else 400)


@pages.post("/invite/{token}", response_class=HTMLResponse, include_in_schema=False)
async def invite_accept(token: str, request: Request,
                        user: SessionUser = Depends(current_user)) -> Response:
    """The page's Accept button: the same acceptance as the API, the outcome as a page."""
    try:
        result = await invitations(request).accept(token, await _account(request, user))
    except Refused as refused:
        return render(request, "invite.html", {
            "user": user, "invitation": None, "token": token,
            "problem": refused.message[:1].upper() + refused.message[1:] + "."},
            status_code=refused.status)
    found = await invitations(request).by_token(token)
    return render(request, "invite.html", {
        "user": user, "invitation": found, "token": token, "problem": None,
        "accepted": result})
