"""Request helpers shared by the routes."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel

from regcopilot.auth.identity import SessionUser
from regcopilot.web.auth_state import is_monitor, signed_in
from regcopilot.web.services import Services


def services(request: Request) -> Services:
    return request.app.state.services


def current_user(request: Request) -> SessionUser:
    user = signed_in(request.scope)
    if user is None:
        raise HTTPException(401, "not signed in")
    return user


def admin_user(request: Request) -> SessionUser:
    user = current_user(request)
    if not user.is_admin:
        raise HTTPException(403, "admin role required")
    return user


def monitor_or_admin(request: Request) -> None:
    """A monitor's bearer token (checked by the middleware) or a signed-in admin."""
    if is_monitor(request.scope):
        return
    user = signed_in(request.scope)
    if user is None or not user.is_admin:
        raise HTTPException(401, "admin session or Authorization: Bearer token required")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def storable_text(value: str) -> str:
    """A pydantic field check: NUL and lone surrogates cannot be stored in PostgreSQL text (nor
    encoded as UTF-8), so they are a 422 here rather than a database error later."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


class ErrorBody(BaseModel):
    """Every refusal's JSON: `error` from this app's own answers, `detail` from FastAPI's."""

    error: str | None = None
    status: int | None = None
    detail: Any = None


def errors(*codes: int, html: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the refusals a router can answer (schemathesis holds the app
    to them); html: the same codes may come back as the sign-in page for form posts."""
    extra: dict[str, Any] = {"content": {"text/html": {}}} if html else {}
    return {code: {"model": ErrorBody, **extra} for code in codes}
