"""The session cookie on the wire: how it is set and cleared (its name: auth/cookies.py)."""

from __future__ import annotations

from regcopilot.auth.cookies import BASE_NAME, NEXTAUTH_NAME, SECURE_PREFIX, cookie_name
from regcopilot.config import Settings

__all__ = ["BASE_NAME", "NEXTAUTH_NAME", "SECURE_PREFIX", "clear_cookie_header", "cookie_name",
           "set_cookie_header"]


def set_cookie_header(settings: Settings, token: str, max_age: int) -> str:
    parts = [f"{cookie_name(settings)}={token}", "Path=/", "HttpOnly", "SameSite=Lax"]
    parts.append(f"Max-Age={max_age}")
    if settings.secure_cookies:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie_header(settings: Settings) -> str:
    return set_cookie_header(settings, "", 0)
