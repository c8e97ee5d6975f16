"""Every protected request is authenticated here: the cookie read, authenticate() asked,
the answer left in the scope's AuthState or turned into the refusal.

Pure ASGI (no BaseHTTPMiddleware): the warm path is a dict lookup for the decoded token, one
for the revocation and one for the near cache — no network, no await on I/O.
"""

from __future__ import annotations

import functools
import hmac
import json
from collections.abc import Awaitable, MutableMapping
from types import CoroutineType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regcopilot.auth.authenticate import Credentials
from regcopilot.auth.identity import INVALID, NOT_SIGNED_IN, Refusal, Renewal, SessionUser
from regcopilot.config import Settings
from regcopilot.web.access import PUBLIC_PREFIXES, Access
from regcopilot.web.migration import clear_named_header
from regcopilot.web.next_path import login_location
from regcopilot.web.refusals import MONITOR_NEEDED, error_body, send_refusal
from regcopilot.web.services import Services
from regcopilot.web.session import clear_cookie_header, cookie_name, set_cookie_header

# --- the answer, in the scope ---------------------------------------------------------------
# One typed object under scope["auth"] (what Starlette's AuthenticationMiddleware keeps in
# scope["auth"] and scope["user"]): filled in by SessionMiddleware alone, read by routes through
# signed_in() and refusal_of(). Read straight from the scope: `request.state` builds a State
# object on every access, a cost the benchmark profile showed on the hottest route.
KEY = "auth"


class AuthState:
    # Defaults on the class, no __init__: made on every authenticated request, and an
    # __init__ setting six slots cost ~0.2 µs of it; an instance holds what was set only.
    user: SessionUser | None = None
    refusal: Refusal | None = None  # why there is no user (OPTIONAL routes read it)
    monitor = False  # a monitor's bearer token was accepted
    # The cookie the response must carry (a workspace moved, the other format upgraded) and
    # the other format's cookies to clear with it (set when such a cookie was presented).
    renewal: Renewal | None = None
    clear: tuple[str, ...] = ()
    route_set_cookie = False  # a route issued its own session cookie meanwhile

    @staticmethod
    def of(scope: MutableMapping[str, Any]) -> AuthState:
        """The request's state, made on first use."""
        state = scope.get(KEY)
        if state is None:
            state = scope[KEY] = AuthState()
        return state

    def refused(self, refusal: Refusal) -> None:
        self.refusal = refusal

    def cookie_issued_by_route(self) -> None:
        """The route's response carries the session cookie itself (a workspace switch): the
        middleware's renewal would overwrite it."""
        self.route_set_cookie = True


def signed_in(scope: Any) -> SessionUser | None:
    """The one way to read the signed-in user (SessionMiddleware put it there)."""
    state = scope.get(KEY)
    return state.user if state is not None else None


def refusal_of(scope: Any) -> Refusal | None:
    """Why the session middleware found no user (None: not asked, e.g. a public route)."""
    state = scope.get(KEY)
    return state.refusal if state is not None else None


# --- the cookie re-issued on the response --------------------------------------------------
# When authenticate() says so (a Renewal): the validated workspace is not the one the cookie
# names (access to it was lost, or the cookie predates a switch made elsewhere:
# X-Workspace-Changed says so), or the session came in the other cookie format (its cookies
# are cleared with it).
HEADER = b"x-workspace-changed"


def renewing(send: Send, state: AuthState, settings: Settings) -> Send:
    """Wrap `send`: the renewal's headers join the response start, unless the route issued
    its own session cookie meanwhile (the other format's cookies are cleared either way)."""

    async def wrapped(message: Message) -> None:
        renewal = state.renewal
        if message["type"] == "http.response.start" and renewal is not None:
            headers = list(message.get("headers", []))
            if not state.route_set_cookie:
                if renewal.moved_to is not None and not renewal.upgraded:
                    headers.append((HEADER, renewal.moved_to.encode("latin-1")))
                cookie = set_cookie_header(settings, renewal.token, renewal.max_age)
                headers.append((b"set-cookie", cookie.encode("latin-1")))
            headers += [(b"set-cookie", clear_named_header(settings, name).encode("latin-1"))
                        for name in state.clear]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped

MONITOR_REFUSAL = Refusal(401, MONITOR_NEEDED)


# The bytes that may precede a cookie's name in a Cookie header: its start, "; " or ";".
_BOUNDARY = (0x20, 0x3B)


def _cookie_at(value: bytes, needle: bytes, start: int = 0) -> int:
    """Where `needle` (`name=`) starts a cookie in a Cookie header at or after `start`, or -1:
    `xname=` is another cookie."""
    at = value.find(needle, start)
    while at > 0 and value[at - 1] not in _BOUNDARY:
        at = value.find(needle, at + 1)
    return at


def _value(raw: bytes) -> str | None:
    return raw.strip().strip(b'"').decode("latin-1") or None


def _needle(name: str) -> bytes:
    return (name + "=").encode("latin-1")


def read_cookie(scope: Scope, name: str) -> str | None:
    """The named cookie's (first) value, or None. Session tokens are base64url and dots, so
    finding `name=` at a cookie boundary and cutting at the next `;` is exact for them — and
    several times cheaper than http.cookies on every request."""
    needle = _needle(name)
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
    return _only_cookie(scope, _needle(name))


def _only_cookie(scope: Scope, needle: bytes) -> str | None:
    """read_session_cookie with the name already encoded (the middleware's, made once). The
    first find is written out: the usual header needs no _cookie_at call."""
    found: bytes | None = None
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        start = value.find(needle)
        if start > 0 and value[start - 1] not in _BOUNDARY:
            start = _cookie_at(value, needle, start + 1)
        if start < 0:
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
    # _value's, written out: the hottest caller saves a call.
    return None if found is None else (found.strip().strip(b'"').decode("latin-1") or None)


def bearer(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
    return None


# Module constants: an enum member read through its class costs ~0.1 µs, four times a request.
USER, PUBLIC, MONITOR, OPTIONAL = Access.USER, Access.PUBLIC, Access.MONITOR, Access.OPTIONAL


class SessionMiddleware:
    """Authenticates (auth/authenticate.py), and puts the answer in the scope's AuthState:
    the user (`signed_in`) or why there is none (`refusal_of`). Routes declare what they need
    (web/access.py); only a route that needs a user and has none is refused here."""

    def __init__(self, app: ASGIApp, services: Services, access: dict[str, Access]) -> None:
        self.app = app
        self.services = services
        self.cookie = cookie_name(services.settings)
        self._needle = _needle(self.cookie)
        self._tokens = services.tokens
        self._answer = services.authenticator.answer
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        needs = self.access.get(path, USER)
        if needs is PUBLIC or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        await self.guard(needs, scope, receive, send)

    def for_path(self, path: str) -> ASGIApp:
        """This check for one protected fast route (web/front_door.py): what the path needs
        is looked up once, here, not on each request."""
        return functools.partial(self.guard, self.access.get(path, USER))

    def guard(self, needs: Access, scope: Scope, receive: Receive,
              send: Send) -> Awaitable[None]:
        """A request to a path that needs `needs` (not PUBLIC). Returns what answers it, for
        the caller to await (an ASGI app's awaitable, as Starlette types it): on the warm path
        that is the next app's own coroutine, so the check runs no coroutine of its own, as the
        answer it asks for awaits nothing (one coroutine object and its frame less a request;
        the bytecodes stay about the same, bench.opcodes)."""
        state = scope[KEY] = AuthState()
        if needs is MONITOR and self._monitor_token_ok(scope):
            state.monitor = True
            return self.app(scope, receive, send)
        credentials = self._credentials(scope, state)
        if isinstance(credentials, Refusal):
            return self._refused(needs, state, credentials, scope, receive, send)
        answer = self._answer(credentials)
        if type(answer) is CoroutineType:  # it has I/O to wait for: rare once warm
            return self._answered(answer, needs, state, scope, receive, send)
        return self._proceed(answer, needs, state, scope, receive, send)

    async def _answered(self, pending: Awaitable[SessionUser | Refusal], needs: Access,
                        state: AuthState, scope: Scope, receive: Receive, send: Send) -> None:
        await self._proceed(await pending, needs, state, scope, receive, send)

    def _proceed(self, answer: SessionUser | Refusal, needs: Access, state: AuthState,
                 scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if isinstance(answer, Refusal):
            return self._refused(needs, state, answer, scope, receive, send)
        state.user = answer
        if answer.renewal is not None:
            # Rare (a workspace moved, a cookie in the other format): the usual request sends
            # through no wrapper at all.
            state.renewal = answer.renewal
            send = renewing(send, state, self.services.settings)
        return self.app(scope, receive, send)

    def _refused(self, needs: Access, state: AuthState, refusal: Refusal, scope: Scope,
                 receive: Receive, send: Send) -> Awaitable[None]:
        if needs is OPTIONAL:
            state.refused(refusal)
            return self.app(scope, receive, send)
        if needs is Access.MONITOR and refusal.status == 401:
            refusal = MONITOR_REFUSAL  # say what a monitor must send, not "not signed in"
        return self._refuse(scope, send, refusal)

    def passes(self, _method: str, path: str) -> bool:
        """Lets every request to `path` through unauthenticated (web/front_door.py leaves it
        out of a public fast route's chain)."""
        return self.access.get(path, USER) is PUBLIC or path.startswith(PUBLIC_PREFIXES)

    def _monitor_token_ok(self, scope: Scope) -> bool:
        expected = self.services.settings.OBSERVABILITY_TOKEN
        given = bearer(scope)
        return bool(expected and given and hmac.compare_digest(given, expected))

    def _credentials(self, scope: Scope, state: AuthState) -> Credentials | Refusal:
        """HTTP in: the session cookie (or the other format's) as Credentials, or why there
        are none. A cookie in the other format is noted in `state`, to be cleared once it is
        re-issued."""
        client = scope.get("client")
        address = client[0] if client else None
        try:
            token = _only_cookie(scope, self._needle)
            if token is not None:
                return Credentials(token, self._tokens, False, address)
            # e.g. the Node tier's cookie, also refused when duplicated
            found = self.services.foreign.find(scope, read_session_cookie)
        except DuplicateCookie:
            self.services.security.invalid_token("duplicate-cookie", address)
            return INVALID
        if found is None:
            return NOT_SIGNED_IN
        state.clear = found.names
        return found.credentials(address)

    async def _refuse(self, scope: Scope, send: Send, refused: Refusal) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if refused.retry_after is not None:
            headers.append((b"retry-after", str(refused.retry_after).encode()))
        elif read_cookie(scope, self.cookie) is not None:
            # Cleared only when the session itself is bad: a 503 keeps people signed in.
            headers.append((b"set-cookie", clear_cookie_header(self.services.settings).encode()))
        status = refused.status
        wants_page = not scope["path"].startswith("/api/") and scope["path"] != "/metrics"
        if wants_page and status == 401 and scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            headers.append((b"location", login_location(scope["path"], query).encode()))
            await send_refusal(send, 303, headers, b"", b"text/plain")
            return
        body = json.dumps(error_body(status, refused.message)).encode()
        await send_refusal(send, status, headers, body)
