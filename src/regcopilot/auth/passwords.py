"""Password hashing: bcrypt as Supabase stores it ($2a$/$2b$), argon2 verified too."""

from __future__ import annotations

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

MAX_PASSWORD_BYTES = 1024
BCRYPT_MAX_BYTES = 72  # bcrypt ignores (old) or refuses (bcrypt >= 5) anything longer

DEFAULT_BCRYPT_ROUNDS = 12

_hasher = PasswordHash((BcryptHasher(rounds=DEFAULT_BCRYPT_ROUNDS), Argon2Hasher()))
# Verified against when the email is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("regcopilot-timing-equaliser")


def configure(bcrypt_rounds: int) -> None:
    """Cost of new hashes (tests use the minimum so a suite of logins runs in seconds).
    Verifying always uses the cost stored in the hash itself."""
    global _hasher, _DUMMY_HASH
    _hasher = PasswordHash((BcryptHasher(rounds=bcrypt_rounds), Argon2Hasher()))
    _DUMMY_HASH = _hasher.hash("regcopilot-timing-equaliser")


def hash_password(password: str) -> str:
    """Raises ValueError for a password bcrypt cannot take (over 72 bytes, as Supabase)."""
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password must be at most {BCRYPT_MAX_BYTES} bytes (bcrypt's limit)")
    return _hasher.hash(password)


def _burn(password: str) -> None:
    """One dummy verify, for timing only; cut to what bcrypt accepts so it cannot raise."""
    _hasher.verify(password.encode()[:BCRYPT_MAX_BYTES].decode(errors="ignore"), _DUMMY_HASH)


def verify_password(password: str, stored: str | None) -> bool:
    """Constant in shape: an unknown user or an unusable hash costs one hash all the same."""
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        _hasher.verify("x", _DUMMY_HASH)
        return False
    if not stored:
        _burn(password)
        return False
    try:
        return _hasher.verify(password, stored)
    except Exception:  # a corrupt hash, or over 72 bytes for bcrypt: a failed login, not a 500
        _burn(password)
        return False
