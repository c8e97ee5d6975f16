"""The validation cache: a near tier in process memory in front of a shared Redis tier.

Policy, in one place:
- no Redis: the memory tier is the cache (`in-memory`);
- Redis healthy: Redis is the shared truth; the near tier keeps hot entries so a warm hit costs
  no round trip, trusted for the full TTL only while the invalidation feed is connected
  (otherwise for NEAR_TTL_UNTRUSTED seconds);
- Redis failing: a breaker skips it, the memory tier serves, a background probe brings Redis
  back; invalidations missed meanwhile are replayed into Redis on recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime

from cachetools import LRUCache

from regcopilot.background import stop
from regcopilot.cache.breaker import Breaker
from regcopilot.cache.entry import CacheEntry, upstream_shaped
from regcopilot.cache.freshness import Freshness
from regcopilot.cache.keys import CacheKeys
from regcopilot.cache.memory import Held, MemoryStore
from regcopilot.cache.redis import UNNEEDED_PASSWORD
from regcopilot.cache.single_flight import Loaded, Loader, SingleFlight
from regcopilot.cache.store import SharedStore, StoreError
from regcopilot.names import Backend
from regcopilot.users.changes import Change

log = logging.getLogger("regcopilot.cache")

NEAR_TTL_UNTRUSTED = 1.0
PROBE_SECONDS = 0.5
# While Redis stays down the probe backs off to this: a refused connect every 2 s costs
# nothing, and a restarted Redis is back within ~2 s (the fault tests allow 5 s).
PROBE_MAX_SECONDS = 2.0
# A fixed-interval error line for a long outage was ~7,200 lines an hour; one reminder a
# minute still tells an operator tailing the log that the outage goes on, and for how long.
REMINDER_SECONDS = 60.0
# Said after the guide's "Redis cache unavailable (…) - using in-memory cache", which is kept
# verbatim: what an operator checks next, in their words rather than the client library's.
REDIS_HINT = ("Redis: check REDIS_URL (unset it to run on the in-memory cache alone), and run "
              "`regcopilot doctor`: it names the step that fails (reach, TLS, password)")
TTL_JITTER = 0.1  # entries written together must not all expire together
SIZE_CACHE_SECONDS = 2.0
MAX_PENDING_INVALIDATIONS = 10_000
RECENT_INVALIDATIONS = 10_000


def now_ms() -> int:
    return int(time.time() * 1000)


def outage_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ValidationCache:
    def __init__(
        self,
        *,
        ttl: int,
        max_size: int,
        prefix: str = "copilot:auth:",
        shared: SharedStore | None = None,
        freshness: Freshness | None = None,
    ) -> None:
        self.ttl = ttl
        self.freshness = freshness or Freshness(ttl, ttl)
        self.max_size = max_size
        self.prefix = prefix
        self.keys = CacheKeys(prefix)
        self.key_prefix = self.keys.validation_prefix
        self.lock_prefix = self.keys.lock("")
        self.near = MemoryStore(max_size)
        self.shared = shared
        self.breaker = shared.breaker if shared is not None else Breaker()
        self.breaker.on_open.append(self._opened)
        self.freshness.feed.watch(self._feed_changed)
        self._pending: set[str] = set()
        self._pending_overflow = False
        self._probe: asyncio.Task[None] | None = None
        self._outage_logged = False  # the transition to "down" has been logged
        self._password_asked = False  # whether REDIS_URL's password is needed at all
        self._reminded_at = 0.0
        self._size: tuple[float, int] | None = None
        # When each user was last invalidated here: an answer older than that is stale even
        # if another process wrote it to Redis after we dropped the key.
        self._invalidated: LRUCache[str, int] = LRUCache(RECENT_INVALIDATIONS)
        self._flight = SingleFlight(self)

    # --- the backend as the guide names it -------------------------------------------
    @property
    def backend(self) -> str:
        if self.shared is None:
            return Backend.IN_MEMORY
        return Backend.REDIS if self.breaker.allows else self.breaker.state

    @property
    def shared_usable(self) -> bool:
        return self.shared is not None and self.breaker.allows

    def key(self, user_id: str) -> str:
        return self.key_prefix + user_id  # = keys.validation(user_id), without a call

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        if self.shared is None:
            log.warning("REDIS_URL not configured - using in-memory cache")
            return
        await self._check()
        self._probe = asyncio.create_task(self._probe_loop(), name="redis-probe")

    async def close(self) -> None:
        await stop(self._probe)
        if self.shared is not None:
            await self.shared.close()

    async def _check(self) -> None:
        assert self.shared is not None
        try:
            await self.shared.ping()
        except StoreError as exc:
            self.breaker.trip(exc, str(exc))
            self._outage(exc)
            return
        self._outage_logged = False
        if self.breaker.success():
            await self._replay_invalidations()
            log.info("Redis cache connected successfully")
        if not self._password_asked:
            self._password_asked = True  # said once per process, as doctor says it
            with contextlib.suppress(StoreError):
                if await self.shared.unneeded_password():
                    log.warning(UNNEEDED_PASSWORD)

    def _outage(self, exc: StoreError) -> None:
        """The first failure of an outage is logged; afterwards a reminder with its age."""
        now = time.monotonic()
        if not self._outage_logged:
            log.error("Redis cache unavailable (%s) - using in-memory cache", exc)
            log.warning(REDIS_HINT)
            self._outage_logged, self._reminded_at = True, now
        elif now - self._reminded_at >= REMINDER_SECONDS:
            log.warning(
                "Redis cache still unavailable after %s (%s) - using in-memory cache",
                outage_age(now - self.breaker.opened_at), exc,
            )
            self._reminded_at = now

    async def _probe_loop(self) -> None:
        delay = PROBE_SECONDS
        while True:
            await asyncio.sleep(delay)
            if not self.breaker.open:
                delay = PROBE_SECONDS
                continue
            await self._check()
            delay = min(delay * 2, PROBE_MAX_SECONDS) if self.breaker.open else PROBE_SECONDS

    def _opened(self, error: str) -> None:
        """The store's failures opened the breaker (whichever caller's command failed)."""
        log.error("Redis cache failing (%s) - using in-memory cache", error)
        log.warning(REDIS_HINT)
        self._outage_logged, self._reminded_at = True, time.monotonic()

    # --- reads ----------------------------------------------------------------------
    def peek(self, user_id: str) -> CacheEntry | None:
        """The near tier only: no await, no network. The near tier is keyed by the user id
        itself (it is this process's alone): the id a request brings is most often the very
        string object stored there, so the lookup needs neither a new key nor a comparison
        of characters."""
        return self.near.get_now(user_id)

    def held(self, user_id: str) -> Held | None:
        """The near tier's handle on the user's entry (cache/memory.py's Held), for a caller
        that keeps an answer made from it: while the handle is live, the near tier still
        holds that entry, and no lookup is needed to know it."""
        return self.near.handle(user_id)

    async def get_shared(self, user_id: str) -> CacheEntry | None:
        if not self.shared_usable:
            return None
        assert self.shared is not None
        key = self.key(user_id)
        try:
            raw = await self.shared.get(key)
        except StoreError:
            return None  # the store has told the breaker
        if raw is None:
            return None
        entry = CacheEntry.decode(raw)
        if entry is None:
            if upstream_shaped(raw):  # a mixed fleet during a move: expected, not an alarm
                log.debug("Upstream validation entry for %s read as a miss", user_id)
            else:
                log.warning("Discarding malformed validation entry for %s", user_id)
            return None
        now = now_ms()
        trust = self.freshness.trust_seconds(entry)
        if (
            self.changed_since(user_id, entry.timestamp)
            or not self.freshness.provable(user_id, entry)
            or not entry.fresh(trust, now)
        ):
            # Older than our last invalidation or than a logged change to this user, past the
            # age we can trust it for, or from the future.
            return None
        left = trust - (now - entry.timestamp) / 1000
        if entry.banned_until is not None:
            left = min(left, (entry.banned_until - now) / 1000)
        if left > 0:
            self._keep_near(user_id, entry, left)
        return entry

    async def get(self, user_id: str) -> CacheEntry | None:
        return self.peek(user_id) or await self.get_shared(user_id)

    async def get_or_load(self, user_id: str, loader: Loader) -> Loaded:
        """After a near-tier miss: the shared tier's answer, or `loader`'s — run once per
        user at a time in this process and, through a Redis lock, in the cluster."""
        return await self._flight.get_or_load(user_id, loader)

    # --- writes ---------------------------------------------------------------------
    def entry_ttl(self, entry: CacheEntry, banned_until: datetime | None = None) -> float:
        ttl = self.freshness.trust_seconds(entry) * (1 - random.random() * TTL_JITTER)
        if banned_until is not None:
            # A ban with a known end is cached no longer than it lasts.
            ttl = min(ttl, max(0.0, (banned_until - datetime.now(UTC)).total_seconds()))
        return ttl

    @property
    def near_trusted(self) -> bool:
        """Near entries live their full TTL: the change feed proves itself, or there is no
        shared tier to be told about."""
        return self.shared is None or self.freshness.feed.complete

    def _near_ttl(self, ttl: float) -> float:
        if self.shared is None or not self.breaker.allows or self.near_trusted:
            return ttl
        return min(ttl, NEAR_TTL_UNTRUSTED)

    async def put(self, user_id: str, entry: CacheEntry, ttl: float) -> None:
        if ttl <= 0:
            return
        key, raw = self.key(user_id), entry.encode()
        self._keep_near(user_id, entry, ttl)
        if not self.shared_usable:
            return
        assert self.shared is not None
        try:
            await self.shared.set(key, raw, ttl)
        except StoreError:
            pass  # the store has told the breaker

    def _keep_near(self, user_id: str, entry: CacheEntry, ttl: float) -> None:
        self.near.set_now(user_id, entry, self._near_ttl(ttl))

    def changed_since(self, user_id: str, ts_ms: int) -> bool:
        return self._invalidated.get(user_id, -1) >= ts_ms

    async def invalidate(self, user_id: str) -> None:
        """Drop a user's entry from both tiers; a Redis we cannot reach gets it later."""
        self._invalidated[user_id] = now_ms()
        key = self.key(user_id)
        self.near.delete_now(user_id)
        if self.shared is None:
            return
        if self.shared_usable:
            try:
                await self.shared.delete(key)
                return
            except StoreError:
                pass  # the store has told the breaker; Redis gets it on recovery
        self._remember(user_id)

    def drop_near(self, user_id: str) -> None:
        self.near.delete_now(user_id)

    def _remember(self, user_id: str) -> None:
        if len(self._pending) >= MAX_PENDING_INVALIDATIONS:
            self._pending_overflow = True
        else:
            self._pending.add(user_id)

    async def _replay_invalidations(self) -> None:
        assert self.shared is not None
        pending, overflow = self._pending, self._pending_overflow
        self._pending, self._pending_overflow = set(), False
        try:
            # Redis's own high-water mark: the log position whose changes it has had applied.
            # Changes this process knows of past it (made while Redis was away, or before a
            # Redis with persistence came back) are applied now.
            raw = await self.shared.get(self.hwm_key)
            mark = int(raw) if raw and raw.isdigit() else None
            if mark is not None:
                pending |= set(self.freshness.changed_since(mark))
            if overflow:
                await self.shared.delete_prefix(self.key_prefix)
            for user_id in pending:
                await self.shared.delete(self.key(user_id))
            await self.shared.set_max(self.hwm_key, self.freshness.position)
        except Exception as exc:  # replay again on the next recovery
            self._pending |= pending
            self._pending_overflow |= overflow
            log.warning("Could not replay invalidations into Redis: %s", exc)
        if pending or overflow:
            log.info("Replayed %d missed invalidations into Redis", len(pending))

    def _feed_changed(self, complete: bool) -> None:
        """While changes may be missed, the max age cannot be proved: entries fall back to the
        short TTL, and near entries in front of Redis to NEAR_TTL_UNTRUSTED."""
        if complete:
            return
        if self.shared is not None:
            self.near.clear()
        else:
            now = now_ms()
            self.near.cap(lambda e: self.ttl - (now - e.timestamp) / 1000)

    @property
    def hwm_key(self) -> str:
        return self.keys.change_mark

    async def applied(self, change: Change) -> None:
        """A logged change: remember it (entries read before it are stale), drop the user's
        entries, and move Redis's high-water mark."""
        self.freshness.applied(change)
        await self.invalidate(change.user_id)
        if self.shared_usable and not self._pending:
            assert self.shared is not None
            try:
                await self.shared.set_max(self.hwm_key, self.freshness.position)
            except StoreError:
                pass  # the store has told the breaker

    # --- size -----------------------------------------------------------------------
    async def size(self) -> int:
        """Entries in the tier that is the truth: Redis (the same from every instance) or
        this process's memory."""
        if not self.shared_usable:
            return len(self.near)
        now = time.monotonic()
        if self._size and now - self._size[0] < SIZE_CACHE_SECONDS:
            return self._size[1]
        assert self.shared is not None
        try:
            n = await self.shared.count(self.key_prefix)
        except StoreError:
            pass  # the store has told the breaker
            return len(self.near)
        self._size = (now, n)
        return n

    @property
    def reported_max_size(self) -> int | None:
        return None if self.backend == Backend.REDIS else self.max_size
