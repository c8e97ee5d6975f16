"""Workspaces API (JSON, the caller's session): list, create, switch, and members."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, field_validator

from regcopilot.auth.identity import SessionUser
from regcopilot.names import Count
from regcopilot.users.directory import DirectoryUnavailable, is_uuid
from regcopilot.web.access import Access
from regcopilot.web.deps import current_user, errors, requires, services, storable_text
from regcopilot.web.middleware import AuthState, read_cookie
from regcopilot.web.session import cookie_name, set_cookie_header
from regcopilot.workspaces.store import MAX_NAME, NotFound, WorkspaceStore

router = APIRouter(prefix="/api/workspaces", responses=errors(400, 401, 403, 404, 409, 422, 503))
pages = APIRouter()
T = TypeVar("T")


class NewWorkspace(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME)

    @field_validator("name")
    @classmethod
    def _storable(cls, v: str) -> str:
        return storable_text(v)


class SwitchBody(BaseModel):
    tenantId: str = Field(min_length=1, max_length=64)


class NewMember(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    role: str = "member"

    @field_validator("email")
    @classmethod
    def _storable(cls, v: str) -> str:
        return storable_text(v)


class MemberChange(BaseModel):
    role: str | None = None
    status: str | None = None


def store(request: Request) -> WorkspaceStore:
    svc = services(request)
    return WorkspaceStore(svc.directory, svc.validator.user_changed)


async def _run(work: Awaitable[T]) -> T:
    try:
        return await work
    except NotFound as exc:
        raise HTTPException(404, str(exc) or "not found") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


async def _managed(request: Request, user: SessionUser, tenant_id: str) -> tuple[Any, str]:
    """The workspace, when the caller may manage its members: 404 unknown, 403 not allowed."""
    ws = store(request)
    found = await _run(ws.get(tenant_id))
    if found is None:
        raise HTTPException(404, "no such workspace")
    if not await _run(ws.can_manage(user.id, tenant_id, platform_admin=user.is_admin)):
        raise HTTPException(403, "workspace owner or admin role required")
    return found


@router.get("")
async def list_workspaces(request: Request, user: SessionUser = Depends(current_user)) -> dict:
    found = await _run(store(request).list_for(user.id))
    return {"current": user.tenant_id, "workspaces": [w.public(user.tenant_id) for w in found]}


@router.post("", status_code=201)
async def create_workspace(body: NewWorkspace, request: Request,
                           user: SessionUser = Depends(current_user)) -> dict:
    created = await _run(store(request).create_team(user.id, body.name))
    return created.public(user.tenant_id)


async def _switch(request: Request, user: SessionUser, tenant_id: str) -> tuple[Any, str]:
    """Make the workspace current (403 unless an active member): the fresh validation and
    the session cookie re-issued for it."""
    svc = services(request)
    if not await _run(store(request).switch(user.id, tenant_id)):
        raise HTTPException(403, "not an active member of that workspace")
    svc.metrics.workspace(Count.WORKSPACE_SWITCHES)
    claims = svc.tokens.decode(_token(request))
    token = svc.tokens.move(claims, tenant_id)
    AuthState.of(request.scope).cookie_issued_by_route()  # this response carries it
    entry = await _run(svc.validator.validate(user.id))
    max_age = max(0, claims.exp - int(time.time()))
    return entry, set_cookie_header(svc.settings, token, max_age)


@router.post("/switch")
async def switch(body: SwitchBody, request: Request,
                 user: SessionUser = Depends(current_user)) -> Response:
    entry, cookie = await _switch(request, user, body.tenantId)
    response = JSONResponse({"current": entry.tenant_id, "tenantId": entry.tenant_id,
                             "tenantRole": entry.tenant_role, "tenantName": entry.tenant_name})
    response.headers.append("set-cookie", cookie)
    return response


@pages.post("/workspaces/switch", include_in_schema=False)
async def switch_form(request: Request, user: SessionUser = Depends(current_user)) -> Response:
    """The home page's switcher (a plain form): back to the home page in the workspace."""
    form = await request.form()
    tenant_id = form.get("tenantId")
    _entry, cookie = await _switch(request, user, tenant_id if isinstance(tenant_id, str) else "")
    response = RedirectResponse("/", status_code=303)
    response.headers.append("set-cookie", cookie)
    return response


def _token(request: Request) -> str:
    token = read_cookie(request.scope, cookie_name(services(request).settings))
    if token is None:  # the middleware let the request in, so it had one
        raise HTTPException(401, "not signed in")
    return token


@router.get("/{tenant_id}/members")
async def members(tenant_id: str, request: Request,
                  user: SessionUser = Depends(current_user)) -> dict:
    await _managed(request, user, tenant_id)
    return {"tenantId": tenant_id, "members": await _run(store(request).members(tenant_id))}


@router.post("/{tenant_id}/members", status_code=201)
async def add_member(tenant_id: str, body: NewMember, request: Request,
                     user: SessionUser = Depends(current_user)) -> dict:
    await _managed(request, user, tenant_id)
    return await _run(store(request).add_member(tenant_id, body.email, body.role, user.id))


@router.patch("/{tenant_id}/members/{user_id}")
async def change_member(tenant_id: str, user_id: str, body: MemberChange, request: Request,
                        user: SessionUser = Depends(current_user)) -> dict:
    _ws, owner = await _managed(request, user, tenant_id)
    if user_id == owner and (body.status not in (None, "active") or body.role not in
                             (None, "owner")):
        raise HTTPException(409, "the workspace's owner stays an active owner")
    changed = await _run(store(request).update_member(
        tenant_id, user_id, role=body.role, status=body.status))
    if not changed:
        raise HTTPException(404, "no such member")
    return {"ok": True, "tenantId": tenant_id, "userId": user_id}


@router.delete("/{tenant_id}/members/{user_id}")
async def remove_member(tenant_id: str, user_id: str, request: Request,
                        user: SessionUser = Depends(current_user)) -> dict:
    _ws, owner = await _managed(request, user, tenant_id)
    if user_id == owner:
        raise HTTPException(409, "the workspace's owner cannot be removed")
    if not await _run(store(request).remove_member(tenant_id, user_id)):
        raise HTTPException(404, "no such member")
    return {"ok": True, "tenantId": tenant_id, "userId": user_id}


async def workspace_choices(request: Request, user: SessionUser) -> list[Any]:
    """For the home page's switcher; a directory that cannot answer leaves it empty."""
    try:
        return await store(request).list_for(user.id)
    except DirectoryUnavailable:
        return []


@pages.get("/api/admin/users/{user_id}/workspaces", dependencies=[Depends(requires(Access.ADMIN))],
           responses=errors(400, 401, 403, 503))
async def user_workspaces(user_id: str, request: Request) -> dict:
    """For the admin console: the workspaces a user can be in now, and the current one."""
    ws = store(request)
    current = (await _run(ws.current(user_id))).tenant_id if is_uuid(user_id) else None
    found = await _run(ws.list_for(user_id))
    return {"userId": user_id, "current": current,
            "workspaces": [w.public(current) for w in found]}
