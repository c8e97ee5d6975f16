"""Sessions in the format this tier does not issue: found, decoded, and upgraded on first use.

SESSION_COOKIE_FORMAT=regcopilot (default): the Node tier's NextAuth v4 cookie
(`next-auth.session-token`, split into `.0`, `.1`, … when large) is accepted; the first request
it validates on gets our cookie for the same session — same jti, so one sign-out ends both;
expiry no later than the original — and every NextAuth cookie it came in cleared.
SESSION_COOKIE_FORMAT=nextauth: NextAuth's cookie is the configured one (a chunked one is read
here and accepted as it is); a cookie in our own format is accepted and converted.

Cookie names follow the deployment's scheme as NextAuth's own `getToken` does: `__Secure-`
names over https, plain names over http. A browser stores a `__Secure-` cookie only from
https, so nothing the Node tier set is missed, and a plain-named cookie tossed into an https
site (a sibling subdomain, a downgraded request) is never read.

A refused foreign cookie (wrong secret, tampered, expired, banned) is not cleared: the Node tier
owns it, and a secret misconfigured on one tier must not sign people out of the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

from regcopilot.auth.authenticate import Credentials
from regcopilot.auth.cookies import BASE_NAME, NEXTAUTH_NAME, SECURE_PREFIX
from regcopilot.auth.sessions import SessionService
from regcopilot.auth.tokens import InvalidToken, TokenFormat
from regcopilot.config import Settings

Reader = Callable[[Scope, str], str | None]
# NextAuth's chunks are 3,933 bytes; the token cap (auth/nextauth.py) is reached by the 5th.
MAX_CHUNKS = 5


@dataclass(frozen=True, slots=True)
class Source:
    base: str  # cookie name without the __Secure- prefix
    codec: TokenFormat
    upgrade: bool  # convert to the configured format on first use


@dataclass(frozen=True, slots=True)
class Found:
    token: str
    codec: TokenFormat
    names: tuple[str, ...]  # the cookies it came from, cleared on upgrade
    upgrade: bool

    def credentials(self, client: str | None) -> Credentials:
        return Credentials(self.token, self.codec, self.upgrade, client)


def read_chunked(scope: Scope, name: str, read: Reader) -> tuple[str, tuple[str, ...]] | None:
    """`name`, or its chunks `name.0`, `name.1`, … joined in order (NextAuth's SessionStore)."""
    whole = read(scope, name)
    if whole is not None:
        return whole, (name,)
    parts: list[str] = []
    names: list[str] = []
    for i in range(MAX_CHUNKS + 1):
        part = read(scope, f"{name}.{i}")
        if part is None:
            break
        parts.append(part)
        names.append(f"{name}.{i}")
    if not parts:
        return None
    return "".join(parts), tuple(names)


def clear_named_header(settings: Settings, name: str) -> str:
    parts = [f"{name}=", "Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=0"]
    if settings.secure_cookies or name.startswith(SECURE_PREFIX):
        parts.append("Secure")  # browsers drop a __Secure- Set-Cookie without it
    return "; ".join(parts)


class ForeignSessions:
    def __init__(self, settings: Settings, *, ours: TokenFormat, nextauth: TokenFormat) -> None:
        self.settings = settings
        self.prefix = SECURE_PREFIX if settings.secure_cookies else ""
        if settings.SESSION_COOKIE_FORMAT == "nextauth":
            self.sources = (Source(NEXTAUTH_NAME, nextauth, False), Source(BASE_NAME, ours, True))
        else:
            self.sources = (Source(NEXTAUTH_NAME, nextauth, True),)

    def find(self, scope: Scope, read: Reader) -> Found | None:
        """The first foreign session cookie on the request (called only when the configured
        cookie is absent, so the warm path never gets here)."""
        for source in self.sources:
            found = read_chunked(scope, self.prefix + source.base, read)
            if found is not None:
                return Found(found[0], source.codec, found[1], source.upgrade)
        return None

    async def end(self, scope: Scope, read: Reader, sessions: SessionService) -> list[str]:
        """Sign-out of a session still in the other format (signing out is its first request
        here): revoke its jti — the id an upgraded copy shares — and clear its cookies."""
        found = self.find(scope, read)
        if found is None:
            return []
        try:
            claims = found.codec.decode(found.token)
        except InvalidToken:
            claims = None
        if claims is not None:
            # Durable like any logout: the record is created (already revoked) if it has none.
            await sessions.logout(claims.jti, claims.sub, claims.exp)
        return [clear_named_header(self.settings, name) for name in found.names]
