"""Sign in, sign out, and the current session."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator

from regcopilot.auth.identity import Refusal
from regcopilot.auth.passwords import MAX_PASSWORD_BYTES
from regcopilot.auth.sign_in import SignedIn, SignInContext
from regcopilot.auth.tokens import InvalidToken
from regcopilot.names import Door
from regcopilot.web.access import Access, access
from regcopilot.web.deps import client_ip, errors, services, storable_text
from regcopilot.web.middleware import read_cookie
from regcopilot.web.next_path import destination
from regcopilot.web.no_store import CLEAR_CACHE
from regcopilot.web.pages import render
from regcopilot.web.refusals import refusal, retry_after
from regcopilot.web.routes.pages import user_json
from regcopilot.web.session import clear_cookie_header, cookie_name, set_cookie_header

router = APIRouter(responses=errors(400, 401, 403, 413, 415, 422, 429, 503, html=True))

MAX_EMAIL = 320
MAX_BODY_BYTES = 64 * 1024  # an email and a password; anything bigger is not a sign-in


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


async def read_login(request: Request) -> tuple[dict[str, Any], bool]:
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


def _fields(fields: dict[str, Any]) -> LoginBody:
    try:
        return LoginBody.model_validate(
            {"email": fields.get("email"), "password": fields.get("password")}
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = err["loc"][0] if err["loc"] else "body"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise LoginFailed(422, f"{where}: {message}") from None


async def sign_in_at_door(request: Request, fields: dict[str, Any], door: Door) -> SignedIn:
    """The door's half of a sign-in: the fields checked, the use case asked."""
    body = _fields(fields)
    context = SignInContext(client_ip(request), request.headers.get("user-agent"), door)
    answer = await services(request).sign_in(body.email, body.password, context)
    if isinstance(answer, Refusal):
        headers = retry_after(answer.retry_after) if answer.retry_after is not None else None
        raise LoginFailed(answer.status, answer.message, headers)
    return answer


def signed_in_body(signed: SignedIn) -> dict[str, Any]:
    return {"user": user_json(signed.user),
            "expires": datetime.fromtimestamp(signed.expires, UTC).isoformat()}


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
        fields, is_form = await read_login(request)
        signed = await sign_in_at_door(request, fields, Door.FORM if is_form else Door.API)
    except LoginFailed as failure:
        if is_form:
            return render(
                request, "login.html",
                _form_again(fields, failure.message, services(request).settings.NEXTAUTH_URL),
                status_code=failure.status,
            )
        return refusal(failure.status, failure.message, failure.headers)
    cookie = set_cookie_header(services(request).settings, signed.token, signed.max_age)
    if is_form:
        response: Response = RedirectResponse(
            destination(fields, services(request).settings.NEXTAUTH_URL), status_code=303
        )
    else:
        response = JSONResponse(signed_in_body(signed))
    response.headers.append("set-cookie", cookie)
    return response


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
@access(Access.PUBLIC)
async def login_form(request: Request) -> Response:
    """The sign-in form posts here, so a failure re-renders the form at /login (with the email
    kept) instead of leaving the browser on /api/auth/login."""
    return await login(request)


def _form_again(fields: dict[str, Any], error: str, base_url: str) -> dict[str, Any]:
    """The sign-in form once more: the message, the email as typed, the same destination."""
    email = fields.get("email")
    return {
        "error": error,
        "email": email[:MAX_EMAIL] if isinstance(email, str) else "",
        "next": destination(fields, base_url),
    }


@router.post(
    "/api/auth/logout", responses={303: {"description": "Signed out from the form: to /login"}}
)
@access(Access.PUBLIC)
async def logout(request: Request) -> Response:
    ctype = request.headers.get("content-type", "")
    response: Response
    if "form" in ctype:
        response = RedirectResponse("/login", status_code=303)
    else:
        response = JSONResponse({"ok": True})
    for header in await end_session(request):
        response.headers.append(*header)
    return response


async def end_session(request: Request) -> list[tuple[str, str]]:
    """Sign-out, whichever door it came through: the session revoked (durably, on every
    instance), and the headers to send: Set-Cookie clearing its cookies in either format,
    Clear-Site-Data for the browser's cache."""
    svc = services(request)
    token = read_cookie(request.scope, cookie_name(svc.settings))
    if token:
        try:
            claims = svc.tokens.decode(token)
        except InvalidToken:
            claims = None
        if claims is not None:
            await svc.sessions.logout(claims.jti, claims.sub, claims.exp)
            svc.audit.logout(claims.sub, claims.email, claims.name, client_ip(request))
    foreign = await svc.foreign.end(request.scope, read_cookie, svc.sessions)
    # Clear-Site-Data: Back shows no page that was read with the session.
    return [("set-cookie", clear_cookie_header(svc.settings)),
            *(("set-cookie", header) for header in foreign), CLEAR_CACHE]
