"""Brute-force limits on failed logins, per account and per client address.

Shared by every instance through Redis (INCR with a window expiry); per process without it.
Only failures count, so a user who types the right password is never slowed down.
"""

from __future__ import annotations

import hashlib
import time

from cachetools import TTLCache

from regcopilot.cache.keys import CacheKeys
from regcopilot.cache.store import SharedStore, StoreError

WINDOW_SECONDS = 900
ACCOUNT_LIMIT = 10
ADDRESS_LIMIT = 50
MAX_TRACKED = 100_000


class RateLimited(Exception):
    def __init__(self, retry_after: int, what: str) -> None:
        super().__init__(what)
        self.retry_after = retry_after
        self.what = what


def _h(value: str) -> str:
    # Keys never hold an email in clear text.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class LoginLimiter:
    def __init__(
        self,
        prefix: str,
        shared: SharedStore | None,
        *,
        account_limit: int = ACCOUNT_LIMIT,
        address_limit: int = ADDRESS_LIMIT,
        window: int = WINDOW_SECONDS,
    ) -> None:
        self.prefix = CacheKeys(prefix).rate_limit_prefix
        self.shared = shared
        self.limits = {"account": account_limit, "address": address_limit}
        self.window = window
        self._local: TTLCache[str, list[float]] = TTLCache(MAX_TRACKED, window)

    def _keys(self, email: str, ip: str | None) -> list[tuple[str, str]]:
        keys = [("account", f"{self.prefix}account:{_h(email)}")]
        if ip:
            keys.append(("address", f"{self.prefix}address:{_h(ip)}"))
        return keys

    async def check(self, email: str, ip: str | None) -> None:
        for kind, key in self._keys(email, ip):
            count, ttl = await self._count(key)
            if count >= self.limits[kind]:
                raise RateLimited(max(1, int(ttl)), kind)

    async def failed(self, email: str, ip: str | None) -> None:
        for _, key in self._keys(email, ip):
            await self._bump(key)

    async def succeeded(self, email: str, ip: str | None) -> None:
        key = self._keys(email, None)[0][1]
        self._local.pop(key, None)
        if self.shared is not None and self._shared_usable:
            try:
                await self.shared.delete(key)
            except StoreError:
                pass  # the store has told the breaker; the window ends on its own

    @property
    def _shared_usable(self) -> bool:
        # A Redis known to be failing is skipped: a sign-in never waits on its timeout.
        return self.shared is not None and self.shared.breaker.allows

    async def _count(self, key: str) -> tuple[int, float]:
        if self.shared is not None and self._shared_usable:
            try:
                count, left = await self.shared.window_count(key)
                return count, left if left is not None else float(self.window)
            except StoreError:
                pass  # fall through to this process's own counts
        entry = self._local.get(key)
        if not entry:
            return 0, 0
        return int(entry[0]), entry[1] - time.monotonic()

    async def _bump(self, key: str) -> None:
        entry = self._local.get(key)
        if entry is None:
            self._local[key] = [1, time.monotonic() + self.window]
        else:
            entry[0] += 1
        if self.shared is not None and self._shared_usable:
            try:
                await self.shared.window_bump(key, self.window)
            except StoreError:
                pass  # counted here; the store has told the breaker
