"""AuthMetrics: what the request path records. Recording is a few integer additions; with
Redis, a background task flushes the batch once a second so the cluster shares one set of
numbers, and no request pays a round trip for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from regcopilot.background import stop
from regcopilot.cache.store import AmbiguousStoreError, StoreError
from regcopilot.metrics.cluster import ClusterMetrics
from regcopilot.metrics.counters import (
    ACTIVE_USERS_CAP,
    SESSION_REVOKED_COUNTERS,
    Counters,
    Snapshot,
)
from regcopilot.names import Backend, Count, Reason

log = logging.getLogger("regcopilot.metrics")

FLUSH_SECONDS = 1.0
# An idle instance still says it is alive (the `instances` list), but not every second:
# per-command-billed Redis plans count every call.
HEARTBEAT_TICKS = 10


# The names counted on every request, as plain strs bound once: an enum member costs ~0.6 µs
# per attribute access and a StrEnum key ~70 ns more per dict lookup than a str (measured).
_VALIDATIONS, _HITS, _MISSES, _QUERIES, _DELETED, _BANNED, _COALESCED, _FAILURES = (
    c.value for c in (Count.VALIDATIONS, Count.CACHE_HITS, Count.CACHE_MISSES,
                      Count.DATABASE_QUERIES, Count.DELETED_DETECTED, Count.BANNED_DETECTED,
                      Count.COALESCED, Count.FAILURES)
)


class AuthMetrics:
    def __init__(
        self, cluster: ClusterMetrics | None = None, active_cap: int = ACTIVE_USERS_CAP
    ) -> None:
        self.start_ms = int(time.time() * 1000)
        self.active_cap = active_cap
        self.local = Counters(active_cap)
        self.cluster = cluster
        # The one batch the request path writes: with Redis, the pending batch (merged into
        # this process's totals at flush time, off the request path); without, the totals.
        # An attribute, not a property: read on every request.
        self.live = Counters(active_cap) if cluster is not None else self.local
        self._task: asyncio.Task[None] | None = None
        self._backend: Callable[[], str] = lambda: Backend.IN_MEMORY

    # --- recording (request path) -----------------------------------------------------
    @property
    def _pending(self) -> Counters | None:
        return None if self.cluster is None else self.live

    def login(self, user_id: str) -> None:
        now_ms = int(time.time() * 1000)
        c = self.live
        c.login(now_ms)
        c.seen(user_id, now_ms)

    def validation(
        self, user_id: str, *, hit: bool, ms: float, ok: bool, queried: bool, reason: str | None
    ) -> None:
        c = self.live
        v = c.values
        v[_VALIDATIONS] += 1
        v[_HITS if hit else _MISSES] += 1
        if queried:
            v[_QUERIES] += 1
            if reason in (Reason.DELETED, Reason.NOT_FOUND):
                v[_DELETED] += 1
            elif reason == Reason.BANNED:
                v[_BANNED] += 1
        elif not hit:
            v[_COALESCED] += 1
        if not ok:
            v[_FAILURES] += 1
        c.observe(ms)
        c.seen(user_id, int(time.time() * 1000))

    def seen(self, *user_ids: str) -> None:
        """These users were served just now (an answer judged, or the sessions used in the
        last minute): the active-users count's stamps."""
        c, now_ms = self.live, int(time.time() * 1000)
        for user_id in user_ids:
            c.seen(user_id, now_ms)

    def migrated(self) -> None:
        self.live.values[Count.MIGRATED_SESSIONS] += 1

    def session_issued(self) -> None:
        self.live.values[Count.SESSIONS_ISSUED] += 1

    def sessions_revoked(self, reason: str, n: int = 1) -> None:
        name = SESSION_REVOKED_COUNTERS.get(reason)
        if name is not None:
            self.live.values[name] += n

    def workspace(self, counter: str) -> None:
        """workspaceSwitches | workspaceAutoSwitches | workspaceAccessLost."""
        self.live.values[counter] += 1

    def process_totals(self) -> dict[str, int]:
        """This process's own counts so far, the unflushed batch included."""
        totals = dict(self.local.values)
        if self._pending is not None:
            for name, n in self._pending.values.items():
                totals[name] += n
        return totals

    # --- cluster flushing -------------------------------------------------------------
    def start(self, backend: Callable[[], str]) -> None:
        self._backend = backend
        if self.cluster is not None:
            self._task = asyncio.create_task(self._flush_loop(), name="metrics-flush")

    async def close(self) -> None:
        if self._task is not None:
            await stop(self._task)
            with contextlib.suppress(StoreError):
                await self.flush()
        if self.cluster is not None:
            await self.cluster.close()

    async def flush(self) -> None:
        assert self.cluster is not None and self._pending is not None
        batch, self.live = self.live, Counters(self.active_cap)
        self.local.merge(batch)
        try:
            await self.cluster.flush(batch, self._backend())
        except AmbiguousStoreError:
            # The pipeline may have been applied before the reply timed out: adding the batch
            # again could count it twice, so it is dropped (an undercount of one second).
            raise
        except StoreError:
            self._merge_back(batch)
            raise

    def _merge_back(self, batch: Counters) -> None:
        """Keep a failed batch for the next flush: counts are not lost while Redis is away."""
        assert self._pending is not None
        self._pending.merge(batch)

    async def _flush_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            ticks += 1
            assert self._pending is not None
            if self._pending.empty and ticks % HEARTBEAT_TICKS:
                continue  # idle: only the instance heartbeat, every HEARTBEAT_TICKS seconds
            try:
                await self.flush()
                if ticks % 60 == 0 and self.cluster is not None:
                    await self.cluster.prune_hours()
            except StoreError as exc:
                log.debug("Metrics flush deferred: %s", exc)

    # --- reading ----------------------------------------------------------------------
    async def snapshot(self) -> Snapshot:
        """Cluster totals when Redis answers; this process's own numbers otherwise."""
        if self.cluster is not None:
            with contextlib.suppress(StoreError):
                await self.flush()  # so every instance reports the same totals right now
                return await self.cluster.read()
        snap = self.local.snapshot(self.start_ms)
        snap.scope = "process"
        return snap
