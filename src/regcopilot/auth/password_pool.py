"""Password work off the event loop: a few threads, a bounded queue, and a refusal at once
when the queue is full.

bcrypt releases the GIL while it hashes, so the threads run beside the event loop. Measured on
the 2-core machine kind (bench/login_storm.py, cost 12): with verification on the loop, 8
concurrent sign-ins held the server's event loop up by 2.1 s at p99 and 32 got sign-ins 503s
(the directory timeout fired while the loop was busy); through this pool the loop's lag p99
stays at 7-14 ms and nothing is refused (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from regcopilot.auth.passwords import Hasher

log = logging.getLogger("regcopilot.auth")

T = TypeVar("T")

# Hashing threads run at a lower CPU priority than the event loop's thread (Linux nice is per
# thread), so when every core is busy hashing the scheduler favours the loop. Measured once
# (bench/login_storm.py, load average ~4): /api/me p99 during 8- and 32-way storms was 13.2 and
# 17.0 ms with nice 0, 2.6 and 3.3 ms with nice 10. With other programs loading the machine the
# difference drowns in their noise. They hold the GIL only around each bcrypt call (bcrypt
# releases it while hashing), so a preempted worker cannot hold the loop up for long.
WORKER_NICE = 10
BUSY_LOG_EVERY_SECONDS = 10.0


class PasswordBusy(Exception):
    """Every worker busy and the queue full: answer 503 now rather than wait."""

    retry_after = 1


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: fine
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)


def default_workers() -> int:
    """One per core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class PasswordPool:
    def __init__(self, hasher: Hasher, workers: int, queue_size: int) -> None:
        self.hasher = hasher
        self.workers = workers
        self.capacity = workers + queue_size  # admitted at once: running plus waiting
        self.admitted = 0
        self.refused = 0
        self._last_busy_log = 0.0
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="password", initializer=_lower_priority
        )

    @property
    def full(self) -> bool:
        return self.admitted >= self.capacity

    async def verify(self, password: str, stored: str | None) -> bool:
        return await self._run(self.hasher.verify, password, stored)

    async def hash(self, password: str) -> str:
        return await self._run(self.hasher.hash, password)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self.full:
            self._refuse()
        loop = asyncio.get_running_loop()
        self.admitted += 1
        job: Future[T] = self._executor.submit(fn, *args)

        def release(_: Future[T]) -> None:
            # Released when the thread is done, not when the awaiting request gives up: a
            # client that disconnects must not let more work pile up than the pool admits.
            with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                loop.call_soon_threadsafe(self._release)

        job.add_done_callback(release)
        return await asyncio.wrap_future(job)

    def _release(self) -> None:
        self.admitted -= 1

    def _refuse(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_busy_log >= BUSY_LOG_EVERY_SECONDS:
            self._last_busy_log = now
            log.warning(
                "Password queue full (%d workers, %d admitted): sign-ins answered 503 "
                "(%d so far)", self.workers, self.capacity, self.refused,
            )
        raise PasswordBusy

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
