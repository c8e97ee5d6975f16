"""`Cache-Control: no-store` on every answer but public static assets (OWASP ASVS V8.2.1).

After a sign-out, Back must not show a page or a JSON body that was read with the session; an
answer that does not depend on it (health, the sign-in page) loses nothing by not being stored.

One rule, NO_STORE, sent from the three places that send: this layer around FastAPI's router
(every route, including any added later), the fast routes' dispatcher (web/front_door.py's
FastEndpoint, which puts it on every answer it sends) and the plain-ASGI
refusals (web/refusals.send_refusal, for the session and CSRF checks). The layer is not put
outermost because wrapping `send` costs the hottest route: `bench.asgi_cost --requests
60000`, run three times interleaved on the shared 2-core machine, measured /api/me at
35.6–39.9 µs per request with it outermost and 29.3–33.4 µs with it around the router only
(the hot path then sends through no wrapper, as before). tests/test_no_store.py checks
every declared route, so a sender that forgets the header fails there.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regcopilot.web.access import PUBLIC_PREFIXES

CACHE_CONTROL = b"cache-control"
NO_STORE = (CACHE_CONTROL, b"no-store")
# On sign-out: the browser drops what it cached for this origin (honoured on https and
# localhost; elsewhere the no-store above already kept nothing).
CLEAR_CACHE = ("Clear-Site-Data", '"cache"')


class NoStore:
    """Around the router: replaces any Cache-Control a route set, so no route decides alone."""

    def __init__(self, app: ASGIApp, cacheable: tuple[str, ...] = PUBLIC_PREFIXES) -> None:
        self.app = app
        self.cacheable = cacheable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.cacheable):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Starlette and our plain-ASGI answers send lower-case names; a route that set
                # its own Cache-Control has it replaced, so there is never a second one.
                headers = [h for h in message.get("headers", ()) if h[0] != CACHE_CONTROL]
                headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)

    def passes(self, _method: str, _path: str) -> bool:
        """Left out of the fast routes' chains (web/front_door.py asks only for those): their
        dispatcher sends NO_STORE itself, without a `send` wrapper on the hottest path."""
        return True
