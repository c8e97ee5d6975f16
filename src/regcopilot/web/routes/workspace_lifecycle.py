"""GET /api/workspaces/{id} (its details, deleted or not), DELETE /api/workspaces/{id} (soft,
owners only) and PATCH /api/workspaces/{id} {"action": "restore"} (within 30 days): the
upstream's routes, answers and rules."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from regcopilot.auth.identity import SessionUser
from regcopilot.web.deps import current_user, errors, services
from regcopilot.web.middleware import HEADER, AuthState
from regcopilot.web.routes.invitations import json_object, refusable
from regcopilot.web.routes.workspaces import _token, store
from regcopilot.web.session import set_cookie_header
from regcopilot.workspaces.lifecycle import Lifecycle

router = APIRouter(prefix="/api/workspaces", responses=errors(400, 401, 403, 404, 409, 503))

RESTORE_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["action"],
        "properties": {"action": {"type": "string", "enum": ["restore"]}},
    }}},
}


@router.get("/{tenant_id}")
async def workspace_details(tenant_id: str, request: Request,
                            user: SessionUser = Depends(current_user)) -> dict:
    """The workspace, deleted or not, with canRestore and the restore deadline (the
    upstream's answer), for anyone who is or was a member."""
    return await refusable(Lifecycle(store(request)).details(tenant_id, user.id))


@router.delete("/{tenant_id}")
async def delete_workspace(tenant_id: str, request: Request,
                           user: SessionUser = Depends(current_user)) -> Response:
    """Every member's sessions leave it (the tenants' trigger tells every instance). The
    caller's own session, when it was in it, is moved in this very answer."""
    answer = await refusable(Lifecycle(store(request)).delete(tenant_id, user.id))
    response = JSONResponse(answer)
    if user.tenant_id == tenant_id:
        svc = services(request)
        entry = await svc.validator.validate(user.id)
        if entry.is_valid and entry.tenant_id and entry.tenant_id != tenant_id:
            claims = svc.tokens.decode(_token(request))
            token = svc.tokens.move(claims, entry.tenant_id)
            AuthState.of(request.scope).cookie_issued_by_route()  # this response carries it
            response.headers.append(HEADER.decode(), entry.tenant_id)
            response.headers.append("set-cookie", set_cookie_header(
                svc.settings, token, max(0, claims.exp - int(time.time()))))
    return response


@router.patch("/{tenant_id}", openapi_extra={"requestBody": RESTORE_BODY})
async def restore_workspace(tenant_id: str, request: Request,
                            user: SessionUser = Depends(current_user)) -> dict:
    body = await json_object(request)
    if body.get("action") != "restore":
        raise HTTPException(400, 'invalid action: only "restore" is supported')
    return await refusable(Lifecycle(store(request)).restore(tenant_id, user.id))
