"""Session tokens: HS256 JWTs signed with NEXTAUTH_SECRET.

Decoding is cached by the exact token string: a token whose signature was checked once need
not be checked again (a PyJWT HS256 decode costs ~37 µs, a third of a request's budget).
Expiry is still enforced on every use.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace

import jwt

from regcopilot.cache.memory import MemoryStore
from regcopilot.users.directory import is_uuid

ALGORITHM = "HS256"
MAX_TOKEN_BYTES = 4096
DECODED_CACHE_SIZE = 50_000
CLOCK_LEEWAY_SECONDS = 60
MAX_JTI = 64


class InvalidToken(Exception):
    """Why a token was refused; str() is a short reason for logs and metrics."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Claims:
    """Keyword-only: eight fields of mostly `str` built positionally once dropped one
    (`tenant_at`, on the NextAuth upgrade) without any error."""

    sub: str
    email: str
    tenant: str
    role: str | None
    iat: int
    exp: int
    jti: str
    name: str | None = None  # display name (NextAuth's `name` claim), when known
    # ms since the epoch when `tenant` was set by a sign-in or a switch: a cached validation
    # older than that, naming another workspace, is re-asked rather than believed.
    tenant_at: int = 0


def now_ms() -> int:
    return int(time.time() * 1000)


class TokenFormat:
    """What every session format shares: a token verified once is not verified again
    (decrypting or checking a signature costs 37–41 µs, a third of a request's budget); it is
    kept until its own expiry, after which the next use fails verification as expired."""

    def __init__(self, max_age: int, *, leeway: int = CLOCK_LEEWAY_SECONDS,
                 cache_size: int = DECODED_CACHE_SIZE) -> None:
        self.max_age = max_age
        self.leeway = leeway
        self._decoded = MemoryStore(cache_size)

    def issue(
        self, *, sub: str, email: str, tenant: str, role: str | None, name: str | None = None
    ) -> tuple[str, Claims]:
        """A new session; `tenant_at` stamps when its workspace was set (issue 13)."""
        now = int(time.time())
        claims = Claims(sub=sub, email=email, tenant=tenant, role=role, iat=now,
                        exp=now + self.max_age, jti=self._new_jti(), name=name,
                        tenant_at=now_ms())
        return self._encode(claims), claims

    def reissue(self, claims: Claims) -> tuple[str, Claims]:
        """The same session (same jti, so one revocation ends both) in this format, expiring
        no later than the original and no later than this format's own max age."""
        now = int(time.time())
        again = replace(claims, iat=now, exp=min(claims.exp, now + self.max_age))
        return self._encode(again), again

    def move(self, claims: Claims, tenant: str) -> str:
        """The same session (subject, id, expiry) in another workspace: a sign-out still
        ends it, and it lives no longer than the original."""
        return self._encode(replace(claims, tenant=tenant, tenant_at=now_ms()))

    def _new_jti(self) -> str:
        return uuid.uuid4().hex

    def _encode(self, claims: Claims) -> str:
        raise NotImplementedError

    def _verify(self, token: str) -> Claims:
        raise NotImplementedError

    def decode(self, token: str) -> Claims:
        claims = self._decoded.get_now(token)
        if claims is None:
            claims = self._verify(token)
            self._decoded.set_now(token, claims, claims.exp - time.time())
        return claims


class SessionTokens(TokenFormat):
    def __init__(self, secret: str, max_age: int, **options: int) -> None:
        super().__init__(max_age, **options)
        self._secret = secret

    def _encode(self, claims: Claims) -> str:
        payload = {
            "sub": claims.sub,
            "email": claims.email,
            "tenant": claims.tenant,
            # the upstream's claim name for the session's workspace
            "currentTenantId": claims.tenant,
            "tenantAt": claims.tenant_at,
            "role": claims.role,
            "iat": claims.iat,
            "exp": claims.exp,
            "jti": claims.jti,
        }
        if claims.name is not None:
            payload["name"] = claims.name
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def _verify(self, token: str) -> Claims:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("oversized")
        try:
            body = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                # iat and nbf are judged below, with the clock leeway; exp strictly here (a
                # leeway on exp would only lengthen every session).
                options={
                    "require": ["sub", "iat", "exp", "jti"],
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not yet valid") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken("algorithm not allowed") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed: {type(exc).__name__}") from None
        return claims_from(body, max_age=self.max_age, leeway=self.leeway)


def claims_from(body: dict, *, max_age: int, leeway: float, cap_lifetime: bool = False) -> Claims:
    """The checks every session format shares, on a verified token's payload.

    Another host's clock may run ahead of ours by up to `leeway`: `iat`/`nbf` that far in the
    future pass, `exp` is strict (a leeway there would only lengthen every session). A lifetime
    past `max_age` (+ leeway) is refused — or, with `cap_lifetime` (NextAuth's own tokens live
    30 days by default), cut to `max_age` after `iat`, so that an upgraded cookie and a
    sign-out's revocation of the shared jti cover the whole time the token is accepted here.
    """
    sub, jti = body.get("sub"), body.get("jti")
    if not isinstance(sub, str) or not is_uuid(sub):
        raise InvalidToken("bad subject")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
        raise InvalidToken("bad jti")
    iat, exp, nbf = body.get("iat"), body.get("exp"), body.get("nbf")
    nbf = 0 if nbf is None else nbf
    if not all(type(t) is int for t in (iat, exp, nbf)):
        raise InvalidToken("bad timestamps")
    now = time.time()
    if cap_lifetime:
        exp = min(exp, iat + max_age)
    if exp <= now:
        raise InvalidToken("expired")
    if max(iat, nbf) > now + leeway:
        raise InvalidToken("not yet valid")
    if exp - iat > max_age + leeway:
        raise InvalidToken("lifetime too long")
    email, tenant, role = body.get("email"), body.get("tenant"), body.get("role")
    name, tenant_at = body.get("name"), body.get("tenantAt")
    if not isinstance(tenant, str):
        tenant = body.get("currentTenantId")  # the upstream's claim for the workspace
    return Claims(
        sub=sub,
        email=email if isinstance(email, str) else "",
        tenant=tenant if isinstance(tenant, str) else "",
        role=role if isinstance(role, str) else None,
        iat=iat,
        exp=exp,
        jti=jti,
        name=name if isinstance(name, str) else None,
        tenant_at=tenant_at if type(tenant_at) is int else 0,
    )
