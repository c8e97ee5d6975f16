"""Revoked session ids, honoured by every instance until the token expires: the fast path.

The durable truth is the session records table (users/sessions.py, auth/sessions.py): it is
loaded into memory here at start and its change feed keeps every process current. In front of
it, Redis holds the ids for the cluster and the event bus tells every process at once. Only
while both the directory's feed and the bus are down does a check ask Redis.
"""

from __future__ import annotations

import logging
import time

from regcopilot.cache.bus import EventBus
from regcopilot.cache.keys import CacheKeys
from regcopilot.cache.memory import MemoryStore
from regcopilot.cache.store import SharedStore, StoreError
from regcopilot.feed import FeedState

log = logging.getLogger("regcopilot.auth")

MAX_LOCAL = 100_000


class RevocationList:
    def __init__(self, prefix: str, shared: SharedStore | None, bus: EventBus | None,
                 max_local: int = MAX_LOCAL, feed: FeedState | None = None) -> None:
        self.key_prefix = CacheKeys(prefix).revoked_prefix
        self.local = MemoryStore(max_local)
        self._unsent = MemoryStore(max_local)
        self.shared = shared
        self.bus = bus
        # The directory's change feed (feed.py): while it proves itself, every durable
        # revocation reaches this process's memory without asking Redis.
        self.feed = feed or FeedState("User change feed", log)
        if bus is not None:
            bus.subscribe(self._on_event, on_connect=self._load)

    async def revoke(self, jti: str, exp: int) -> None:
        ttl = exp - time.time()
        if ttl <= 0:
            return
        self.local.set_now(jti, "1", ttl)
        if self.shared is None:
            return
        if not (self.shared.breaker.allows and await self._share(jti, exp)):
            # Kept here and handed to Redis and the other instances once it answers again.
            self._unsent.set_now(jti, exp, ttl)
            log.warning("Revocation kept locally until Redis answers again")

    def remember(self, jti: str, exp: int) -> None:
        """Refuse this session here until it expires (from the records or their feed)."""
        self.local.set_now(jti, "1", exp - time.time())

    async def _share(self, jti: str, exp: int) -> bool:
        assert self.shared is not None
        try:
            await self.shared.set(self.key_prefix + jti, "1", exp - time.time())
        except StoreError:
            return False
        if self.bus is not None:
            return await self.bus.publish({"type": "revoke", "jti": jti, "exp": exp})
        return True

    def known(self, jti: str) -> bool | None:
        """Whether the session is revoked, as far as this process knows without asking Redis;
        None when only Redis can tell (is_revoked asks it). The warm path's answer, with no
        coroutine."""
        # Held is revoked: an entry past its deadline is only a session that has expired,
        # and the caller asks only for a token it has found unexpired.
        if self.local.holds(jti):
            return True
        if self.shared is None:
            return False
        if self.feed.complete or (self.bus is not None and self.bus.state.complete):
            return False  # every revocation reaches this process's memory: it is complete
        if not self.shared.breaker.allows:
            return False  # Redis known to be failing: the in-memory list is all there is
        return None

    async def is_revoked(self, jti: str) -> bool:
        known = self.known(jti)
        if known is not None:
            return known
        assert self.shared is not None
        try:
            return await self.shared.get(self.key_prefix + jti) is not None
        except StoreError:
            return False

    def _on_event(self, event: dict) -> None:
        jti, exp = event.get("jti"), event.get("exp")
        if event.get("type") == "revoke" and isinstance(jti, str) and isinstance(exp, int):
            self.local.set_now(jti, "1", exp - time.time())

    async def _load(self) -> None:
        """On (re)subscribe: hand over what was revoked here while Redis was away, then learn
        what was revoked elsewhere while we were not listening."""
        if self.shared is None:
            return
        for jti, exp in self._unsent.items():
            if await self._share(jti, exp):
                self._unsent.delete_now(jti)
        try:
            for jti, left in await self.shared.scan_ttl(self.key_prefix):
                self.local.set_now(jti, "1", left)
        except StoreError as exc:
            log.warning("Could not load revocations from Redis: %s", exc)
