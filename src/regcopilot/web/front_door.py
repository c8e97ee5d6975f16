"""The most requested GETs dispatched in front of FastAPI's own layers, through the same guards.

Why: on the wire (bench/wire_cost.py: uvicorn's protocol fed request bytes, no sockets), a raw
ASGI callable costs ~118,000 instructions a request (bench/instructions.py); FastAPI's outer
layers (its `__call__` with the telemetry check, ServerErrorMiddleware's send wrapper, the
exception-telemetry and body-limit layers), its router's matching across the included routers,
dependency solving and response serialisation came on top of it before any of our code ran. A
route marked `@fast` is answered by

    FastFirst.__call__ → the guards that act on it → its own endpoint → orjson → two sends

with the guards built from the same list as the app's middleware stack (`enable_fast`), and
the endpoint FastAPI would have called, found in the declared routes: the declared routes stay
the one list of routes and the schema's source; this is only a faster dispatcher for a few of
them. Only endpoints whose sole parameter is the Request (or none) and that need no dependency
can be marked; `fast_endpoints` refuses any other.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from regcopilot.web.access import declared_routes
from regcopilot.web.no_store import CACHE_CONTROL, NO_STORE

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__regcopilot_fast__"

JSON = (b"content-type", b"application/json")


class _StartMessages(dict[int, dict[str, Any]]):
    """A fast JSON answer's start message by its body's length, made on first use and shared
    by every answer of that length (a few hundred at most: /api/me's bodies differ only by
    what each user's fields hold), where building one took a dict, a list, a tuple and ~20
    bytecodes a request. Shared, so never mutated: uvicorn copies the header list, and the
    wrappers that add a header build a new message (tests/test_front_door.py compares every
    answer, after many, with FastAPI's)."""

    def __missing__(self, length: int) -> dict[str, Any]:
        message = {"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(length).encode()), JSON, NO_STORE]}
        if length < _SHARED_UP_TO:  # bounded: a body past it is rare, and gets its own
            self[length] = message
        return message


_SHARED_UP_TO = 4096
_STARTS = _StartMessages()


def fast(endpoint: F) -> F:
    """Mark a GET endpoint to be dispatched by the front door (under the router's decorator)."""
    setattr(endpoint, _ATTR, True)
    return endpoint


# Argument makers: what a fast endpoint's one parameter is made from, (scope, receive) → value.
Maker = Callable[[Scope, Receive], Any]
# FastAPI dependencies a fast endpoint may take, each with the maker that gives the same value
# from the scope (registered beside the dependency: `fast_dependency`). An endpoint taking
# `Depends(current_user)` gets the user without a Request object being made for it (~0.4 µs).
_MAKERS: dict[Callable[..., Any], Maker] = {}


def fast_dependency(dependency: Callable[..., Any], maker: Maker) -> None:
    """Let fast endpoints take `Depends(dependency)`: the front door calls `maker(scope,
    receive)` for it, which must give what FastAPI's call of `dependency` would (or raise
    what it would)."""
    _MAKERS[dependency] = maker


class EncodedJSON(dict):  # type: ignore[type-arg]
    """A dict made once and answered many times, with its JSON encoded once too (`encoded`,
    the bytes orjson gives for it): the front door sends those bytes, where encoding again
    would read every key and value of it, scattered in memory, on each request. FastAPI's way
    serialises it as the dict it is. Not to be changed once made."""

    __slots__ = ("encoded",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A copy of exactly its length: the bytes orjson returns keep its working buffer
        # (bench/memory.py: ~4 KiB each, 8 KiB per served user with two answers).
        self.encoded = memoryview(orjson.dumps(self)).tobytes()


class FastJSONResponse(JSONResponse):
    """A JSONResponse rendered by orjson: the same bytes for this app's bodies (str, int, bool,
    None, dict, list), for the fast routes that answer a Response rather than a dict (measured
    in-process on GET /api/auth/session: json.dumps was ~4 of its ~20 µs)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class FastEndpoint:
    """One `@fast` route's declared endpoint, called as FastAPI would call it."""

    __slots__ = ("argument", "call", "handlers")

    def __init__(self, call: Callable[..., Awaitable[Any]], argument: Maker | None,
                 handlers: Mapping[Any, Callable[..., Any]]) -> None:
        self.call = call
        self.argument = argument  # makes its one parameter (the Request, or a dependency)
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            argument = self.argument
            if argument is not None:
                result = await self.call(argument(scope, receive))
            else:
                result = await self.call()
        except Exception as exc:
            # What FastAPI's ExceptionMiddleware would answer (the app's refusal handlers);
            # anything unhandled goes on to the server, which answers 500 as FastAPI's
            # ServerErrorMiddleware would.
            handler = self._handler(exc)
            if handler is None:
                raise
            result = await handler(Request(scope, receive), exc)
        # The usual answer first, by exact type: one made once (a user's, or a constant).
        if type(result) is EncodedJSON:
            body = result.encoded
        elif isinstance(result, Response):
            # Never stored, as NoStore does for every other route (a Cache-Control the
            # endpoint set is replaced, so there is never a second one).
            headers = result.raw_headers
            headers[:] = [h for h in headers if h[0] != CACHE_CONTROL]
            headers.append(NO_STORE)
            await result(scope, receive, send)
            return
        else:
            # The bytes Starlette's JSONResponse sends for str/int/bool/None/dict/list
            # (compact, UTF-8; tests/test_front_door.py compares them): orjson took ~0.4 µs
            # for /api/me's body where json.dumps took ~4.4 µs.
            body = orjson.dumps(result)
        await send(_STARTS[len(body)])
        await send({"type": "http.response.body", "body": body})

    def _handler(self, exc: Exception) -> Callable[..., Any] | None:
        for kind in type(exc).__mro__:
            if kind in self.handlers:
                return self.handlers[kind]
        return None


def fast_endpoints(routes: Iterable[Any],
                   handlers: Mapping[Any, Callable[..., Any]]) -> dict[str, FastEndpoint]:
    """path → its endpoint, for every declared GET route marked `@fast`."""
    found: dict[str, FastEndpoint] = {}
    for path, route, included_with in declared_routes(routes):
        if not getattr(route.endpoint, _ATTR, False):
            continue
        if not isinstance(route, APIRoute) or "GET" not in route.methods:
            raise TypeError(f"@fast on {path}: only a GET APIRoute can be dispatched fast")
        if included_with:
            raise TypeError(f"@fast on {path}: its router was included with dependencies")
        found[path] = FastEndpoint(route.endpoint, _argument(path, route), handlers)
    return found


def _argument(path: str, route: APIRoute) -> Maker | None:
    """What makes the endpoint's one parameter: nothing, the Request, or a dependency that
    needs nothing but the Request and has a maker (`fast_dependency`). Anything else would
    need FastAPI to solve it."""
    dependant = route.dependant
    solved = (dependant.path_params, dependant.query_params, dependant.header_params,
              dependant.cookie_params, dependant.body_params, route.dependencies)
    params = list(inspect.signature(route.endpoint).parameters.values())
    if route.status_code not in (None, 200) or route.response_model not in (None, dict):
        raise TypeError(f"@fast on {path}: its endpoint's answer needs FastAPI to serialise it")
    if any(solved) or len(params) > 1:
        raise TypeError(f"@fast on {path}: its endpoint needs FastAPI to solve parameters")
    if not params:
        return None
    if not dependant.dependencies:
        return Request  # Request(scope, receive)
    needed = dependant.dependencies[0]
    maker = _MAKERS.get(needed.call) if needed.call is not None else None
    if (maker is None or len(dependant.dependencies) > 1 or needed.dependencies
            or needed.path_params or needed.query_params or needed.header_params
            or needed.cookie_params or needed.body_params):
        raise TypeError(f"@fast on {path}: its endpoint needs FastAPI to solve parameters")
    return maker


class FastFirst(FastAPI):
    """FastAPI, with the `@fast` routes dispatched before its own layers (`enable_fast`)."""

    # Set by enable_fast; a plain dict (a MappingProxyType's get costs more, every request).
    _fronts: dict[str, ASGIApp] = {}  # noqa: RUF012 - replaced, never mutated
    _enabled = False

    def enable_fast(self, guards: Sequence[tuple[type, dict[str, Any]]]) -> None:
        """Call once every router is included. `guards` (outermost first) are added to the
        middleware stack for every other request and wrapped around each fast route here: one
        list, so the two ways cannot be guarded differently. A guard whose `passes(method,
        path)` says it lets that request through whatever it carries (the CSRF check for GET,
        the session check for a public path) is left out of that route's chain: one coroutine
        and its checks less per request, decided once by the guard itself; one that has a
        `for_path(path)` is put in the chain as what that returns."""
        for cls, options in reversed(guards):
            self.add_middleware(cls, **options)
        self._enabled = True
        if self.root_path:
            return  # FastAPI rewrites the scope's root path; leave every request to it
        fronts: dict[str, ASGIApp] = {}
        for path, endpoint in fast_endpoints(self.routes, dict(self.exception_handlers)).items():
            front: ASGIApp = endpoint
            for cls, options in reversed(guards):
                guard = cls(front, **options)
                passes = getattr(guard, "passes", None)
                if passes is None or not passes("GET", path):
                    # A guard may offer itself already fitted to the path (`for_path`): its
                    # lookups by path made here, once.
                    for_path = getattr(guard, "for_path", None)
                    front = guard if for_path is None else for_path(path)
            fronts[path] = front
        self._fronts = fronts

    def telemetry_started(self) -> None:
        """FastAPI traces and meters requests when OpenTelemetry is configured; the fast
        routes would not be, so with telemetry on, every request takes FastAPI's way."""
        native = getattr(self, "_native_telemetry", None)
        if native is not None and native.enabled():
            self._fronts = {}

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        if self._enabled:
            raise RuntimeError(
                "middleware added after enable_fast() would miss the fast routes: put it in "
                "enable_fast's list instead")
        super().add_middleware(middleware_class, *args, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            front = self._fronts.get(scope["path"])
            if front is not None:
                scope["app"] = self
                await front(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
