"""Where the sign-in form sends the browser afterwards: `/login?next=/admin/observability`.

Only a path on this site is accepted; anything else is an open redirect (a link to our login
page that lands the user on an attacker's look-alike). Browsers read `//host`, `/\\host` and
`\\\\host` as another host, and drop tabs and newlines before parsing, so those are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from regcopilot.web.csrf import origin_of

HOME = "/"
MAX_LENGTH = 2048


def safe_next(value: object) -> str:
    """`value` when it is a same-site path (with its query), otherwise the home page."""
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        return HOME
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return HOME
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value


def login_location(path: str, query: str = "") -> str:
    """`/login?next=<this page>` for a page that needs a session."""
    target = path + (f"?{query}" if query else "")
    if safe_next(target) == HOME:  # also the home page itself: nothing to come back to
        return "/login"
    return "/login?next=" + quote(target, safe="/")


def callback_path(value: object, base_url: str) -> str:
    """NextAuth's `callbackUrl`: a same-site path, or an absolute URL on this site's origin
    (`NEXTAUTH_URL`'s), as a path; anything else (another origin, a look-alike) the home page,
    as NextAuth's default redirect callback answers the base URL."""
    if isinstance(value, str) and origin_of(value) is not None:
        if origin_of(value) != origin_of(base_url):
            return HOME
        parts = urlsplit(value)
        value = (parts.path or HOME) + (f"?{parts.query}" if parts.query else "")
    return safe_next(value)


def destination(values: Mapping[str, Any], base_url: str) -> str:
    """Where to go after signing in: `next` (our forms) or `callbackUrl` (NextAuth's pages)."""
    if values.get("next"):
        return safe_next(values.get("next"))
    return callback_path(values.get("callbackUrl"), base_url)


def absolute(base_url: str, path: str) -> str:
    """A same-site path as the absolute URL NextAuth's clients expect (`new URL(url)`)."""
    return (origin_of(base_url) or "") + path
