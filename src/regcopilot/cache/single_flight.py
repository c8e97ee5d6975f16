"""get_or_load: one load per user at a time — in this process (concurrent near-tier misses
share one lookup) and across processes (a short Redis lock lets one load while the others
watch Redis for its answer). The validation cache owns it, so nothing outside cache/ needs
the store, the lock keys or the breaker's state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.store import SharedStore, StoreError
from regcopilot.names import Source

LOCK_SECONDS = 2.0  # a holder that dies frees the lock after this
LOCK_WAIT_SECONDS = 0.5  # then waiters stop waiting and ask the directory themselves
LOCK_POLL_SECONDS = 0.005

Loader = Callable[[str], Awaitable[CacheEntry]]


class Loaded(NamedTuple):
    entry: CacheEntry
    source: Source  # the shared tier, another load waited for, or this load
    leader: bool  # this caller ran the lookup (others in this process shared it)


class Tiers(Protocol):
    """What the single flight needs of the validation cache (cache/tiers.py)."""

    shared: SharedStore | None
    lock_prefix: str

    @property
    def shared_usable(self) -> bool: ...
    async def get_shared(self, user_id: str) -> CacheEntry | None: ...


class SingleFlight:
    def __init__(self, cache: Tiers) -> None:
        self.cache = cache
        self._inflight: dict[str, asyncio.Future[tuple[CacheEntry, Source]]] = {}

    async def get_or_load(self, user_id: str, loader: Loader) -> Loaded:
        """The shared tier's answer, or `loader(user_id)`'s, asked once however many ask."""
        running = self._inflight.get(user_id)
        if running is not None:
            entry, source = await asyncio.shield(running)
            return Loaded(entry, source, False)
        future: asyncio.Future[tuple[CacheEntry, Source]] = (
            asyncio.get_running_loop().create_future()
        )
        self._inflight[user_id] = future
        try:
            result = await self._lookup(user_id, loader)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(result)
            return Loaded(result[0], result[1], True)
        finally:
            del self._inflight[user_id]

    async def _lookup(self, user_id: str, loader: Loader) -> tuple[CacheEntry, Source]:
        entry = await self.cache.get_shared(user_id)
        if entry is not None:
            return entry, Source.CACHED
        return await self._load_once_in_cluster(user_id, loader)

    async def _load_once_in_cluster(
        self, user_id: str, loader: Loader
    ) -> tuple[CacheEntry, Source]:
        cache = self.cache
        store = cache.shared
        if store is None or not cache.shared_usable:
            return await loader(user_id), Source.DIRECTORY
        lock_key = cache.lock_prefix + user_id
        try:
            token = await store.try_lock(lock_key, LOCK_SECONDS)
        except StoreError:
            # Redis is sick: no holder can fill it either, so waiting would only cost time.
            return await loader(user_id), Source.DIRECTORY
        if token is None:
            entry = await self._wait_for_holder(user_id)
            if entry is not None:
                return entry, Source.COALESCED
            return await loader(user_id), Source.DIRECTORY
        try:
            entry = await cache.get_shared(user_id)  # filled while we took the lock?
            if entry is not None:
                return entry, Source.COALESCED
            return await loader(user_id), Source.DIRECTORY
        finally:
            with contextlib.suppress(StoreError):
                await store.unlock(lock_key, token)

    async def _wait_for_holder(self, user_id: str) -> CacheEntry | None:
        cache = self.cache
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while time.monotonic() < deadline and cache.shared_usable:
            await asyncio.sleep(LOCK_POLL_SECONDS)
            entry = await cache.get_shared(user_id)
            if entry is not None:
                return entry
            if not await self._lock_held(user_id):
                # The holder is done but its answer is gone (another instance's change notice
                # dropped it): waiting on would sit out the whole LOCK_WAIT_SECONDS (measured:
                # 1 access-lost trial in 30 took 516 ms). One last look, then ask ourselves.
                return await cache.get_shared(user_id)
        return None

    async def _lock_held(self, user_id: str) -> bool:
        store = self.cache.shared
        assert store is not None
        try:
            return await store.exists(self.cache.lock_prefix + user_id)
        except StoreError:
            return True  # cannot tell: keep waiting, as before
