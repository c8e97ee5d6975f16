"""The benchmark's variants of our server, composed from the product's classes here so the
product carries no benchmark-only mode:

  redis-only  SharedOnlyCache: no near tier, every request asks Redis (the upstream design)
  none        UncachedCache + DirectValidator: the directory on every request, nothing cached

    python -m bench.variants {redis-only|none} --host 127.0.0.1 --port 3001

Served like `regcopilot serve` (same uvicorn options, same guarded HTTP protocol), from the
same environment variables.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import uvicorn
from fastapi import FastAPI

from regcopilot.auth.validator import SessionValidator
from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.tiers import ValidationCache
from regcopilot.config import load_settings
from regcopilot.names import Source
from regcopilot.web.app import create_app
from regcopilot.web.connections import SERVE_OPTIONS
from regcopilot.web.services import build_services

MODE_VARIABLE = "BENCH_CACHE_MODE"


class SharedOnlyCache(ValidationCache):
    """No near tier: every request asks Redis."""

    def peek(self, user_id: str) -> CacheEntry | None:
        return None

    def _keep_near(self, key: str, entry: CacheEntry, ttl: float) -> None:
        return None


class UncachedCache(SharedOnlyCache):
    """Nothing is cached anywhere; paired with DirectValidator."""

    async def put(self, user_id: str, entry: CacheEntry, ttl: float) -> None:
        return None


class DirectValidator(SessionValidator):
    """The directory on every request, no coalescing."""

    async def validate(self, user_id: str) -> CacheEntry:
        started = time.perf_counter()
        entry = await self._load(user_id)
        self._record(user_id, started, entry, source=Source.DIRECTORY, leader=True)
        return entry


MODES: dict[str, tuple[type[ValidationCache], type[SessionValidator]]] = {
    "tiered": (ValidationCache, SessionValidator),
    "redis-only": (SharedOnlyCache, SessionValidator),
    "none": (UncachedCache, DirectValidator),
}


def app() -> FastAPI:
    """The uvicorn factory: the variant named by BENCH_CACHE_MODE."""
    settings = load_settings()
    logging.basicConfig(level=settings.LOG_LEVEL.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cache_kind, validator_kind = MODES[os.environ[MODE_VARIABLE]]
    services = build_services(settings, cache_kind=cache_kind, validator_kind=validator_kind)
    return create_app(settings, services)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ[MODE_VARIABLE] = args.mode
    settings = load_settings()
    uvicorn.run(
        "bench.variants:app", factory=True, host=args.host, port=args.port, workers=1,
        log_level=settings.LOG_LEVEL.lower(),
        timeout_keep_alive=settings.HTTP_KEEPALIVE_TIMEOUT_SECONDS,
        **SERVE_OPTIONS,
    )


if __name__ == "__main__":
    main()
