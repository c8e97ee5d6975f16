"""A user's sessions: list, revoke one, sign out everywhere; the same for admins, per user.

Every revocation is written to the session records first (auth/sessions.py), so it survives a
restart of the app or of Redis and reaches every instance through the directory's change feed.
State-changing routes here are behind the CSRF middleware like every other POST and DELETE.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from regcopilot.auth.identity import SessionUser
from regcopilot.names import Revocation
from regcopilot.users.directory import is_uuid
from regcopilot.users.sessions import SessionRecord
from regcopilot.web.access import Access
from regcopilot.web.deps import current_user, errors, requires, services
from regcopilot.web.session import clear_cookie_header
from regcopilot.web.user_agents import browser_name

router = APIRouter(responses=errors(401, 404, 422, 503))
admin_router = APIRouter(
    prefix="/api/admin/users",
    dependencies=[Depends(requires(Access.ADMIN))],
    responses=errors(401, 403, 404, 422, 503),
)


class SessionOut(BaseModel):
    id: str
    createdAt: datetime
    lastSeenAt: datetime  # the sign-in time until the first batched write (SessionRecord)
    expiresAt: datetime
    userAgent: str | None
    browser: str | None  # "Chrome 131 on Linux", from the user agent (web/user_agents.py)
    address: str | None
    current: bool


class SessionList(BaseModel):
    sessions: list[SessionOut]


class RevokeAllBody(BaseModel):
    keepCurrent: bool = False


class Revoked(BaseModel):
    ok: bool
    revoked: int
    current: bool = False  # the caller's own session was among them: its cookie is cleared


def public(record: SessionRecord, current_id: str | None) -> SessionOut:
    return SessionOut(
        id=record.id,
        createdAt=record.created_at,
        lastSeenAt=record.seen_at,
        expiresAt=record.expires_at,
        userAgent=record.user_agent,
        browser=browser_name(record.user_agent),
        address=record.address,
        current=record.id == current_id,
    )


async def listed(request: Request, user_id: str, current_id: str | None) -> SessionList:
    records = await services(request).sessions.active(user_id)
    # In a thread: the user-agent rules load on first use (~0.3 s measured), off the loop.
    return await asyncio.to_thread(
        lambda: SessionList(sessions=[public(r, current_id) for r in records]))


def _answer(request: Request, body: Revoked) -> JSONResponse:
    response = JSONResponse(body.model_dump())
    if body.current:
        response.headers.append("set-cookie", clear_cookie_header(services(request).settings))
    return response


# --- the signed-in user's own sessions ------------------------------------------------------
@router.get("/api/auth/sessions", response_model=SessionList)
async def my_sessions(request: Request, user: SessionUser = Depends(current_user)) -> SessionList:
    return await listed(request, user.id, user.jti)


@router.delete("/api/auth/sessions/{session_id}", response_model=Revoked)
async def revoke_mine(
    session_id: str, request: Request, user: SessionUser = Depends(current_user)
) -> JSONResponse:
    done = await services(request).sessions.revoke(user.id, session_id, Revocation.USER)
    if not done:
        raise HTTPException(404, "no such active session")
    return _answer(request, Revoked(ok=True, revoked=1, current=session_id == user.jti))


@router.post("/api/auth/sessions/revoke-all", response_model=Revoked)
async def revoke_all_mine(
    request: Request, body: RevokeAllBody | None = None,
    user: SessionUser = Depends(current_user),
) -> JSONResponse:
    keep = user.jti if body is not None and body.keepCurrent else None
    n = await services(request).sessions.revoke_all(user.id, Revocation.USER, keep=keep)
    return _answer(request, Revoked(ok=True, revoked=n, current=keep is None))


# --- admins, for any user ---------------------------------------------------------------------
async def _existing(request: Request, user_id: str) -> str:
    if not is_uuid(user_id):
        raise HTTPException(404, "no such user")
    user = await services(request).directory.get(user_id)
    if user is None:
        raise HTTPException(404, "no such user")
    return user.id


@admin_router.get("/{user_id}/sessions", response_model=SessionList)
async def user_sessions(user_id: str, request: Request) -> SessionList:
    me = current_user(request)
    return await listed(request, await _existing(request, user_id), me.jti)


@admin_router.delete("/{user_id}/sessions/{session_id}", response_model=Revoked)
async def revoke_users_session(user_id: str, session_id: str, request: Request) -> JSONResponse:
    user_id = await _existing(request, user_id)
    done = await services(request).sessions.revoke(user_id, session_id, Revocation.ADMIN)
    if not done:
        raise HTTPException(404, "no such active session")
    return _answer(request, Revoked(ok=True, revoked=1,
                                    current=session_id == current_user(request).jti))


@admin_router.post("/{user_id}/sessions/revoke-all", response_model=Revoked)
async def revoke_users_sessions(user_id: str, request: Request) -> JSONResponse:
    user_id = await _existing(request, user_id)
    me = current_user(request)
    n = await services(request).sessions.revoke_all(user_id, Revocation.ADMIN)
    return _answer(request, Revoked(ok=True, revoked=n, current=user_id == me.id))
