"""Request helpers shared by the routes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel
from starlette.types import Receive, Scope

from regcopilot.auth.identity import SessionUser
from regcopilot.web.access import Access
from regcopilot.web.front_door import fast_dependency
from regcopilot.web.middleware import AuthState, signed_in
from regcopilot.web.refusals import MONITOR_NEEDED
from regcopilot.web.services import Services


def services(request: Request) -> Services:
    # An attribute of the app (web/app.py), not of app.state: State answers through a
    # Python-level __getattr__, ~0.3 µs on routes the front door dispatches in a few µs.
    return request.app.services


def services_in(scope: Scope) -> Services:
    """services(), for a route handed the scope rather than a Request."""
    return scope["app"].services


def current_user(request: Request) -> SessionUser:
    return user_of(request.scope)


def user_of(scope: Scope, _receive: Receive | None = None) -> SessionUser:
    """current_user, from the scope alone (how the front door makes it for a fast route)."""
    user = signed_in(scope)
    if user is None:
        raise HTTPException(401, "not signed in")
    return user


fast_dependency(current_user, user_of)


def asgi_scope(request: Request) -> Scope:
    """The request's ASGI scope, for a route written against it (the front door hands it over
    without making a Request)."""
    return request.scope


def _scope_itself(scope: Scope, _receive: Receive) -> Scope:
    return scope


fast_dependency(asgi_scope, _scope_itself)


def admitted(level: Access, state: AuthState) -> bool:
    """The one rule of who may call a route declared `level`, on what the session middleware
    found: the dependency of admin routes (requires, below) and the admin pages ask it."""
    user = state.user
    if level is Access.ADMIN:
        return user is not None and user.is_admin
    if level is Access.MONITOR:
        return state.monitor or (user is not None and user.is_admin)
    if level is Access.USER:
        return user is not None
    return True


REFUSED = {
    Access.ADMIN: (403, "admin role required"),
    Access.MONITOR: (401, MONITOR_NEEDED),
    Access.USER: (401, "not signed in"),
}


@functools.cache
def requires(level: Access) -> Callable[[Request], None]:
    """A route dependency refusing whoever web/access.admitted does not let in at `level`."""

    def check(request: Request) -> None:
        state = AuthState.of(request.scope)
        if not admitted(level, state):
            status, message = REFUSED[level]
            if state.user is None and level is Access.ADMIN:
                status, message = REFUSED[Access.USER]  # signed out: asked to sign in
            raise HTTPException(status, message)

    return check


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
