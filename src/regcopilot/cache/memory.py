"""In-process store: LRU bounded by MAX_CACHE_SIZE, each entry with its own expiry.

Values are kept as given (the near tier keeps decoded entries, so a warm hit parses nothing);
the async methods are the Store protocol for string values.
"""

from __future__ import annotations

import time
from typing import Any

from cachetools import TLRUCache


def _expiry(_key: str, value: tuple[Any, float], _now: float) -> float:
    return value[1]


class MemoryStore:
    name = "in-memory"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._data: TLRUCache[str, tuple[Any, float]] = TLRUCache(
            maxsize=max_size, ttu=_expiry, timer=time.monotonic
        )

    def get_now(self, key: str) -> Any:
        """Synchronous lookup: the hot path needs no await for a dict."""
        item = self._data.get(key)
        return item[0] if item is not None else None

    def set_now(self, key: str, value: Any, ttl: float) -> None:
        if ttl > 0:
            self._data[key] = (value, time.monotonic() + ttl)

    def delete_now(self, key: str) -> None:
        self._data.pop(key, None)

    def remaining(self, key: str) -> float:
        item = self._data.get(key)
        return item[1] - time.monotonic() if item is not None else 0.0

    def clear(self) -> None:
        self._data.clear()

    async def get(self, key: str) -> str | None:
        return self.get_now(key)

    async def set(self, key: str, value: str, ttl: float) -> None:
        self.set_now(key, value, ttl)

    async def delete(self, key: str) -> None:
        self.delete_now(key)

    async def count(self, prefix: str) -> int:
        self._data.expire()
        return sum(1 for k in list(self._data.keys()) if k.startswith(prefix))

    def __len__(self) -> int:
        self._data.expire()
        return len(self._data)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()
