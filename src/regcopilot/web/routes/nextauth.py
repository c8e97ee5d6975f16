"""NextAuth v4's REST surface under /api/auth, so pages written against `next-auth/react`
(`getProviders`, `getCsrfToken`, `signIn('credentials')`, `useSession`, `getSession`,
`signOut`) work unchanged against this tier (docs/migration.md, "Your React pages").

Paths, methods, form fields, status codes and cookies are next-auth 4.24's (`core/index.js`,
`core/routes/*`, `next/index.js`). A POST whose form says `json=true` (or that carries
`X-Auth-Return-Redirect: 1`, as Auth.js v5 sends) gets `{"url": …}`; any other a 302 to that
URL when it succeeds, and the error page (with the refusal's status) when it does not. Where
our rules are stricter they stay, mapped onto NextAuth's error codes:
a missing or wrong CSRF token is refused with 403 `MissingCSRF` (NextAuth answers 200 and a
redirect), a lockout keeps its 429 (`RateLimited`), an unavailable directory its 503
(`ServiceUnavailable`), both with their Retry-After.

Sign-in is the one sign-in use case `/api/auth/login` runs: the same rate limits, timing
equalisation, session record and metrics; only the answer's shape differs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import Scope

from regcopilot.auth.identity import SessionUser
from regcopilot.auth.renewal import SessionRenewal
from regcopilot.auth.sign_in import BAD_CREDENTIALS
from regcopilot.auth.tokens import Claims, InvalidToken
from regcopilot.names import Door
from regcopilot.users.directory import DirectoryUnavailable
from regcopilot.web.access import Access, access
from regcopilot.web.deps import asgi_scope, errors, services, services_in
from regcopilot.web.front_door import EncodedJSON, FastJSONResponse, fast
from regcopilot.web.middleware import AuthState, read_cookie, signed_in
from regcopilot.web.next_path import absolute, callback_path, destination
from regcopilot.web.nextauth_csrf import CsrfTokens
from regcopilot.web.pages import render
from regcopilot.web.refusals import directory_down
from regcopilot.web.routes.auth import (
    LoginFailed,
    end_session,
    read_login,
    sign_in_at_door,
)
from regcopilot.web.routes.pages import user_json
from regcopilot.web.session import clear_cookie_header, cookie_name, set_cookie_header

log = logging.getLogger("regcopilot.auth")

router = APIRouter(tags=["NextAuth"],
                   responses=errors(400, 401, 403, 413, 415, 429, 503, html=True))

BASE = "/api/auth"
PROVIDER = "credentials"
PROVIDER_NAME = "Credentials"  # next-auth's default name for a credentials provider
NO_STORE = {"Cache-Control": "private, no-cache, no-store", "Pragma": "no-cache", "Expires": "0"}

# Our refusals as NextAuth error codes (`signIn(…, {redirect: false})` returns it as `error`).
CREDENTIALS_SIGNIN = "CredentialsSignin"
ERROR_CODES = {401: CREDENTIALS_SIGNIN, 403: "AccessDenied", 429: "RateLimited",
               503: "ServiceUnavailable"}
MISSING_CSRF = "MissingCSRF"  # Auth.js v5's name for it; NextAuth 4 has none
# The codes NextAuth's error page sends back to its sign-in page, message and all.
SIGN_IN_ERRORS = frozenset({"Signin", "Callback", "CredentialsSignin", "SessionRequired"})
MESSAGES = {
    CREDENTIALS_SIGNIN: BAD_CREDENTIALS,
    "SessionRequired": "Please sign in to see this page.",
    "AccessDenied": "This account may not sign in.",
    "RateLimited": "Too many failed sign-in attempts, try again later.",
    "ServiceUnavailable": "Signing in is unavailable for a moment, try again shortly.",
    MISSING_CSRF: "The form had expired. Please try again.",
}
ERROR_STATUS = {"AccessDenied": 403, MISSING_CSRF: 403, "RateLimited": 429,
                "ServiceUnavailable": 503}
DEFAULT_MESSAGE = "Unable to sign in."


def _form(*fields: str) -> dict[str, Any]:
    """OpenAPI: the form next-auth/react posts (a JSON object with the same fields is read
    alike)."""
    schema = {"type": "object", "properties": {f: {"type": "string"} for f in fields}}
    return {"requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": schema},
        "application/json": {"schema": schema}}}}


REDIRECT = {200: {"description": "`json=true`: `{\"url\": …}` (the same `url` with the "
                                 "refusals' statuses)"},
            302: {"description": "Without `json=true`: to that url"}}


def _base_url(request: Request) -> str:
    return services(request).settings.NEXTAUTH_URL


def _csrf(request: Request) -> CsrfTokens:
    return CsrfTokens(services(request).settings)


def _token_ok(request: Request, fields: dict[str, Any]) -> bool:
    """The form's `csrfToken` matches this browser's cookie; a refusal is counted with the
    cross-site ones (`security.csrfRefused`)."""
    if _csrf(request).verified(request.scope, fields.get("csrfToken")):
        return True
    services(request).security.csrf_refused("NextAuth CSRF token missing or wrong",
                                            request.scope)
    return False


def _wants_json(request: Request, fields: dict[str, Any]) -> bool:
    return (str(fields.get("json", "")).lower() == "true"
            or request.headers.get("x-auth-return-redirect") == "1")


def _answer(request: Request, fields: dict[str, Any], path: str) -> Response:
    """NextAuth's redirect answer: `{"url": …}` for its client, else a 302 there."""
    url = absolute(_base_url(request), path)
    if _wants_json(request, fields):
        return JSONResponse({"url": url})
    return RedirectResponse(url, status_code=302)


def _refuse(request: Request, fields: dict[str, Any], code: str, status: int,
            headers: dict[str, str] | None = None, path: str | None = None) -> Response:
    """A refusal keeps its status: `{"url": <NextAuth's error page for code>}` for its
    client; for a plain form post, that page itself (NextAuth would send a 302 there, but a
    refusal that answers 302 reads as a success to anything but a browser)."""
    if _wants_json(request, fields):
        url = absolute(_base_url(request), path or _error_path(code))
        return JSONResponse({"url": url}, status_code=status, headers=headers)
    return render(request, "nextauth_error.html",
                  {"message": MESSAGES.get(code, DEFAULT_MESSAGE)}, status_code=status,
                  headers=headers)


def _error_path(code: str) -> str:
    query = {"error": code, **({"provider": PROVIDER} if code == CREDENTIALS_SIGNIN else {})}
    return f"{BASE}/error?{urlencode(query)}"


async def _fields(request: Request) -> dict[str, Any]:
    """The form (or JSON object) of a POST; {} when it is not one (then no CSRF token)."""
    try:
        fields, _ = await read_login(request)
    except LoginFailed:
        return {}
    return fields


@router.get(f"{BASE}/providers")
@access(Access.PUBLIC)
async def providers(request: Request) -> dict[str, Any]:
    base = absolute(_base_url(request), BASE)
    return {PROVIDER: {"id": PROVIDER, "name": PROVIDER_NAME, "type": PROVIDER,
                       "signinUrl": f"{base}/signin/{PROVIDER}",
                       "callbackUrl": f"{base}/callback/{PROVIDER}"}}


@router.get(f"{BASE}/csrf")
@access(Access.PUBLIC)
async def csrf(request: Request) -> Response:
    token, cookie = _csrf(request).token_for(request.scope)
    response = JSONResponse({"csrfToken": token}, headers=NO_STORE)
    if cookie is not None:
        response.headers.append("set-cookie", cookie)
    return response


@router.post(f"{BASE}/callback/{PROVIDER}", responses=REDIRECT,
             openapi_extra=_form("email", "password", "csrfToken", "callbackUrl", "json"))
@access(Access.PUBLIC)
async def callback_credentials(request: Request) -> Response:
    """`signIn('credentials', {email, password, redirect, callbackUrl})` posts here."""
    try:
        fields, _ = await read_login(request)
    except LoginFailed as failure:
        return _refuse(request, {}, CREDENTIALS_SIGNIN, failure.status)
    if not _token_ok(request, fields):
        return _refuse(request, fields, MISSING_CSRF, 403)
    target = callback_path(fields.get("callbackUrl"), _base_url(request))
    try:
        signed = await sign_in_at_door(request, fields, Door.NEXTAUTH)  # the one sign-in use case
    except LoginFailed as failure:
        code = ERROR_CODES.get(failure.status, CREDENTIALS_SIGNIN)
        return _refuse(request, fields, code, failure.status, failure.headers)
    response = _answer(request, fields, target)
    response.headers.append(
        "set-cookie", set_cookie_header(services(request).settings, signed.token, signed.max_age)
    )
    return response


@router.post(f"{BASE}/signin/{PROVIDER}", responses=REDIRECT,
             openapi_extra=_form("csrfToken", "callbackUrl", "json"))
@access(Access.PUBLIC)
async def signin_credentials(request: Request) -> Response:
    """As NextAuth answers it for a credentials provider: back to the sign-in page (the
    credentials go to the callback); without the token, NextAuth's `?csrf=true` url with 403.
    Changes nothing either way."""
    fields = await _fields(request)
    if not _token_ok(request, fields):
        return _refuse(request, fields, MISSING_CSRF, 403, path=f"{BASE}/signin?csrf=true")
    return _answer(request, fields, f"{BASE}/signin")


@router.post(f"{BASE}/signout", responses=REDIRECT,
             openapi_extra=_form("csrfToken", "callbackUrl", "json"))
@access(Access.PUBLIC)
async def signout(request: Request) -> Response:
    """`signOut()`: exactly /api/auth/logout's sign-out, behind NextAuth's CSRF token."""
    fields = await _fields(request)
    if not _token_ok(request, fields):
        return _refuse(request, fields, MISSING_CSRF, 403)
    response = _answer(request, fields, callback_path(fields.get("callbackUrl"),
                                                      _base_url(request)))
    for header in await end_session(request):
        response.headers.append(*header)
    return response


@router.post(f"{BASE}/_log")
@access(Access.PUBLIC)
async def client_log(_request: Request) -> dict[str, Any]:
    """next-auth/react's logger posts client-side errors here; not recorded (what a browser
    says about itself is not evidence, and would be a free way to fill the logs)."""
    return {}


@router.get(f"{BASE}/signin", response_class=HTMLResponse)
@access(Access.PUBLIC)
async def signin_page(request: Request) -> Response:
    """Where NextAuth sends a browser to sign in: our sign-in form, coming back to
    `callbackUrl`, with the message for `error` (or for `csrf=true`)."""
    query = request.query_params
    code = query.get("error") or (MISSING_CSRF if query.get("csrf") else None)
    context = {"next": destination(query, _base_url(request)),
               "error": MESSAGES.get(code, DEFAULT_MESSAGE) if code else None}
    return render(request, "login.html", context)


@router.get(f"{BASE}/signout", response_class=HTMLResponse)
@access(Access.PUBLIC)
async def signout_page(request: Request) -> Response:
    token, cookie = _csrf(request).token_for(request.scope)
    context = {"csrf_token": token,
               "callback": callback_path(request.query_params.get("callbackUrl"),
                                         _base_url(request))}
    response = render(request, "nextauth_signout.html", context)
    if cookie is not None:
        response.headers.append("set-cookie", cookie)
    return response


@router.get(f"{BASE}/error", response_class=HTMLResponse,
            responses={302: {"description": "A sign-in error: to the sign-in page"}})
@access(Access.PUBLIC)
async def error_page(request: Request) -> Response:
    code = request.query_params.get("error") or ""
    if code in SIGN_IN_ERRORS:  # as NextAuth does: the sign-in page says it
        return RedirectResponse(f"{BASE}/signin?{urlencode({'error': code})}", status_code=302)
    return render(request, "nextauth_error.html",
                  {"message": MESSAGES.get(code, DEFAULT_MESSAGE)},
                  status_code=ERROR_STATUS.get(code, 200))


# --- the session: useSession / getSession (GET), update(data) (POST) ----------------------


@router.get(f"{BASE}/session", response_model=None)
@access(Access.OPTIONAL)
@fast
async def session(scope: Scope = Depends(asgi_scope)) -> dict[str, Any] | Response:
    """The usual read (signed in, nothing to re-issue, not yet due to slide) is answered from
    the scope alone: the front door makes no Request for it (bench.wire_cost)."""
    user = signed_in(scope)
    if (user is not None and user.renewal is None
            and not services_in(scope).renewal.due_at(user.issued_at)):
        # The body session_body keeps on the user, read here: one call less on the read
        # every page polls (bench.opcodes: 1,520 -> 1,502 bytecodes).
        return user.session_answer or session_body(user, user.exp)
    return await _session(Request(scope))


@router.post(f"{BASE}/session", openapi_extra=_form("csrfToken"), response_model=None)
@access(Access.OPTIONAL)
async def update_session(request: Request) -> dict[str, Any] | Response:
    """The client's `update(data)`: answers the session as a read does (sliding it when due).
    `data` changes nothing: what a session holds (user, role, workspace) comes from the
    directory, and a workspace switch has its own checked route (POST /api/workspaces/switch).
    Without a valid CSRF token: 400 and `{}`, as NextAuth answers."""
    fields = await _fields(request)
    if not _token_ok(request, fields):
        return JSONResponse({}, status_code=400)
    return await _session(request)


async def _session(request: Request) -> dict[str, Any] | Response:
    """The session as `useSession` reads it. Signed in with nothing to re-issue, a plain dict,
    which the front door encodes and sends with no Response object (bench.wire_cost: ~10 µs a
    read less than building a JSONResponse); an answer that sets or clears a cookie, or says
    the directory is down, is a Response."""
    scope = request.scope
    state = AuthState.of(scope)
    user = state.user
    if user is None:
        svc = services(request)
        refused = state.refusal
        if refused is not None and refused.status == 503:
            return directory_down()
        response = JSONResponse({}, headers=NO_STORE)
        if read_cookie(scope, cookie_name(svc.settings)) is not None:
            # A session that no longer validates is ended here too, as on protected routes.
            response.headers.append("set-cookie", clear_cookie_header(svc.settings))
        return response
    if state.renewal is not None or not _renewal(request).due_at(user.issued_at):
        # Not due (the usual read), or this answer already carries a new cookie (an upgrade,
        # a workspace move): nothing to slide.
        return session_body(user, user.exp)
    renewed = await _slide(request, user)
    if renewed is None:
        return session_body(user, user.exp)
    token, fresh = renewed
    svc = services(request)
    response = FastJSONResponse(session_body(user, fresh.exp), headers=NO_STORE)
    response.headers.append(
        "set-cookie", set_cookie_header(svc.settings, token, fresh.exp - fresh.iat)
    )
    return response


def session_body(user: SessionUser, exp: int) -> dict[str, Any]:
    """A superset of NextAuth's `{user: {name, email, image}, expires}` and the upstream's
    session callback (`id`, `currentTenantId`). The usual one (expiring with the user's
    token) is made once per SessionUser, kept on it: not to be changed, only copied."""
    body = user.session_answer if exp == user.exp else None
    if body is None:
        body = EncodedJSON(
            # What next-auth/react's useSession reads on top of ours; the upstream shows the
            # email when a user has no name.
            user={**user_json(user), "name": user.name or user.email, "image": None,
                  "currentTenantId": user.tenant_id},
            expires=datetime.fromtimestamp(exp, UTC).isoformat(),
        )
        if exp == user.exp:
            user.session_answer = body
    return body


def _renewal(request: Request) -> SessionRenewal:
    return services(request).renewal


async def _slide(request: Request, user: SessionUser) -> tuple[str, Claims] | None:
    """The re-issued session (auth/renewal.py), once it is due; else None."""
    svc = services(request)
    token = read_cookie(request.scope, cookie_name(svc.settings))
    if token is None:
        return None
    try:
        claims = svc.tokens.decode(token)  # a hit in the decoded-token cache
    except InvalidToken:
        return None
    if claims.jti != user.jti:
        return None
    try:
        return await svc.renewal.renew(claims)
    except DirectoryUnavailable as exc:
        log.warning("Session not slid (directory unavailable): %s", exc)
        return None
