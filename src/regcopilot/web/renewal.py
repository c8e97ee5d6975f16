"""The session cookie re-issued on a response, when authenticating said so (auth/identity.py's
Renewal): the validated workspace is not the one the cookie names (access to it was lost, or
the cookie predates a switch made elsewhere: X-Workspace-Changed says so), or the session came
in the other cookie format (its cookies are cleared with it)."""

from __future__ import annotations

from starlette.types import Message, Send

from regcopilot.config import Settings
from regcopilot.web.auth_state import AuthState
from regcopilot.web.migration import clear_named_header
from regcopilot.web.session import set_cookie_header

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
