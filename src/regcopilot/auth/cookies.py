"""The session cookie's name: which format SESSION_COOKIE_FORMAT issues, and the `__Secure-`
prefix over https. Every sign-in door and the session check agree on it through here."""

from __future__ import annotations

from regcopilot.config import Settings

BASE_NAME = "regcopilot.session-token"
NEXTAUTH_NAME = "next-auth.session-token"  # NextAuth v4's, for SESSION_COOKIE_FORMAT=nextauth
SECURE_PREFIX = "__Secure-"


def base_name(settings: Settings) -> str:
    return NEXTAUTH_NAME if settings.SESSION_COOKIE_FORMAT == "nextauth" else BASE_NAME


def cookie_name(settings: Settings) -> str:
    base = base_name(settings)
    return f"{SECURE_PREFIX}{base}" if settings.secure_cookies else base
