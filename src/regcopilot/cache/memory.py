"""In-process store: LRU bounded by MAX_CACHE_SIZE, each entry with its own expiry.

Values are kept as given (the near tier keeps decoded entries, so a warm hit parses nothing);
the async methods are the Store protocol for string values.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from regcopilot.cache.breaker import Breaker

FOREVER_S = 10 * 365 * 24 * 3600.0


class Held:
    """One entry of a MemoryStore, as a handle a caller may keep: while `live` and before its
    `deadline` (time.monotonic()), the store still maps its key to this very `value`, which is
    never changed in place (a new value is a new Held). The store clears `live` when it drops
    or replaces the entry, so a keeper asks the handle instead of looking the key up again:
    the warm request keeps the near tier's handle with its answer (auth/authenticate.py),
    where the lookup read the dict, the OrderedDict's links and its neighbours' (all cold
    with 1,000 users taking turns: bench/ab.py). A keeper that uses the value sets `used`:
    the store gives such an entry a second chance before evicting it, as its lookup would
    have moved it to the young end."""

    __slots__ = ("deadline", "live", "used", "value")

    def __init__(self, value: Any, deadline: float) -> None:
        self.value = value
        self.deadline = deadline
        self.live = True
        self.used = False


class MemoryStore:
    """An OrderedDict in LRU order with a deadline per entry (each a Held).

    Written out rather than taken from cachetools: its TLRUCache keeps a timer context and an
    expiry heap, which the benchmark profile showed on every request; here a hit is one dict
    lookup, one clock read and one move_to_end. Expired entries are dropped when met, and the
    least recently used go first when full (an entry used through its handle since it was
    last looked up gets a second chance first).
    """

    name = "in-memory"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._data: OrderedDict[str, Held] = OrderedDict()
        self._breaker: Breaker | None = None
        # Whether a key is held, expired or not yet dropped included: for a caller whose keys
        # carry their own expiry (a revoked session's id, asked only for a live token), the
        # dict's own test with no call of ours around it (the warm request asks it).
        self.holds = self._data.__contains__

    def get_now(self, key: str) -> Any:
        """Synchronous lookup: the hot path needs no await for a dict."""
        held = self._data.get(key)
        if held is None:
            return None
        if held.deadline <= time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return held.value

    def handle(self, key: str) -> Held | None:
        """The key's entry as a handle to keep (Held), or None if there is no live one. Not a
        use: the caller has just looked the key up with get_now."""
        held = self._data.get(key)
        return held if held is not None and held.deadline > time.monotonic() else None

    def set_now(self, key: str, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        self._put(key, value, time.monotonic() + ttl)
        data = self._data
        while len(data) > self.max_size:
            old_key, held = data.popitem(last=False)
            if held.used:  # used through its handle since it came round: keep it, once
                held.used = False
                data[old_key] = held
            else:
                held.live = False

    def _put(self, key: str, value: Any, deadline: float) -> None:
        """The key's new entry, at the young end; the one it replaces is no longer live."""
        old = self._data.pop(key, None)
        if old is not None:
            old.live = False
        self._data[key] = Held(value, deadline)

    def _drop(self, key: str) -> None:
        held = self._data.pop(key, None)
        if held is not None:
            held.live = False

    def delete_now(self, key: str) -> None:
        self._drop(key)

    def remaining(self, key: str) -> float:
        held = self._data.get(key)
        return max(0.0, held.deadline - time.monotonic()) if held is not None else 0.0

    def cap(self, seconds_left: Callable[[Any], float]) -> None:
        """Shorten every entry's life to at most seconds_left(value) from now (in place: a
        kept handle sees the new deadline)."""
        now = time.monotonic()
        for held in self._data.values():
            held.deadline = min(held.deadline, now + seconds_left(held.value))

    def clear(self) -> None:
        for held in self._data.values():
            held.live = False
        self._data.clear()

    def expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, held in self._data.items() if held.deadline <= now]:
            self._drop(key)

    def items(self) -> list[tuple[str, Any]]:
        """The live entries, oldest use first (a snapshot: safe to change the store meanwhile)."""
        self.expire()
        return [(key, held.value) for key, held in self._data.items()]

    def __bool__(self) -> bool:
        return bool(self._data)

    def __len__(self) -> int:
        self.expire()
        return len(self._data)

    async def get(self, key: str) -> str | None:
        return self.get_now(key)

    async def set(self, key: str, value: str, ttl: float) -> None:
        self.set_now(key, value, ttl)

    async def delete(self, key: str) -> None:
        self.delete_now(key)

    async def count(self, prefix: str) -> int:
        self.expire()
        return sum(1 for k in self._data if k.startswith(prefix))

    async def ping(self) -> None:
        return None

    # --- the SharedStore operations, for one process standing in for the cluster ----------
    @property
    def breaker(self) -> Breaker:
        # Memory always answers: a breaker that is closed and stays so.
        if self._breaker is None:
            self._breaker = Breaker()
            self._breaker.success()
        return self._breaker

    async def exists(self, key: str) -> bool:
        return self.get_now(key) is not None

    async def set_max(self, key: str, value: int) -> None:
        current = self.get_now(key)
        if current is None or int(current) < value:
            self.set_now(key, str(value), FOREVER_S)

    async def delete_prefix(self, prefix: str) -> int:
        keys = [k for k in self._data if k.startswith(prefix)]
        for key in keys:
            self._drop(key)
        return len(keys)

    async def scan_ttl(self, prefix: str) -> list[tuple[str, float]]:
        self.expire()
        return [(k.removeprefix(prefix), self.remaining(k)) for k in self._data
                if k.startswith(prefix)]

    async def try_lock(self, key: str, ttl: float) -> str | None:
        if self.get_now(key) is not None:
            return None
        token = secrets.token_hex(8)
        self.set_now(key, token, ttl)
        return token

    async def unlock(self, key: str, token: str) -> None:
        if self.get_now(key) == token:
            self.delete_now(key)

    async def window_count(self, key: str) -> tuple[int, float | None]:
        value = self.get_now(key)
        return (int(value), self.remaining(key)) if value is not None else (0, None)

    async def window_bump(self, key: str, window: int) -> None:
        value = self.get_now(key)
        if value is None:
            self.set_now(key, "1", window)
        else:  # the window is not moved by later counts
            self._put(key, str(int(value) + 1), self._data[key].deadline)

    async def unneeded_password(self) -> bool:
        return False

    async def close(self) -> None:
        self.clear()


class Memo:
    """A bounded dict for values that carry their own expiry (the caller checks it): no LRU
    reordering on a hit, where MemoryStore pays a move_to_end (on a 1,000-entry OrderedDict, a
    walk to neighbours the request never needed), and the oldest insert dropped when full."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._data: dict[str, Any] = {}
        self.get = self._data.get  # the lookup itself, with no call of ours around it

    def put(self, key: str, value: Any) -> None:
        data = self._data
        data.pop(key, None)  # re-inserted last: the next to go is the oldest
        data[key] = value
        if len(data) > self.max_size:
            del data[next(iter(data))]

    def __len__(self) -> int:
        return len(self._data)
