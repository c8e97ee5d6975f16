"""Cross-site request forgery: a state-changing request sent by another site is refused.

The session cookie is SameSite=Lax, so browsers already leave it off cross-site POSTs; this is
the second lock, for the sign-in form (login CSRF needs no cookie at all: it signs the victim in
as the attacker) and for browsers or proxies that get SameSite wrong.

Browsers mark cross-site requests: `Sec-Fetch-Site: cross-site`, and an `Origin` on every POST
(or at least a `Referer`). A request whose marks name another site is refused with 403. One
with none of them comes from a client no third-party page can drive (curl, a monitor, the CLI)
and passes. JSON APIs are covered too: a cross-site page can only send them through CORS,
which this app never grants, and their Origin is checked all the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from regcopilot.web.refusals import error_body, send_refusal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
REFUSED = "cross-site request refused"


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site_reason(scope: Scope, trusted_origin: str | None) -> str | None:
    """Why this request looks forged by another site, or None when it does not."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "Sec-Fetch-Site: cross-site"
    claimed = headers.get("origin")
    source = "Origin"
    if claimed is None and headers.get("referer"):
        claimed, source = origin_of(headers["referer"]) or "null", "Referer"
    if claimed is None:
        return None
    claimed = claimed.strip().lower()
    if claimed == "null":
        return f"{source} is null"
    if claimed == trusted_origin:
        return None
    # Our own host, however the proxy in front spells the scheme: a victim's browser sets
    # Host to us, never to the attacker's site, so a match means the page was ours.
    host = headers.get("host", "").lower()
    if host and urlsplit(claimed).netloc == host:
        return None
    return f"{source} {claimed[:100]} is not this site"


class CsrfMiddleware:
    """Pure ASGI, before the session middleware: a forged request never reaches a route."""


    def __init__(
        self,
        app: ASGIApp,
        public_url: str,
        on_refused: Callable[[str, Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.trusted_origin = origin_of(public_url)
        self.on_refused = on_refused

    def passes(self, method: str, _path: str) -> bool:
        """Lets this request through without looking (web/front_door.py leaves it out)."""
        return method in SAFE_METHODS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = cross_site_reason(scope, self.trusted_origin)
            if reason is not None:
                if self.on_refused is not None:
                    self.on_refused(reason, scope)
                await _forbidden(send)
                return
        await self.app(scope, receive, send)


async def _forbidden(send: Send) -> None:
    await send_refusal(send, 403, [], json.dumps(error_body(403, REFUSED)).encode())
