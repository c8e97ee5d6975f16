"""What authenticating a request or a sign-in ends in: the signed-in user, or why not.

Plain data, no HTTP: the web layer turns a `Refusal` into a status, a body and a Retry-After,
and a `Renewal` into a Set-Cookie."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A directory outage is retried by the validator's next caller anyway; 5 s keeps clients from
# hammering a pool that is reconnecting without making a short blip feel long.
RETRY_AFTER_SECONDS = 5
DIRECTORY_DOWN = "user directory unavailable, try again shortly"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why there is no user: the status it is refused with, the message, and when to retry
    (seconds, for a Retry-After) if trying again later can help."""

    status: int
    message: str
    retry_after: int | None = None


# Built once: a refusal on the request path allocates nothing new.
INVALID = Refusal(401, "invalid session")
NOT_SIGNED_IN = Refusal(401, "not signed in")
ENDED = Refusal(401, "session ended")
DOWN = Refusal(503, DIRECTORY_DOWN, RETRY_AFTER_SECONDS)


@dataclass(frozen=True, slots=True)
class Renewal:
    """The session's cookie must be replaced: the same session (same jti) as `token`, for
    `max_age` seconds. `moved_to`: the workspace it now names (access to the old one was lost,
    or a switch made elsewhere); `upgraded`: it came in the other cookie format."""

    token: str
    max_age: int
    moved_to: str | None = None
    upgraded: bool = False


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 µs more, on every request
class SessionUser:
    id: str
    email: str
    tenant_id: str
    role: str | None
    jti: str
    exp: int
    name: str | None = None
    tenant_role: str | None = None  # the user's role in the current workspace
    tenant_name: str | None = None
    # When the presented token was issued (Unix seconds): whether a sliding session is due
    # for re-issue is read from here, without reading and decoding the cookie again.
    issued_at: int = 0
    renewal: Renewal | None = None  # set when this request must re-issue the cookie
    # Its two JSON answers (/api/me's, the session read's), made once each by the routes that
    # give them: authenticate() serves the same SessionUser again while its token and cached
    # validation stand, so the next request's answer is already made. Read-only to whoever
    # takes from them. Slots, where a dict was: with 1,000 users in turn the dict's object and
    # table were two more reads from cold memory on every request.
    user_answer: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    session_answer: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
