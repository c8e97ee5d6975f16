"""The session middleware's answer, in the ASGI scope: one typed object under
`scope["auth"]` (what Starlette's AuthenticationMiddleware keeps in scope["auth"] and
scope["user"]), read and written through its methods only.

Read straight from the scope: `request.state` builds a State object on every access, a cost
the benchmark profile showed on the hottest route."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from regcopilot.auth.identity import Refusal, Renewal, SessionUser

KEY = "auth"


class AuthState:
    __slots__ = ("clear", "monitor", "refusal", "renewal", "route_set_cookie", "user")

    def __init__(self) -> None:
        self.user: SessionUser | None = None
        self.refusal: Refusal | None = None  # why there is no user (OPTIONAL routes read it)
        self.monitor = False  # a monitor's bearer token was accepted
        # The cookie the response must carry (a workspace moved, the other format upgraded)
        # and the other format's cookies to clear with it.
        self.renewal: Renewal | None = None
        self.clear: tuple[str, ...] = ()
        self.route_set_cookie = False  # a route issued its own session cookie meanwhile

    @staticmethod
    def of(scope: MutableMapping[str, Any]) -> AuthState:
        """The request's state, made on first use."""
        state = scope.get(KEY)
        if state is None:
            state = scope[KEY] = AuthState()
        return state

    def signed_in(self, user: SessionUser, clear: tuple[str, ...] = ()) -> None:
        self.user = user
        self.renewal = user.renewal
        self.clear = clear if user.renewal is not None else ()

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


def is_monitor(scope: Any) -> bool:
    state = scope.get(KEY)
    return state is not None and state.monitor
