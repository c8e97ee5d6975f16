"""SessionValidator: is the user behind a session still allowed in?

Read top to bottom: near tier → the cache's get_or_load (shared tier, then one load per user
cluster-wide: cache/single_flight.py) → the directory.
A directory that cannot answer raises DirectoryUnavailable: the caller answers 503, nothing is
cached, nobody is logged out.
"""

from __future__ import annotations

import logging
import time

from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.tiers import ValidationCache, now_ms
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.names import Count, Reason, Source
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
        entry, source, leader = await self.cache.get_or_load(user_id, self._load)
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
            self.metrics.workspace(Count.WORKSPACE_ACCESS_LOST)
            if workspace.tenant_id is not None:
                self.metrics.workspace(Count.WORKSPACE_AUTO_SWITCHES)
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
        sessions_after=verdict.sessions_after,
    )
