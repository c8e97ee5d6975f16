"""Session tokens: HS256 JWTs signed with NEXTAUTH_SECRET.

Decoding is cached by the exact token string: a token whose signature was checked once need
not be checked again (a PyJWT HS256 decode costs ~37 µs, a third of a request's budget).
Expiry is still enforced on every use.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from regcopilot.cache.memory import MemoryStore
from regcopilot.users.directory import is_uuid

ALGORITHM = "HS256"
MAX_TOKEN_BYTES = 4096
DECODED_CACHE_SIZE = 50_000


class InvalidToken(Exception):
    """Why a token was refused; str() is a short reason for logs and metrics."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    email: str
    tenant: str
    role: str | None
    iat: int
    exp: int
    jti: str
    # ms since the epoch when `tenant` was set by a sign-in or a switch: a cached validation
    # older than that, naming another workspace, is re-asked rather than believed.
    tenant_at: int = 0


class SessionTokens:
    def __init__(self, secret: str, max_age: int) -> None:
        self._secret = secret
        self.max_age = max_age
        self._decoded = MemoryStore(DECODED_CACHE_SIZE)

    def issue(self, *, sub: str, email: str, tenant: str, role: str | None) -> tuple[str, Claims]:
        now = int(time.time())
        claims = Claims(sub, email, tenant, role, now, now + self.max_age, uuid.uuid4().hex,
                        int(time.time() * 1000))
        return self._encode(claims), claims

    def reissue(self, claims: Claims, tenant: str) -> str:
        """The same session (subject, id, expiry) in another workspace: a sign-out still
        ends it, and it lives no longer than the original."""
        moved = Claims(claims.sub, claims.email, tenant, claims.role, claims.iat, claims.exp,
                       claims.jti, int(time.time() * 1000))
        return self._encode(moved)

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
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str) -> Claims:
        claims = self._decoded.get_now(token)
        if claims is None:
            claims = self._verify(token)
            # Kept until the token's own expiry, after which the store forgets it and the
            # next use fails verification as expired.
            self._decoded.set_now(token, claims, claims.exp - time.time())
        return claims

    def _verify(self, token: str) -> Claims:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("oversized")
        try:
            body = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "iat", "exp", "jti"]},
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
        sub, jti = body.get("sub"), body.get("jti")
        if not isinstance(sub, str) or not is_uuid(sub):
            raise InvalidToken("bad subject")
        if not isinstance(jti, str) or not jti or len(jti) > 64:
            raise InvalidToken("bad jti")
        iat, exp = body.get("iat"), body.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise InvalidToken("bad timestamps")
        if iat > time.time() + 60:
            raise InvalidToken("not yet valid")
        email, tenant, role = body.get("email"), body.get("tenant"), body.get("role")
        if not isinstance(tenant, str):
            tenant = body.get("currentTenantId")
        tenant_at = body.get("tenantAt")
        return Claims(
            sub=sub,
            email=email if isinstance(email, str) else "",
            tenant=tenant if isinstance(tenant, str) else "",
            role=role if isinstance(role, str) else None,
            iat=iat,
            exp=exp,
            jti=jti,
            tenant_at=tenant_at if type(tenant_at) is int else 0,
        )
