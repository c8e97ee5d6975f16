"""The session cookie: its name, how it is set and cleared, and who is signed in."""

from __future__ import annotations

from dataclasses import dataclass

from regcopilot.config import Settings

BASE_NAME = "regcopilot.session-token"


def cookie_name(settings: Settings) -> str:
    return f"__Secure-{BASE_NAME}" if settings.secure_cookies else BASE_NAME


def set_cookie_header(settings: Settings, token: str, max_age: int) -> str:
    parts = [f"{cookie_name(settings)}={token}", "Path=/", "HttpOnly", "SameSite=Lax"]
    parts.append(f"Max-Age={max_age}")
    if settings.secure_cookies:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie_header(settings: Settings) -> str:
    return set_cookie_header(settings, "", 0)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 µs more, on every request
class SessionUser:
    id: str
    email: str
    tenant_id: str
    role: str | None
    jti: str
    exp: int
    tenant_role: str | None = None  # the user's role in the current workspace
    tenant_name: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
