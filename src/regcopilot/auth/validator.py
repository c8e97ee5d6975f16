"""SessionValidator: is the user behind a session still allowed in?

Read top to bottom: near tier → shared tier → (one caller per user, cluster-wide) directory.
A directory that cannot answer raises DirectoryUnavailable: the caller answers 503, nothing is
cached, nobody is logged out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.store import StoreError
from regcopilot.cache.tiers import ValidationCache, now_ms
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.names import Reason, Source
from regcopilot.users.changes import Change
from regcopilot.users.directory import (
    CurrentWorkspace,
    DirectoryUnavailable,
    UserDirectory,
    Verdict,
    judge,
)
from regcopilot.workspaces.store import WorkspaceStore

log = logging.getLogger("regcopilot.cache")

LOCK_SECONDS = 2.0  # a holder that dies frees the lock after this
LOCK_WAIT_SECONDS = 0.5  # then waiters stop waiting and ask the directory themselves
LOCK_POLL_SECONDS = 0.005
MAX_ATTEMPTS = 2

CACHED, COALESCED, DIRECTORY = Source.CACHED, Source.COALESCED, Source.DIRECTORY


class SessionValidator:
    def __init__(
        self,
        cache: ValidationCache,
        directory: UserDirectory,
        metrics: AuthMetrics,
        default_tenant: str,
    ) -> None:
        self.cache = cache
        self.directory = directory
        self.metrics = metrics
        self.default_tenant = default_tenant
        self._inflight: dict[str, asyncio.Future[tuple[CacheEntry, str]]] = {}

    def cached(self, user_id: str) -> CacheEntry | None:
        """validate()'s near-tier hit, counted the same, without a coroutine: what a warm
        request asks (one awaited call less a request). None: ask validate()."""
        started = time.perf_counter()
        entry = self.cache.peek(user_id)
        if entry is not None:
            log.debug("Using cached validation result")
            self.metrics.cache_hit(user_id, (time.perf_counter() - started) * 1000,
                                   entry.is_valid)
        return entry

    async def validate(self, user_id: str) -> CacheEntry:
        entry = self.cached(user_id)
        if entry is not None:
            return entry
        started = time.perf_counter()
        entry, source, leader = await self._single_flight(user_id)
        self._record(user_id, started, entry, source=source, leader=leader)
        return entry

    def _record(
        self, user_id: str, started: float, entry: CacheEntry, *, source: str, leader: bool
    ) -> None:
        hit = source == CACHED
        log.debug(
            "Using cached validation result" if hit
            else "Cache miss - validating user against database"
        )
        self.metrics.validation(
            user_id,
            hit=hit,
            ms=(time.perf_counter() - started) * 1000,
            ok=entry.is_valid,
            queried=leader and source == DIRECTORY,
            reason=entry.reason,
        )

    async def _single_flight(self, user_id: str) -> tuple[CacheEntry, str, bool]:
        """Concurrent near-tier misses for one user in this process share one lookup:
        one Redis GET, and at most one directory query."""
        running = self._inflight.get(user_id)
        if running is not None:
            entry, source = await asyncio.shield(running)
            return entry, source, False
        future: asyncio.Future[tuple[CacheEntry, str]] = (
            asyncio.get_running_loop().create_future()
        )
        self._inflight[user_id] = future
        try:
            result = await self._lookup(user_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(result)
            return result[0], result[1], True
        finally:
            del self._inflight[user_id]

    async def _lookup(self, user_id: str) -> tuple[CacheEntry, str]:
        entry = await self.cache.get_shared(user_id)
        if entry is not None:
            return entry, CACHED
        return await self._load_once_in_cluster(user_id)

    async def _load_once_in_cluster(self, user_id: str) -> tuple[CacheEntry, str]:
        """Across processes, a short Redis lock lets one load while the others watch Redis."""
        if not self.cache.shared_usable:
            return await self._load(user_id), DIRECTORY
        store = self.cache.shared
        assert store is not None
        lock_key = self.cache.lock_prefix + user_id
        try:
            token = await store.try_lock(lock_key, LOCK_SECONDS)
        except StoreError:
            # Redis is sick: no holder can fill it either, so waiting would only cost time.
            return await self._load(user_id), DIRECTORY
        if token is None:
            entry = await self._wait_for_holder(user_id)
            if entry is not None:
                return entry, COALESCED
            return await self._load(user_id), DIRECTORY
        try:
            entry = await self.cache.get_shared(user_id)  # filled while we took the lock?
            if entry is not None:
                return entry, COALESCED
            return await self._load(user_id), DIRECTORY
        finally:
            with contextlib.suppress(StoreError):
                await store.unlock(lock_key, token)

    async def _wait_for_holder(self, user_id: str) -> CacheEntry | None:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while time.monotonic() < deadline and self.cache.shared_usable:
            await asyncio.sleep(LOCK_POLL_SECONDS)
            entry = await self.cache.get_shared(user_id)
            if entry is not None:
                return entry
            if not await self._lock_held(user_id):
                # The holder is done but its answer is gone (another instance's change notice
                # dropped it): waiting on would sit out the whole LOCK_WAIT_SECONDS (measured:
                # 1 access-lost trial in 30 took 516 ms). One last look, then ask ourselves.
                return await self.cache.get_shared(user_id)
        return None

    async def _lock_held(self, user_id: str) -> bool:
        assert self.cache.shared is not None
        try:
            return await self.cache.shared.exists(self.cache.lock_prefix + user_id)
        except StoreError:
            return True  # cannot tell: keep waiting, as before

    async def _load(self, user_id: str) -> CacheEntry:
        """Ask the directory; if the user changed while we asked, ask again before caching."""
        freshness = self.cache.freshness
        for _ in range(MAX_ATTEMPTS):
            asked_at = now_ms()
            # Every change up to here has been applied, so the answer reflects at least them.
            seq = freshness.position
            # One statement: the account and the session's workspace (DirectoryUnavailable
            # propagates).
            user, workspace = await self.directory.get_with_workspace(user_id)
            verdict = judge(user, self.default_tenant, workspace=workspace)
            if verdict.reason == Reason.NO_WORKSPACE and workspace.stored_id is None:
                # A session from before workspaces existed (or minted by another sign-in
                # front end): the user gets the personal workspace a sign-in would give.
                assert user is not None
                workspace = await WorkspaceStore(self.directory).ensure_personal(user)
                verdict = judge(user, self.default_tenant, workspace=workspace)
            if user is not None and workspace.moved:
                await self._record_move(user_id, workspace)
            entry = _entry(verdict, asked_at, seq)
            if not (self.cache.changed_since(user_id, asked_at)
                    or freshness.stale(user_id, entry)):
                await self.cache.put(
                    user_id, entry, self.cache.entry_ttl(entry, verdict.banned_until)
                )
                return entry
        return entry  # still changing: answer, but do not cache a moving target

    async def _record_move(self, user_id: str, workspace: CurrentWorkspace) -> None:
        """The stored current workspace is not the one the session is in (access to it was
        lost, or none was stored yet): store the new one. Its trigger tells every instance,
        which then reloads once and finds nothing left to move."""
        if workspace.lost:
            self.metrics.workspace("workspaceAccessLost")
            if workspace.tenant_id is not None:
                self.metrics.workspace("workspaceAutoSwitches")
        if workspace.tenant_id is None:
            return  # nothing to switch to: the session is refused
        try:
            await WorkspaceStore(self.directory).set_current(user_id, workspace.tenant_id)
        except (DirectoryUnavailable, ValueError) as exc:
            # The answer is right either way; the next load tries the write again.
            log.warning("Could not store the new current workspace of %s: %s", user_id, exc)

    async def refresh(self, user_id: str) -> CacheEntry:
        """Drop what is cached and ask again: the session knows of a newer workspace switch
        than the cached answer (its change notice is still on the way here)."""
        await self.cache.invalidate(user_id)
        return await self.validate(user_id)

    async def user_changed(self, user_id: str) -> None:
        """Drop a user's cached answer everywhere now (an admin action made here); the change
        log's own announcement follows."""
        await self.cache.invalidate(user_id)

    async def changed(self, change: Change) -> None:
        """Called for every change the directory's log announces, from whoever made it."""
        await self.cache.applied(change)


def _entry(verdict: Verdict, asked_at: int, seq: int | None = None) -> CacheEntry:
    return CacheEntry(
        is_valid=verdict.valid,
        timestamp=asked_at,
        tenant_id=verdict.tenant_id,
        reason=verdict.reason,
        role=verdict.role,
        banned_until=(
            int(verdict.banned_until.timestamp() * 1000) if verdict.banned_until else None
        ),
        seq=seq,
        tenant_role=verdict.tenant_role,
        tenant_name=verdict.tenant_name,
    )


class DirectValidator(SessionValidator):
    """CACHE_MODE=none (the benchmark's baseline): the directory on every request, no
    coalescing, nothing cached."""

    async def validate(self, user_id: str) -> CacheEntry:
        started = time.perf_counter()
        entry = await self._load(user_id)
        self._record(user_id, started, entry, source=DIRECTORY, leader=True)
        return entry
