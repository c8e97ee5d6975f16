"""Password hashing: bcrypt as Supabase stores it ($2a$/$2b$), argon2 verified too."""

from __future__ import annotations

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

MAX_PASSWORD_BYTES = 1024

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
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """Constant in shape: an unknown user or an unusable hash costs one hash all the same."""
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        _hasher.verify("x", _DUMMY_HASH)
        return False
    if not stored:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    try:
        return _hasher.verify(password, stored)
    except Exception:  # an unknown or corrupt hash format is a failed login, not a 500
        _hasher.verify(password, _DUMMY_HASH)
        return False
