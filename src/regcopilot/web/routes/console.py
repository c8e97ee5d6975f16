"""`GET /admin`: the admin console — users (search by email, paging, status, last sign-in) and,
per user, ban, unban, delete, invalidate and their sessions. Server-rendered; the buttons call
the admin JSON API (same origin, the admin's cookie), so the console can do nothing the API
cannot, and needs no front-end build."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from regcopilot.auth.identity import SessionUser
from regcopilot.users.directory import DirectoryUnavailable, User
from regcopilot.web.access import Access
from regcopilot.web.deps import admitted, current_user, services
from regcopilot.web.middleware import AuthState
from regcopilot.web.pages import render

router = APIRouter()
PAGE_SIZE = 20


def status_of(user: User, now: datetime) -> tuple[str, str]:
    """(kind, words) for the status column: active, banned until …, or deleted."""
    if user.deleted_at is not None:
        return "deleted", f"deleted {user.deleted_at:%Y-%m-%d %H:%M} UTC"
    if user.banned_until is not None and user.banned_until > now:
        if user.banned_until.year >= 9999:
            return "banned", "banned indefinitely"
        return "banned", f"banned until {user.banned_until:%Y-%m-%d %H:%M} UTC"
    return "active", "active"


@router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
async def console(
    request: Request,
    user: SessionUser = Depends(current_user),
    q: str = Query("", max_length=320, description="Part of an email."),
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    if not admitted(Access.ADMIN, AuthState.of(request.scope)):
        return render(request, "admin.html", {"user": user, "forbidden": True}, status_code=403)
    svc = services(request)
    try:
        rows, total = await svc.directory.page(q, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    except DirectoryUnavailable:
        return render(request, "admin.html", {"user": user, "forbidden": False,
                                              "unavailable": True, "q": q}, status_code=503)
    now = datetime.now(UTC)
    users = [
        {"user": u, "status": status_of(u, now), "is_me": u.id == user.id} for u in rows
    ]
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    return render(request, "admin.html", {
        "user": user, "forbidden": False, "unavailable": False, "users": users, "q": q,
        "page": page, "pages": pages, "total": total,
        "tenant": svc.settings.SUPABASE_DEMO_TENANT_ID,
    })
