"""Password hashing: bcrypt as Supabase stores it ($2a$/$2b$), argon2 verified too.

A Hasher is a plain object with its own cost, handed to whoever needs it (the web tier builds
one from PASSWORD_HASH_ROUNDS; tests build a cost-4 one). The module-level functions use a
default cost-12 hasher, for scripts. Everything here is blocking CPU work (~250 ms at cost 12):
the web tier calls it through auth/password_pool.py, never on the event loop.
"""

from __future__ import annotations

import threading

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

MAX_PASSWORD_BYTES = 1024
BCRYPT_MAX_BYTES = 72  # bcrypt ignores (old) or refuses (bcrypt >= 5) anything longer

DEFAULT_BCRYPT_ROUNDS = 12
MIN_BCRYPT_ROUNDS = 4  # bcrypt's own minimum
MAX_BCRYPT_ROUNDS = 31


class Hasher:
    def __init__(self, rounds: int = DEFAULT_BCRYPT_ROUNDS) -> None:
        self.rounds = rounds
        self._hash = PasswordHash((BcryptHasher(rounds=rounds), Argon2Hasher()))
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    def _dummy_hash(self) -> str:
        """Verified against when the email is unknown, so both cases take the same time.
        Made on first use (one hash), not at import."""
        if self._dummy is None:
            with self._dummy_lock:
                if self._dummy is None:
                    self._dummy = self._hash.hash("regcopilot-timing-equaliser")
        return self._dummy

    def hash(self, password: str) -> str:
        """Raises ValueError for a password bcrypt cannot take (over 72 bytes, as Supabase)."""
        if len(password.encode()) > BCRYPT_MAX_BYTES:
            raise ValueError(f"password must be at most {BCRYPT_MAX_BYTES} bytes (bcrypt's limit)")
        return self._hash.hash(password)

    def _burn(self, password: str) -> None:
        """One dummy verify, for timing only; cut to what bcrypt accepts so it cannot raise."""
        cut = password.encode()[:BCRYPT_MAX_BYTES].decode(errors="ignore")
        self._hash.verify(cut, self._dummy_hash())

    def verify(self, password: str, stored: str | None) -> bool:
        """Constant in shape: an unknown user or an unusable hash costs one hash all the same."""
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            self._hash.verify("x", self._dummy_hash())
            return False
        if not stored:
            self._burn(password)
            return False
        try:
            return self._hash.verify(password, stored)
        except Exception:  # a corrupt hash, or over 72 bytes for bcrypt: a failed login, not a 500
            self._burn(password)
            return False


DEFAULT_HASHER = Hasher()


def hash_password(password: str) -> str:
    """Blocking; for scripts. See Hasher.hash."""
    return DEFAULT_HASHER.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """Blocking; for scripts. See Hasher.verify."""
    return DEFAULT_HASHER.verify(password, stored)
