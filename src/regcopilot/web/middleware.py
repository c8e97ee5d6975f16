"""Every protected request is validated here: token → SessionValidator → revocation.

Pure ASGI (no BaseHTTPMiddleware): the warm path is a dict lookup for the decoded token, one
for the revocation and one for the near cache — no network, no await on I/O.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from dataclasses import replace
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from regcopilot.auth.tokens import InvalidToken
from regcopilot.names import Reason
from regcopilot.users.directory import DirectoryUnavailable
from regcopilot.web.access import PUBLIC_PREFIXES, Access
from regcopilot.web.migration import UPGRADE, with_upgrade
from regcopilot.web.next_path import login_location
from regcopilot.web.refusals import (
    DIRECTORY_DOWN,
    RETRY_AFTER_SECONDS,
    error_body,
    send_refusal,
)
from regcopilot.web.services import Services
from regcopilot.web.session import SessionUser, clear_cookie_header, cookie_name
from regcopilot.web.workspace_cookie import announcing

log = logging.getLogger("regcopilot.auth")

class Refusal(NamedTuple):
    """Why a request has no user: the status it would be refused with, and the message."""

    status: int
    message: str


# The session middleware's result, in the ASGI scope's state: one of these two keys is set.
USER_KEY, REFUSAL_KEY = "user", "refusal"


def signed_in(scope: Any) -> SessionUser | None:
    """The one way to read the signed-in user (SessionMiddleware put it there).

    Straight from the scope: `request.state` builds a State object on every access, a cost
    the benchmark profile showed on the hottest route."""
    return scope.get("state", {}).get(USER_KEY)


def refusal_of(scope: Any) -> Refusal | None:
    """Why the session middleware found no user (None: not asked, e.g. a public route)."""
    return scope.get("state", {}).get(REFUSAL_KEY)


_RETRY_AFTER = str(RETRY_AFTER_SECONDS).encode()
# Built once: a refusal on the request path allocates nothing new.
INVALID = Refusal(401, "invalid session")
NOT_SIGNED_IN = Refusal(401, "not signed in")
ENDED = Refusal(401, "session ended")
DOWN = Refusal(503, DIRECTORY_DOWN)
REFUSALS = {Reason.NO_WORKSPACE: "no accessible workspace"}


def _cookie_at(value: bytes, needle: bytes, start: int = 0) -> int:
    """Where `needle` (`name=`) starts a cookie in a Cookie header at or after `start`, or -1:
    `xname=` is another cookie."""
    at = value.find(needle, start)
    while at > 0 and value[at - 1 : at] not in (b" ", b";"):
        at = value.find(needle, at + 1)
    return at


def _value(raw: bytes) -> str | None:
    return raw.strip().strip(b'"').decode("latin-1") or None


def read_cookie(scope: Scope, name: str) -> str | None:
    """The named cookie's (first) value, or None. Session tokens are base64url and dots, so
    finding `name=` at a cookie boundary and cutting at the next `;` is exact for them — and
    several times cheaper than http.cookies on every request."""
    needle = (name + "=").encode("latin-1")
    for key, value in scope["headers"]:
        if key != b"cookie" or (start := _cookie_at(value, needle)) < 0:
            continue
        start += len(needle)
        end = value.find(b";", start)
        return _value(value[start:] if end < 0 else value[start:end])
    return None


class DuplicateCookie(Exception):
    """The session cookie was sent more than once."""


def read_session_cookie(scope: Scope, name: str) -> str | None:
    """As read_cookie, but a second cookie of that name — in the same header or another —
    raises DuplicateCookie: which copy a server would pick is exactly what a cookie planted by
    a sibling subdomain (cookie tossing) plays on. Costs one more find() over the rest of the
    header than read_cookie."""
    needle = (name + "=").encode("latin-1")
    found: bytes | None = None
    for key, value in scope["headers"]:
        if key != b"cookie" or (start := _cookie_at(value, needle)) < 0:
            continue
        if found is not None:
            raise DuplicateCookie
        start += len(needle)
        end = value.find(b";", start)
        if end < 0:
            found = value[start:]
        else:
            found = value[start:end]
            if _cookie_at(value, needle, end) >= 0:
                raise DuplicateCookie
    return None if found is None else _value(found)


def bearer(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
    return None


class SessionMiddleware:
    """Authenticates, and puts the result in the scope's state: the user (`signed_in`) or
    why there is none (`refusal_of`). Routes declare what they need (web/access.py); only a
    route that needs a user and has none is refused here."""

    def __init__(self, app: ASGIApp, services: Services, access: dict[str, Access]) -> None:
        self.app = app
        self.services = services
        self.cookie = cookie_name(services.settings)
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        state = scope.setdefault("state", {})
        needs = self.access.get(path, Access.USER)
        if needs is Access.PUBLIC or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if needs is Access.MONITOR and self._monitor_token_ok(scope):
            state["monitor"] = True
            await self.app(scope, receive, send)
            return
        refused = await self._authenticate(scope, state)
        if refused is None:
            # Rare (a workspace moved, a cookie in the other format): the usual request sends
            # through no wrapper at all.
            if "reissue" in state:
                send = announcing(send, state, self.services.settings)
            if UPGRADE in state:
                send = with_upgrade(send, state)
            await self.app(scope, receive, send)
            return
        if needs is Access.OPTIONAL:
            state[REFUSAL_KEY] = refused
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, send, refused)

    def _monitor_token_ok(self, scope: Scope) -> bool:
        expected = self.services.settings.OBSERVABILITY_TOKEN
        given = bearer(scope)
        return bool(expected and given and hmac.compare_digest(given, expected))

    async def _authenticate(self, scope: Scope, state: dict[str, Any]) -> Refusal | None:
        """The user into state[USER_KEY], or why not."""
        services = self.services
        try:
            token, codec, found = read_session_cookie(scope, self.cookie), services.tokens, None
            if token is None:  # e.g. the Node tier's cookie, also refused when duplicated
                found = services.foreign.find(scope, read_session_cookie)
        except DuplicateCookie:
            services.security.invalid_token("duplicate-cookie", scope)
            return INVALID
        if token is None:
            if found is None:
                return NOT_SIGNED_IN
            token, codec = found.token, found.codec
        try:
            claims = codec.decode(token)
        except InvalidToken as exc:
            services.security.invalid_token(str(exc), scope)
            return INVALID
        try:
            entry = await services.validator.validate(claims.sub)
            if (entry.is_valid and entry.tenant_id != claims.tenant
                    and entry.timestamp < claims.tenant_at):
                # The session was moved to this workspace after the cached answer was made.
                entry = await services.validator.refresh(claims.sub)
        except DirectoryUnavailable as exc:
            log.warning("User directory unavailable: %s", exc)
            return DOWN
        if not entry.is_valid:
            # Before the revocation check: a ban or delete also revokes the user's sessions,
            # and the user's state is the more telling answer (and the guide's
            # deleted/banned-detected counts come from here).
            return Refusal(
                401, REFUSALS.get(entry.reason or "") or f"account {entry.reason or 'invalid'}"
            )
        if await services.revocations.is_revoked(claims.jti):
            services.security.invalid_token("revoked", scope)
            return ENDED
        if entry.sessions_after is not None and claims.auth_at < entry.sessions_after:
            services.security.invalid_token("password-changed", scope)  # signed in before it
            return ENDED
        services.sessions.seen(claims.jti)  # a set insert; written once a minute, batched
        state[USER_KEY] = user = SessionUser(
            id=claims.sub,
            email=claims.email,
            tenant_id=entry.tenant_id or claims.tenant,
            role=entry.role,
            jti=claims.jti,
            exp=claims.exp,
            name=claims.name,
            tenant_role=entry.tenant_role,
            tenant_name=entry.tenant_name,
        )
        moved = bool(entry.tenant_id and entry.tenant_id != claims.tenant)
        if found is not None and found.upgrade:
            # Upgraded straight into the workspace the session is served in: one new cookie.
            if moved:
                claims = replace(claims, tenant=entry.tenant_id or "",
                                 tenant_at=int(time.time() * 1000))
            state[UPGRADE] = services.foreign.upgrade(found, claims, user)
        elif moved:
            assert entry.tenant_id is not None
            token = services.tokens.move(claims, entry.tenant_id)
            state["reissue"] = (entry.tenant_id, token, max(0, claims.exp - int(time.time())))
        return None

    async def _refuse(self, scope: Scope, send: Send, refused: Refusal) -> None:
        status, reason = refused
        headers: list[tuple[bytes, bytes]] = []
        if status == 503:
            headers.append((b"retry-after", _RETRY_AFTER))
        elif read_cookie(scope, self.cookie) is not None:
            # Cleared only when the session itself is bad: a 503 keeps people signed in.
            headers.append((b"set-cookie", clear_cookie_header(self.services.settings).encode()))
        wants_page = not scope["path"].startswith("/api/") and scope["path"] != "/metrics"
        if wants_page and status == 401 and scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            headers.append((b"location", login_location(scope["path"], query).encode()))
            await send_refusal(send, 303, headers, b"", b"text/plain")
            return
        body = json.dumps(error_body(status, reason)).encode()
        await send_refusal(send, status, headers, body)

