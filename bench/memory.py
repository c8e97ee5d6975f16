"""Memory of the in-process state a server keeps per active user, at N users.

Run as `python -m bench.memory N` in a fresh interpreter (so earlier allocations do not blur
the figures); prints one JSON object. Measured with tracemalloc (bytes Python allocated for the
structure) and the process RSS before and after.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from regcopilot.auth.tokens import SessionTokens
from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.tiers import ValidationCache
from regcopilot.metrics.counters import Counters


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _measure(build: Any) -> dict[str, float]:
    gc.collect()
    rss0 = _rss_kib()
    tracemalloc.start()
    keep = build()
    gc.collect()
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _rss_kib()
    del keep
    return {"tracemalloc_kib": round(size / 1024, 1), "rss_delta_kib": rss1 - rss0}


async def _fill_cache(users: list[str]) -> ValidationCache:
    cache = ValidationCache(ttl=300, max_size=len(users), shared=None)
    now = int(time.time() * 1000)
    for i, user_id in enumerate(users):
        entry = CacheEntry(True, now, str(uuid.UUID(int=i % 10 + 1)), None, None,
                           tenant_role="member", tenant_name=f"Bench {i % 10}")
        await cache.put(user_id, entry, cache.entry_ttl(entry))
    assert len(cache.near) == len(users)
    return cache


def measure(n: int) -> dict[str, Any]:
    users = [str(uuid.uuid4()) for _ in range(n)]
    tokens = SessionTokens("m" * 48, 86_400)
    issued = [tokens.issue(sub=u, email=f"u{i}@bench.example", tenant="t", role=None)[0]
              for i, u in enumerate(users)]

    def cache() -> ValidationCache:
        return asyncio.run(_fill_cache(users))

    def decoded() -> SessionTokens:
        t = SessionTokens("m" * 48, 86_400)
        for token in issued:
            t.decode(token)
        return t

    def seen() -> Counters:
        c = Counters()
        now = int(time.time() * 1000)
        for u in users:
            c.seen(u, now)
        return c

    out: dict[str, Any] = {"users": n}
    out["validationCache"] = _measure(cache)
    out["decodedTokens"] = _measure(decoded)
    out["activeUsers"] = _measure(seen)
    out["perUserBytes"] = round(out["validationCache"]["tracemalloc_kib"] * 1024 / n, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)))
