"""Who may call a route, declared on the route (Starlette's `requires`, turned around so the
safe choice is the default): every route needs a signed-in user unless its endpoint says
otherwise with `@access(...)`. The session middleware reads the declarations once, at start,
into a dict — one lookup per request, as the hard-coded path list it replaces cost."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__regcopilot_access__"


class Access(StrEnum):
    USER = "user"  # the default: a signed-in user, or the middleware refuses
    PUBLIC = "public"  # nobody is authenticated (sign-in, health, the sign-in page)
    OPTIONAL = "optional"  # the user if the session is good, never refused (/api/auth/session)
    MONITOR = "monitor"  # a monitor's bearer token, or else a signed-in admin
    ADMIN = "admin"  # a signed-in admin (authenticated as USER; the route answers 403)


# Paths no route declares: a static mount, should one be added, is public.
PUBLIC_PREFIXES = ("/static/",)


def access(level: Access) -> Callable[[F], F]:
    """Declare an endpoint's access; put it under the router's decorator."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTR, level)
        return endpoint

    return mark


def access_map(routes: Iterable[Any]) -> dict[str, Access]:
    """Every declared path → its access (undeclared paths are Access.USER)."""
    found: dict[str, Access] = {}
    for path, route, _ in declared_routes(routes):
        level = getattr(route.endpoint, _ATTR, None)
        if level is not None:
            found[path] = level
    return found


def declared_routes(routes: Iterable[Any], prefix: str = "",
                    dependencies: tuple[Any, ...] = ()) -> Iterator[tuple[str, Any, tuple]]:
    """Every route with an endpoint: its full path, the route, and the dependencies its
    routers were included with."""
    for route in routes:
        # FastAPI (0.16x) keeps an included router whole, behind a wrapper: look inside.
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from declared_routes(
                inner.routes, prefix + getattr(context, "prefix", ""),
                (*dependencies, *getattr(context, "dependencies", ())))
        elif hasattr(route, "endpoint") and hasattr(route, "path"):
            yield prefix + route.path, route, dependencies
