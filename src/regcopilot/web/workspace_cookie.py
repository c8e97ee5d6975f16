"""When the validated workspace is not the one the session cookie names (access to it was
lost, or the cookie predates a switch made elsewhere), the response says so and carries the
session re-issued for the workspace the request was served in."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Send

from regcopilot.config import Settings
from regcopilot.web.session import set_cookie_header

HEADER = b"x-workspace-changed"


def announcing(send: Send, state: dict[str, Any], settings: Settings) -> Send:
    """Wrap `send`: add X-Workspace-Changed and the re-issued cookie to the response start,
    unless the route issued its own session cookie meanwhile (state["reissue"] cleared)."""

    async def wrapped(message: Message) -> None:
        reissue = state.get("reissue")
        if message["type"] == "http.response.start" and reissue is not None:
            tenant, token, max_age = reissue
            headers = list(message.get("headers", []))
            headers.append((HEADER, tenant.encode("latin-1")))
            headers.append((b"set-cookie", set_cookie_header(settings, token, max_age).encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
