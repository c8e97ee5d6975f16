"""Memory of the in-process state a server keeps per active user, at N users.

Run as `python -m bench.memory [N ...]` (default: 10,000 and 100,000) in a fresh interpreter
(so earlier allocations do not blur the figures); prints one JSON object per N. Measured with
tracemalloc (bytes Python allocated for the structure) and the process RSS before and after.

The five per-user structures are the process's one memory budget, each capped by a setting:
MAX_CACHE_SIZE (validation cache, and the answers reused per token), DECODED_TOKEN_CACHE_SIZE,
ACTIVE_USERS_TRACKED and REVOCATIONS_KEPT_LOCALLY. Each is filled as a server at the default
caps would be after N
users signed in (and, for revocations, signed out), i.e. with min(N, cap) entries; the
report gives the bytes per entry, the total at N, and the budget at the default caps.
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

from regcopilot.auth.authenticate import SERVED_KEY, Served
from regcopilot.auth.identity import SessionUser
from regcopilot.auth.revocations import RevocationList
from regcopilot.auth.tokens import SessionTokens
from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.memory import Memo
from regcopilot.cache.tiers import ValidationCache
from regcopilot.config import Settings
from regcopilot.metrics.counters import Counters
from regcopilot.web.routes.nextauth import session_body
from regcopilot.web.routes.pages import user_json


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


async def _fill_revocations(jtis: list[str], cap: int) -> RevocationList:
    revoked = RevocationList("bench:", None, None, max_local=cap)
    exp = int(time.time()) + 86_400
    for jti in jtis:
        await revoked.revoke(jti, exp)
    return revoked


def measure(n: int) -> dict[str, Any]:
    caps = Settings()
    users = [str(uuid.uuid4()) for _ in range(n)]
    tokens = SessionTokens("m" * 48, 86_400)
    issued = [tokens.issue(sub=u, email=f"u{i}@bench.example", tenant="t", role=None)[0]
              for i, u in enumerate(users)]
    sizes = {
        "validationCache": (caps.MAX_CACHE_SIZE, "MAX_CACHE_SIZE"),
        "servedAnswers": (caps.MAX_CACHE_SIZE, "MAX_CACHE_SIZE"),
        "decodedTokens": (caps.DECODED_TOKEN_CACHE_SIZE, "DECODED_TOKEN_CACHE_SIZE"),
        "activeUsers": (caps.ACTIVE_USERS_TRACKED, "ACTIVE_USERS_TRACKED"),
        "revocations": (caps.REVOCATIONS_KEPT_LOCALLY, "REVOCATIONS_KEPT_LOCALLY"),
    }

    def cache() -> ValidationCache:
        return asyncio.run(_fill_cache(users[: sizes["validationCache"][0]]))

    def decoded() -> SessionTokens:
        t = SessionTokens("m" * 48, 86_400, cache_size=sizes["decodedTokens"][0])
        for token in issued:
            t.decode(token)
        return t

    shared_entry = CacheEntry(True, int(time.time() * 1000), str(uuid.UUID(int=1)), None, None,
                              tenant_role="member", tenant_name="Bench")

    def served() -> Memo:
        """authenticate()'s reused answers after a /api/me and a session read each: the
        token, its claims, the SessionUser and the two JSON answers made from it (the cached
        validation entry is the validation cache's, counted there)."""
        memo = Memo(sizes["servedAnswers"][0])
        for token in issued[: sizes["servedAnswers"][0]]:
            claims = tokens._verify(token)
            user = SessionUser(id=claims.sub, email=claims.email, tenant_id=claims.tenant,
                               role=None, jti=claims.jti, exp=claims.exp,
                               tenant_role="member", tenant_name="Bench", issued_at=claims.iat)
            user_json(user)
            session_body(user, user.exp)
            memo.put(token[-SERVED_KEY:], Served(token, claims, shared_entry, user))
        return memo

    def seen() -> Counters:
        c = Counters(sizes["activeUsers"][0])
        now = int(time.time() * 1000)
        for u in users:
            c.seen(u, now)
        return c

    def revocations() -> RevocationList:
        jtis = [uuid.uuid4().hex for _ in range(n)]
        return asyncio.run(_fill_revocations(jtis, sizes["revocations"][0]))

    out: dict[str, Any] = {"users": n}
    budget = 0.0
    total = 0.0
    for name, build in (("validationCache", cache), ("servedAnswers", served),
                        ("decodedTokens", decoded),
                        ("activeUsers", seen), ("revocations", revocations)):
        cap, setting = sizes[name]
        held = min(n, cap)
        m = _measure(build)
        per_entry = m["tracemalloc_kib"] * 1024 / held
        out[name] = {**m, "entries": held, "bytesPerEntry": round(per_entry),
                     "setting": setting, "cap": cap}
        total += m["tracemalloc_kib"]
        budget += per_entry * cap / 1024
    out["totalKiB"] = round(total)
    out["budgetAtCapsKiB"] = round(budget)
    out["perUserBytes"] = out["validationCache"]["bytesPerEntry"]
    return out


if __name__ == "__main__":
    counts = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    if len(counts) == 1:
        print(json.dumps(measure(counts[0])))
    else:
        print(json.dumps([measure(c) for c in counts]))
