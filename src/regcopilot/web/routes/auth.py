"""Sign in, sign out, and the current session."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator

from regcopilot.auth.password_pool import PasswordBusy
from regcopilot.auth.passwords import MAX_PASSWORD_BYTES
from regcopilot.auth.rate_limit import RateLimited
from regcopilot.auth.tokens import InvalidToken
from regcopilot.names import Reason
from regcopilot.users.directory import DirectoryUnavailable, judge
from regcopilot.web.access import Access, access
from regcopilot.web.deps import client_ip, errors, services, storable_text
from regcopilot.web.front_door import fast
from regcopilot.web.middleware import read_cookie, refusal_of, signed_in
from regcopilot.web.migration import end_foreign_session
from regcopilot.web.next_path import safe_next
from regcopilot.web.pages import render
from regcopilot.web.refusals import DIRECTORY_DOWN, directory_down, refusal, retry_after
from regcopilot.web.session import clear_cookie_header, cookie_name, set_cookie_header
from regcopilot.workspaces.store import WorkspaceStore

router = APIRouter(responses=errors(400, 401, 403, 413, 415, 422, 429, 503, html=True))

MAX_EMAIL = 320
MAX_BODY_BYTES = 64 * 1024  # an email and a password; anything bigger is not a sign-in
BAD_CREDENTIALS = "Invalid email or password"


class LoginBody(BaseModel):
    email: str = Field(min_length=3, max_length=MAX_EMAIL)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_BYTES)

    @field_validator("email", "password")
    @classmethod
    def _storable(cls, v: str) -> str:
        return storable_text(v)


class LoginFailed(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


async def _read_login(request: Request) -> tuple[dict[str, Any], bool]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise LoginFailed(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    if ctype == "application/json":
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise LoginFailed(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw or b"null")
        except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested too deep
            raise LoginFailed(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise LoginFailed(400, "expected a JSON object with email and password")
        return body, False
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}, True
    raise LoginFailed(415, "send application/json or a form with email and password")


def _busy() -> LoginFailed:
    return LoginFailed(503, "too many sign-ins in progress, try again shortly",
                       retry_after(PasswordBusy.retry_after))


async def _login(request: Request, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    try:
        body = LoginBody.model_validate(
            {"email": fields.get("email"), "password": fields.get("password")}
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = err["loc"][0] if err["loc"] else "body"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise LoginFailed(422, f"{where}: {message}") from None
    svc = services(request)
    ip = client_ip(request)
    email = body.email.strip().lower()
    try:
        await svc.limiter.check(email, ip)
    except RateLimited as limited:
        svc.security.rate_limited(limited.what, ip)
        raise LoginFailed(
            429, "Too many failed sign-in attempts, try again later",
            retry_after(limited.retry_after),
        ) from None
    if svc.passwords.full:  # refused before asking the directory anything
        raise _busy()
    try:
        user = await svc.directory.find_by_email(email)
    except DirectoryUnavailable:
        raise LoginFailed(503, DIRECTORY_DOWN, retry_after()) from None
    verdict = judge(user, svc.settings.SUPABASE_DEMO_TENANT_ID)
    try:
        password_ok = await svc.passwords.verify(
            body.password, user.password_hash if user else None
        )
    except PasswordBusy:
        raise _busy() from None
    if user is None or not password_ok or verdict.reason in (Reason.DELETED, Reason.NOT_FOUND):
        svc.security.failed_login(email, ip)
        await svc.limiter.failed(email, ip)
        raise LoginFailed(401, BAD_CREDENTIALS)
    if verdict.reason == Reason.BANNED:
        svc.security.failed_login(email, ip)
        raise LoginFailed(403, "This account is banned")
    await svc.limiter.succeeded(email, ip)
    try:  # the first sign-in makes a personal workspace; the session starts in the current one
        workspace = await WorkspaceStore(svc.directory).ensure_personal(user)
    except DirectoryUnavailable:
        raise LoginFailed(503, DIRECTORY_DOWN, retry_after()) from None
    if workspace.tenant_id is None:
        raise LoginFailed(403, "no accessible workspace")
    cached = await svc.cache.get(user.id)
    if cached is not None and not cached.is_valid:
        # The directory just said yes (e.g. unbanned a moment ago, before the change feed
        # reached us): a stale refusal must not log the new session straight out again.
        await svc.validator.user_changed(user.id)
    token, claims = svc.tokens.issue(
        sub=user.id, email=user.email, tenant=workspace.tenant_id, role=user.role,
        name=user.full_name,
    )
    try:
        await svc.sessions.issued(
            claims.jti, user.id, claims.exp, request.headers.get("user-agent"), ip
        )
    except DirectoryUnavailable:
        # A session without its record could not be listed nor revoked by "sign out
        # everywhere": no record, no session.
        raise LoginFailed(503, DIRECTORY_DOWN, retry_after()) from None
    svc.metrics.login(user.id)
    try:
        await svc.directory.record_sign_in(user.id)
    except DirectoryUnavailable:
        pass  # the sign-in stamp is bookkeeping; the login itself succeeded
    return token, {
        "user": {
            "id": user.id,
            "email": user.email,
            "name": user.full_name,
            "tenantId": workspace.tenant_id,
            "tenantRole": workspace.role,
            "tenantName": workspace.name,
            "role": user.role,
        },
        "expires": datetime.fromtimestamp(claims.exp, UTC).isoformat(),
    }


LOGIN_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": LoginBody.model_json_schema()},
        "application/x-www-form-urlencoded": {"schema": LoginBody.model_json_schema()},
    },
}


@router.post(
    "/api/auth/login",
    openapi_extra={"requestBody": LOGIN_BODY},
    responses={303: {"description": "Signed in from the form: to `next` (a same-site path) "
                          "or the home page"}},
)
@access(Access.PUBLIC)
async def login(request: Request) -> Response:
    is_form = False
    fields: dict[str, Any] = {}
    try:
        fields, is_form = await _read_login(request)
        token, body = await _login(request, fields)
    except LoginFailed as failure:
        if is_form:
            return render(
                request, "login.html", _form_again(fields, failure.message),
                status_code=failure.status,
            )
        return refusal(failure.status, failure.message, failure.headers)
    settings = services(request).settings
    cookie = set_cookie_header(settings, token, settings.SESSION_MAX_AGE_SECONDS)
    if is_form:
        response: Response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
    else:
        response = JSONResponse(body)
    response.headers.append("set-cookie", cookie)
    return response


def _form_again(fields: dict[str, Any], error: str) -> dict[str, Any]:
    """The sign-in form once more: the message, the email as typed, the same destination."""
    email = fields.get("email")
    return {
        "error": error,
        "email": email[:MAX_EMAIL] if isinstance(email, str) else "",
        "next": safe_next(fields.get("next")),
    }


@router.post(
    "/api/auth/logout", responses={303: {"description": "Signed out from the form: to /login"}}
)
@access(Access.PUBLIC)
async def logout(request: Request) -> Response:
    svc = services(request)
    token = read_cookie(request.scope, cookie_name(svc.settings))
    if token:
        try:
            claims = svc.tokens.decode(token)
        except InvalidToken:
            claims = None
        if claims is not None:
            await svc.sessions.logout(claims.jti, claims.sub, claims.exp)
    foreign = await end_foreign_session(svc, request.scope, read_cookie)
    ctype = request.headers.get("content-type", "")
    response: Response
    if "form" in ctype:
        response = RedirectResponse("/login", status_code=303)
    else:
        response = JSONResponse({"ok": True})
    response.headers.append("set-cookie", clear_cookie_header(svc.settings))
    for header in foreign:
        response.headers.append("set-cookie", header)
    return response


@router.get("/api/auth/session")
@access(Access.OPTIONAL)
@fast
async def session(request: Request) -> Response:
    user = signed_in(request.scope)
    if user is None:
        refused = refusal_of(request.scope)
        if refused is not None and refused.status == 503:
            return directory_down()
        response = JSONResponse({})
        svc = services(request)
        if read_cookie(request.scope, cookie_name(svc.settings)) is not None:
            # A session that no longer validates is ended here too, as on protected routes.
            response.headers.append("set-cookie", clear_cookie_header(svc.settings))
        return response
    return JSONResponse(
        {
            "user": {
                "id": user.id,
                "email": user.email,
                "tenantId": user.tenant_id,
                "tenantRole": user.tenant_role,
                "tenantName": user.tenant_name,
                "role": user.role,
                # What next-auth/react's useSession reads (the upstream's session callback).
                "name": user.name,
                "currentTenantId": user.tenant_id,
            },
            "expires": datetime.fromtimestamp(user.exp, UTC).isoformat(),
        }
    )
