"""Admin API: invalidate, ban, unban, delete, list and create users (admin role only)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from regcopilot.auth.password_pool import PasswordBusy
from regcopilot.auth.passwords import BCRYPT_MAX_BYTES, MAX_PASSWORD_BYTES
from regcopilot.users.admin import UnknownUser, UserAdmin
from regcopilot.users.directory import User
from regcopilot.web.access import Access
from regcopilot.web.deps import errors, requires, services, storable_text
from regcopilot.web.refusals import retry_after

router = APIRouter(
    prefix="/api/admin",
    dependencies=[Depends(requires(Access.ADMIN))],
    responses=errors(400, 401, 403, 404, 422, 503),
)


class InvalidateBody(BaseModel):
    userId: str = Field(min_length=1, max_length=64)


class BanBody(BaseModel):
    until: datetime | None = None
    durationSeconds: int | None = Field(default=None, gt=0)


class NewUser(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=8, max_length=MAX_PASSWORD_BYTES)
    admin: bool = False
    tenantId: str | None = None
    fullName: str | None = None

    @field_validator("email", "password", "tenantId", "fullName")
    @classmethod
    def _storable(cls, v: str | None) -> str | None:
        return v if v is None else storable_text(v)

    @field_validator("password")
    @classmethod
    def _bcrypt_sized(cls, v: str) -> str:
        if len(v.encode()) > BCRYPT_MAX_BYTES:
            raise ValueError(f"must be at most {BCRYPT_MAX_BYTES} bytes (bcrypt's limit)")
        return v


def _admin(request: Request) -> UserAdmin:
    svc = services(request)
    return UserAdmin(svc.directory, svc.validator.user_changed, svc.sessions.revoke_all)


def public(user: User, default_tenant: str) -> dict:
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "tenantId": user.tenant_id(default_tenant),
        "bannedUntil": user.banned_until.isoformat() if user.banned_until else None,
        "deletedAt": user.deleted_at.isoformat() if user.deleted_at else None,
        "lastSignInAt": user.last_sign_in_at.isoformat() if user.last_sign_in_at else None,
    }


async def _run(coro) -> None:  # type: ignore[no-untyped-def]
    try:
        return await coro
    except UnknownUser:
        raise HTTPException(404, "no such user") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/invalidate-user")
async def invalidate_user(body: InvalidateBody, request: Request) -> dict:
    await _run(_admin(request).invalidate(body.userId))
    return {"ok": True, "userId": body.userId}


@router.post("/users/{user_id}/ban")
async def ban(user_id: str, request: Request, body: BanBody | None = None) -> dict:
    body = body or BanBody()
    end = await _run(_admin(request).ban(user_id, body.until, body.durationSeconds))
    return {"ok": True, "userId": user_id, "bannedUntil": end.isoformat()}


@router.post("/users/{user_id}/unban")
async def unban(user_id: str, request: Request) -> dict:
    await _run(_admin(request).unban(user_id))
    return {"ok": True, "userId": user_id}


@router.delete("/users/{user_id}")
async def delete(user_id: str, request: Request, soft: bool = False) -> dict:
    await _run(_admin(request).delete(user_id, soft=soft))
    return {"ok": True, "userId": user_id, "soft": soft}


@router.get("/users")
async def list_users(request: Request, limit: int = 100) -> dict:
    svc = services(request)
    users = await _run(svc.directory.list(max(1, min(limit, 1000))))
    return {"users": [public(u, svc.settings.SUPABASE_DEMO_TENANT_ID) for u in users]}


@router.post("/users", status_code=201)
async def create_user(body: NewUser, request: Request) -> dict:
    svc = services(request)
    try:
        hashed = await svc.passwords.hash(body.password)
    except PasswordBusy:
        raise HTTPException(503, "too many password operations in progress, try again shortly",
                            retry_after(PasswordBusy.retry_after)) from None
    user = await _run(
        svc.directory.add(
            body.email, hashed, admin=body.admin,
            tenant_id=body.tenantId, full_name=body.fullName,
        )
    )
    return public(user, svc.settings.SUPABASE_DEMO_TENANT_ID)
