"""The collaborators that share state across instances depend on the SharedStore protocol,
not on Redis: the in-process MemoryStore stands in for it where one process is the cluster."""

from __future__ import annotations

import pytest

from regcopilot.auth.rate_limit import LoginLimiter, RateLimited
from regcopilot.cache.memory import MemoryStore


async def test_login_limits_count_in_a_memory_store():
    store = MemoryStore(1000)
    limiter = LoginLimiter("t:", store, account_limit=3, address_limit=100, window=60)
    for _ in range(3):
        await limiter.check("a@example.com", "10.0.0.1")
        await limiter.failed("a@example.com", "10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        await limiter.check("a@example.com", "10.0.0.1")
    assert refused.value.what == "account" and 0 < refused.value.retry_after <= 60
    await limiter.check("b@example.com", "10.0.0.1")  # another account is not limited
    await limiter.succeeded("a@example.com", "10.0.0.1")
    await limiter.check("a@example.com", "10.0.0.1")  # the right password cleared the count


async def test_a_lock_in_a_memory_store_has_one_holder():
    store = MemoryStore(1000)
    token = await store.try_lock("t:lock:u", 5)
    assert token is not None
    assert await store.try_lock("t:lock:u", 5) is None
    await store.unlock("t:lock:u", "someone-else")
    assert await store.exists("t:lock:u")
    await store.unlock("t:lock:u", token)
    assert await store.try_lock("t:lock:u", 5) is not None
    assert store.breaker.allows
