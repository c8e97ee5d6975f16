"""The most requested GETs (`/api/health`, `/api/me`) answered as plain ASGI, in front of
FastAPI's router.

Why: measured in-process on this machine kind, FastAPI's own per-request work — matching among
the included routers, solving dependencies, serialising the return value — was ~60 µs of the
~70 µs /api/me cost, against ~10 µs for the whole session check; a bare one-route FastAPI app
pays most of it too. These routes stay declared in their routers (OpenAPI, and the fallback when
the hot table cannot answer); their bodies come from the same functions, so both answer alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from regcopilot.web.no_store import NO_STORE

# Scope → the JSON body, or None to let the router answer (e.g. no signed-in user).
Body = Callable[[Scope], dict[str, Any] | None]


def render_json(body: Any) -> bytes:
    """Byte for byte what Starlette's JSONResponse sends."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


class HotRoutes:
    """Sits after the session middleware, so a route here is authenticated like any other."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, Body]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            route = self.routes.get(scope["path"])
            body = route(scope) if route is not None else None
            if body is not None:
                payload = render_json(body)
                await send({
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(len(payload)).encode()),
                        (b"content-type", b"application/json"),
                        NO_STORE,  # read with the session (web/no_store.py)
                    ],
                })
                await send({"type": "http.response.body", "body": payload})
                return
        await self.app(scope, receive, send)
