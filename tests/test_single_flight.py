"""The validation cache's get_or_load: one load per user at a time, in the process and across
processes sharing a store (here a MemoryStore standing in for Redis: two caches on one store
are two instances)."""

from __future__ import annotations

import asyncio

from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.memory import MemoryStore
from regcopilot.cache.tiers import ValidationCache, now_ms
from regcopilot.names import Source


class CountingStore(MemoryStore):
    """The stand-in, counting lock attempts: how the test knows who has asked."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.locks_tried = 0

    async def try_lock(self, key: str, ttl: float) -> str | None:
        self.locks_tried += 1
        return await super().try_lock(key, ttl)


def cache_on(store: MemoryStore) -> ValidationCache:
    cache = ValidationCache(ttl=60, max_size=100, prefix="t:", shared=store)
    cache.freshness.floor = 0  # the log was read: entries in the store may be served
    return cache


def loader(cache: ValidationCache, calls: list[str], release: asyncio.Event):
    async def load(user_id: str) -> CacheEntry:
        calls.append(user_id)
        await release.wait()
        entry = CacheEntry(is_valid=True, timestamp=now_ms(), tenant_id="t1", reason=None,
                           role=None, tenant_role="owner", tenant_name="One")
        await cache.put(user_id, entry, 60)
        return entry

    return load


async def test_concurrent_misses_in_one_process_share_one_load():
    cache = cache_on(MemoryStore(100))
    calls: list[str] = []
    release = asyncio.Event()
    load = loader(cache, calls, release)
    waiting = [asyncio.create_task(cache.get_or_load("u1", load)) for _ in range(5)]
    await asyncio.sleep(0)  # every task has asked before the load may finish
    release.set()
    answers = await asyncio.gather(*waiting)
    assert calls == ["u1"]
    assert sum(a.leader for a in answers) == 1
    assert {a.source for a in answers} == {Source.DIRECTORY}
    assert all(a.entry.tenant_id == "t1" for a in answers)


async def test_another_instance_waits_for_the_lock_holder_and_takes_its_answer():
    store = CountingStore(100)
    first, second = cache_on(store), cache_on(store)
    calls: list[str] = []
    release = asyncio.Event()
    holder = asyncio.create_task(first.get_or_load("u2", loader(first, calls, release)))
    while not await store.exists(first.lock_prefix + "u2"):
        await asyncio.sleep(0)
    watcher = asyncio.create_task(second.get_or_load("u2", loader(second, calls, release)))
    while store.locks_tried < 2:  # the watcher found the lock taken...
        await asyncio.sleep(0)
    assert calls == ["u2"] and not watcher.done()  # ...and watches instead of loading
    release.set()
    held, watched = await asyncio.gather(holder, watcher)
    assert calls == ["u2"]  # the directory was asked once for both instances
    assert held.source is Source.DIRECTORY and watched.source is Source.COALESCED
