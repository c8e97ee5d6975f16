"""A bounded load of signed-in clients against an in-process app, with its latency
samples (shared by the fault tests)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tests.support import COOKIE, eventually

USERS = 12


CONCURRENCY = 4


THINK_SECONDS = 0.005  # per client between requests: a load, not a CPU hog for the suite


@dataclass
class Sample:
    at: float  # monotonic start
    ms: float
    status: int


@dataclass
class Load:
    """A bounded client: CONCURRENCY workers cycling through signed-in users."""

    app: object
    cookies: list[str]
    max_requests: int = 5000
    max_seconds: float = 30.0
    samples: list[Sample] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _worker(self, offset: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        i = offset
        while not self.stop.is_set() and len(self.samples) < self.max_requests:
            if time.monotonic() > deadline:
                break
            cookie = self.cookies[i % len(self.cookies)]
            i += 1
            started = time.monotonic()
            r = await self.app.client.get(  # type: ignore[attr-defined]
                "/api/me", headers={"cookie": f"{COOKIE}={cookie}"}
            )
            self.samples.append(Sample(started, (time.monotonic() - started) * 1000,
                                       r.status_code))
            await asyncio.sleep(THINK_SECONDS)

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._worker(n)) for n in range(CONCURRENCY)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self._tasks)

    async def more(self, n: int, timeout: float = 10.0) -> None:
        """Wait until n more requests have completed."""
        target = len(self.samples) + n
        await eventually(lambda: len(self.samples) >= min(target, self.max_requests)
                         or all(t.done() for t in self._tasks), timeout=timeout)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at < end]


def stats(samples: list[Sample]) -> dict[str, float]:
    ms = sorted(s.ms for s in samples)
    if not ms:
        return {"n": 0, "max": 0.0, "p99": 0.0, "p50": 0.0}
    return {"n": len(ms), "max": round(ms[-1], 1), "p99": round(ms[int(len(ms) * 0.99)], 1),
            "p50": round(ms[len(ms) // 2], 1)}


async def sign_in_users(app, n: int = USERS) -> list[str]:
    cookies = []
    for i in range(n):
        await app.add_user(f"user{i}@example.com")
        app.client.cookies.clear()
        r = await app.login(f"user{i}@example.com")
        assert r.status_code == 200, r.text
        cookies.append(app.client.cookies.get(COOKIE))
    app.client.cookies.clear()
    return cookies
