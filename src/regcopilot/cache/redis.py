"""Redis store, shared by every instance. Short timeouts, no retries: auth never waits on a
sick Redis (redis-py's default retry/backoff took 3.8 s for one GET against a dead server)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from regcopilot.cache.store import StoreError

FAILURES = (RedisError, OSError, TimeoutError)
# New connections are rare (pooled) but come in bursts when many requests arrive at once on a
# busy event loop; a refused connection fails at once whatever this is.
CONNECT_TIMEOUT_FLOOR_S = 0.25


def connect(url: str, timeout_s: float, **extra: Any) -> aioredis.Redis:
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=max(timeout_s, CONNECT_TIMEOUT_FLOOR_S),
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        **extra,
    )


class RedisStore:
    name = "redis"

    def __init__(self, url: str, *, timeout_ms: int = 50) -> None:
        self.url = url
        self.client = connect(url, timeout_ms / 1000)

    async def get(self, key: str) -> str | None:
        try:
            return await self.client.get(key)
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def set(self, key: str, value: str, ttl: float) -> None:
        try:
            await self.client.set(key, value, px=max(1, int(ttl * 1000)))
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def delete(self, key: str) -> None:
        try:
            await self.client.delete(key)
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def count(self, prefix: str) -> int:
        try:
            n = 0
            async for _ in self.client.scan_iter(match=f"{_glob_escape(prefix)}*", count=1000):
                n += 1
            return n
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def close(self) -> None:
        await self.client.aclose()


def _glob_escape(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)


def describe(exc: BaseException) -> str:
    """One operator-readable line for a Redis failure (auth, TLS and refusals say so)."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "auth" in lowered or "noperm" in lowered or "wrongpass" in lowered:
        return f"authentication failed: {text}"
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        return f"TLS failed: {text}"
    return text
