"""`Cache-Control: no-store` on every answer but public static assets (OWASP ASVS V8.2.1).

One layer, outermost, so no answer escapes it: pages, JSON, the hot routes (web/hot.py), the
session middleware's and the CSRF check's refusals, and whatever route is added later. After a
sign-out, Back must not show a page or a JSON body that was read with the session; an answer
that does not depend on it (health, the sign-in page) loses nothing by not being stored.
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
    """Replaces any Cache-Control a route set: one rule, here, rather than one per route."""

    def __init__(self, app: ASGIApp, cacheable: tuple[str, ...] = PUBLIC_PREFIXES) -> None:
        self.app = app
        self.cacheable = cacheable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.cacheable):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *(h for h in message.get("headers", ()) if h[0].lower() != CACHE_CONTROL),
                    NO_STORE,
                ]
            await send(message)

        await self.app(scope, receive, sending)
