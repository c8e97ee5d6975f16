"""SessionValidator: is the user behind a session still allowed in?

Read top to bottom: near tier → the cache's get_or_load (shared tier, then one load per user
cluster-wide: cache/single_flight.py) → the directory.
A directory that cannot answer raises DirectoryUnavailable: the caller answers 503, nothing is
cached, nobody is logged out. Validation never writes to the directory.
"""

from __future__ import annotations

import logging
import time
from logging import DEBUG
from typing import NamedTuple

from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.memory import Held
from regcopilot.cache.tiers import ValidationCache, now_ms
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.names import Count, Reason, Source
from regcopilot.users.changes import Change
from regcopilot.users.directory import (
    CurrentWorkspace,
    User,
    UserDirectory,
    Verdict,
    judge,
)

log = logging.getLogger("regcopilot.cache")

MAX_ATTEMPTS = 2

CACHED, COALESCED, DIRECTORY = Source.CACHED, Source.COALESCED, Source.DIRECTORY


class Asked(NamedTuple):
    at: int  # ms since the epoch
    seq: int  # the change-log position


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
        """validate()'s near-tier hit, counted (metrics/counters.py: a near-tier hit is
        counted, not timed), without a coroutine: what a warm request asks (one awaited call
        less a request). None: ask validate()."""
        entry = self.cache.peek(user_id)
        if entry is not None:
            self.near_hit()
            if not entry.is_valid:
                self.metrics.live.near_failures += 1
        return entry

    def held(self, user_id: str) -> Held | None:
        """The near tier's handle on the entry cached() just gave (not counted again): for
        an answer kept beside it, reused while the handle is live."""
        return self.cache.held(user_id)

    def near_hit(self) -> None:
        """A validation answered by the near tier, counted and logged: by cached(), or by a
        caller that saw it through a kept handle (a reused answer, always a valid entry)."""
        self.metrics.live.near_hits += 1
        if log.isEnabledFor(DEBUG):  # one call, not log.debug's two, on every request
            log.debug("Using cached validation result")

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
        """Ask the directory; if the user changed while we asked, ask again before caching.
        Read-only: a session whose recorded workspace is not the one it is served in (lost,
        or none recorded) is answered as it stands, and says so (`workspace_moved`); the
        writes that follow are auth/session_workspace.py's, after the answer."""
        for _ in range(MAX_ATTEMPTS):
            asked = self.mark()
            # One statement: the account and the session's workspace (DirectoryUnavailable
            # propagates).
            user, workspace = await self.directory.get_with_workspace(user_id)
            entry, cached = await self._settle(user_id, user, workspace, asked)
            if cached:
                return entry
        return entry  # still changing: answer, but do not cache a moving target

    def mark(self) -> Asked:
        """When an answer is asked for, and the change-log position it then reflects at least
        (every change up to it has been applied here)."""
        return Asked(now_ms(), self.cache.freshness.position)

    async def settle(
        self, user_id: str, user: User | None, workspace: CurrentWorkspace, asked: Asked
    ) -> CacheEntry:
        """An answer read after a write of the caller's own (the personal workspace given to
        a session without one): judged and cached like a load's, with no second query."""
        entry, _ = await self._settle(user_id, user, workspace, asked)
        return entry

    async def _settle(
        self, user_id: str, user: User | None, workspace: CurrentWorkspace, asked: Asked
    ) -> tuple[CacheEntry, bool]:
        """The answer, and whether it was cached: not if the user changed since `asked`."""
        verdict = judge(user, self.default_tenant, workspace=workspace)
        if verdict.reason == Reason.NO_WORKSPACE and workspace.lost:
            self.metrics.workspace(Count.WORKSPACE_ACCESS_LOST)  # none left to move to
        entry = _entry(verdict, asked.at, asked.seq, workspace if user is not None else None)
        if self.cache.changed_since(user_id, asked.at) or self.cache.freshness.stale(
                user_id, entry):
            return entry, False
        await self.cache.put(user_id, entry, self.cache.entry_ttl(entry, verdict.banned_until))
        return entry, True

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


def _entry(
    verdict: Verdict, asked_at: int, seq: int | None = None,
    workspace: CurrentWorkspace | None = None,
) -> CacheEntry:
    # Only an answer about the session's workspace (valid, or none left) reports a move.
    moved = (workspace is not None and workspace.moved
             and (verdict.valid or verdict.reason == Reason.NO_WORKSPACE))
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
        workspace_moved=moved,
        stored_tenant_id=workspace.stored_id if moved and workspace is not None else None,
    )
