"""NextAuth v4's CSRF token: a double-submit cookie, made and checked as next-auth 4.24's
`core/lib/csrf-token.js` does, so `getCsrfToken()` and the forms of `signIn`, `signOut` and
`update` work unchanged (and a cookie the Node tier set is good here, with the same secret).

Cookie `next-auth.csrf-token` (`__Host-next-auth.csrf-token` over https), HttpOnly, SameSite=Lax,
Path=/, for the browser session; value `<token>|<sha256 hex of token + NEXTAUTH_SECRET>`, the
token 32 random bytes in hex. A POST is verified when the cookie's hash is right and the form's
`csrfToken` equals the cookie's token: a page on another site can neither read the cookie nor
the token `/api/auth/csrf` answers (no CORS here), so it cannot send a matching pair. This sits
on top of web/csrf.py's Origin check, which refuses a cross-site POST before it gets here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.types import Scope

from regcopilot.config import Settings
from regcopilot.web.middleware import read_cookie

BASE_NAME = "next-auth.csrf-token"
HOST_PREFIX = "__Host-"  # NextAuth's choice over https: no Domain, Path=/, Secure


class CsrfTokens:
    def __init__(self, settings: Settings) -> None:
        assert settings.NEXTAUTH_SECRET is not None
        self._secret = settings.NEXTAUTH_SECRET
        self.secure = settings.secure_cookies
        self.name = (HOST_PREFIX if self.secure else "") + BASE_NAME

    def _hash(self, token: str) -> str:
        return hashlib.sha256(f"{token}{self._secret}".encode()).hexdigest()

    def current(self, scope: Scope) -> str | None:
        """The token of this browser's cookie, when the cookie is one of ours."""
        value = read_cookie(scope, self.name)
        if not value or "|" not in value:
            return None
        token, _, digest = value.partition("|")
        return token if hmac.compare_digest(digest, self._hash(token)) else None

    def verified(self, scope: Scope, given: object) -> bool:
        """The form's `csrfToken` matches this browser's cookie."""
        token = self.current(scope)
        return token is not None and isinstance(given, str) and hmac.compare_digest(token, given)

    def token_for(self, scope: Scope) -> tuple[str, str | None]:
        """This browser's token, and the Set-Cookie header when it needs a new one."""
        token = self.current(scope)
        if token is not None:
            return token, None
        token = secrets.token_hex(32)
        parts = [f"{self.name}={token}|{self._hash(token)}", "Path=/", "HttpOnly",
                 "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        return token, "; ".join(parts)
