"""The Store protocol: what every cache backend (memory, Redis) offers the tiers above it."""

from __future__ import annotations

from typing import Protocol


class StoreError(Exception):
    """The store could not answer; the tiers above decide what to do instead."""


class AmbiguousStoreError(StoreError):
    """No answer in time: the command may or may not have been applied."""


class Store(Protocol):
    name: str

    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str, ttl: float) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def count(self, prefix: str) -> int: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...
