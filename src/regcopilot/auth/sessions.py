"""Sessions as records: issue, list, revoke one or all, durably.

Order of every revocation: the database first (the durable truth, whose trigger tells every
instance through the directory's change feed), then the fast path (this process's memory at
once; Redis and its event bus for the instances that hear that sooner). The request path only
ever reads memory: the revoked set is loaded at start, kept current by the feed, and re-read
whenever the feed reconnects, so restarting the app or Redis (even emptied) revokes nothing back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from regcopilot.auth.revocations import RevocationList
from regcopilot.background import stop
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.names import Revocation
from regcopilot.users.directory import DirectoryUnavailable
from regcopilot.users.sessions import Revoked, SessionRecord, SessionRecords

log = logging.getLogger("regcopilot.auth")

# last_seen_at is coarse: one batched UPDATE a minute for every session used in that minute,
# never a write per request.
TOUCH_SECONDS = 60.0
PRUNE_EVERY_TOUCHES = 10  # every ten minutes...
PRUNE_BATCH = 1000  # ...at most this many expired rows per statement...
PRUNE_MAX_BATCHES = 10  # ...and this many statements per pass: bounded work, never a long lock
RELOAD_RETRY_SECONDS = 1.0



class SessionService:
    def __init__(
        self,
        records: SessionRecords,
        revocations: RevocationList,
        metrics: AuthMetrics,
        *,
        touch_seconds: float = TOUCH_SECONDS,
    ) -> None:
        self.records = records
        self.revocations = revocations
        self.metrics = metrics
        self.touch_seconds = touch_seconds
        self.feed = revocations.feed
        self.feed.watch(self.feed_state)
        # The sessions used since the last flush, session id → user id: written on every
        # served request by a plain dict store (authenticate.py; no Python frame of ours per
        # request), read once a minute for last_seen_at and the active-users stamps.
        self.used: dict[str, str] = {}
        # Revocations the database could not take yet (it was down): written by the next pass.
        self._undurable: dict[str, tuple[str, int, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._reload: asyncio.Task[None] | None = None

    # --- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Load every revoked, unexpired session before the first request is served."""
        count = await self.load()
        log.info("Loaded %d revoked session(s) from the directory", count)
        self._task = asyncio.create_task(self._background(), name="session-records")

    async def close(self) -> None:
        await stop(self._reload)
        await stop(self._task)
        try:
            await self.flush_seen()
        except DirectoryUnavailable:
            pass

    async def load(self) -> int:
        revoked = await self.records.revoked()
        for item in revoked:
            self.revocations.remember(item.id, item.expires)
        return len(revoked)

    def feed_state(self, complete: bool) -> None:
        """The directory's change feed proves itself again, or stopped. On every return, re-read
        the revoked set: whatever was revoked while nobody listened is in the table."""
        if complete and (self._reload is None or self._reload.done()):
            self._reload = asyncio.create_task(self._reload_until_done(), name="session-reload")

    async def _reload_until_done(self) -> None:
        while self.feed.complete:
            try:
                await self.load()
                return
            except DirectoryUnavailable as exc:
                log.warning("Could not re-read revoked sessions: %s", exc)
            await asyncio.sleep(RELOAD_RETRY_SECONDS)

    def on_revoked(self, session_id: str, expires: int) -> None:
        """From the change feed: a session revoked by anyone, anywhere."""
        self.revocations.remember(session_id, expires)

    # --- issuing and revoking -----------------------------------------------------------
    async def issued(
        self, session_id: str, user_id: str, expires: int, user_agent: str | None,
        address: str | None,
    ) -> None:
        await self.records.create(session_id, user_id, expires, user_agent, address)
        self.metrics.session_issued()

    async def logout(self, session_id: str, user_id: str, expires: int) -> None:
        """Never fails for the user: with the database down, the session is refused here and
        through Redis at once, and written to the table as soon as it answers."""
        try:
            done = await self.records.revoke(session_id, Revocation.LOGOUT, user_id=user_id,
                                             expires=expires)
        except DirectoryUnavailable as exc:
            log.warning("Logout kept in memory until the directory answers: %s", exc)
            self._undurable[session_id] = (user_id, expires, Revocation.LOGOUT)
            done = None
        if done is not None:
            # The record knows the latest expiry (a sliding session may have been re-issued
            # after the copy of the cookie this sign-out came with).
            expires = max(expires, done.expires)
        await self.revocations.revoke(session_id, expires)
        if done is not None:
            self.metrics.sessions_revoked(Revocation.LOGOUT)

    async def extend(self, session_id: str, user_id: str, expires: int) -> bool:
        """Before a sliding session's cookie is re-issued: its record's expiry moves first,
        so every revocation from now on (which takes the record's expiry) outlives the new
        cookie. False when the session was revoked meanwhile: then no cookie is issued."""
        return await self.records.extend(session_id, user_id, expires)

    async def revoke(self, user_id: str, session_id: str, reason: str) -> bool:
        """Revoke one session of this user; False when it is not theirs or not active."""
        done = await self.records.revoke(session_id, reason, user_id=user_id)
        if done is None:
            return False
        await self._fast([done], reason)
        return True

    async def revoke_all(self, user_id: str, reason: str, keep: str | None = None) -> int:
        done = await self.records.revoke_all(user_id, reason, keep)
        await self._fast(done, reason)
        return len(done)

    async def _fast(self, done: list[Revoked], reason: str) -> None:
        for item in done:
            await self.revocations.revoke(item.id, item.expires)
        if done:
            self.metrics.sessions_revoked(reason, len(done))

    async def active(self, user_id: str) -> list[SessionRecord]:
        return await self.records.active(user_id)

    # --- background ---------------------------------------------------------------------
    async def flush_seen(self) -> int:
        """Stamp last_seen_at for the sessions used since the last flush (one statement), and
        their users as active (stamped even when the database cannot take the write)."""
        used = self.used
        if not used:
            return 0
        batch = dict(used)
        used.clear()  # the same dict: the authenticator holds it
        self.metrics.seen(*set(batch.values()))
        try:
            await self.records.touch(sorted(batch), datetime.now(UTC))
        except DirectoryUnavailable:
            for session_id, user_id in batch.items():
                used.setdefault(session_id, user_id)
            raise
        return len(batch)

    async def _write_undurable(self) -> None:
        for session_id, (user_id, expires, reason) in list(self._undurable.items()):
            if expires <= time.time():
                del self._undurable[session_id]
                continue
            done = await self.records.revoke(session_id, reason, user_id=user_id,
                                             expires=expires)
            del self._undurable[session_id]
            if done is not None:
                self.metrics.sessions_revoked(reason)

    async def prune(self) -> int:
        pruned = 0
        for _ in range(PRUNE_MAX_BATCHES):
            n = await self.records.prune(PRUNE_BATCH)
            pruned += n
            if n < PRUNE_BATCH:
                break
        return pruned

    async def _background(self) -> None:
        passes = 0
        while True:
            await asyncio.sleep(self.touch_seconds)
            passes += 1
            try:
                await self._write_undurable()
                await self.flush_seen()
                if passes % PRUNE_EVERY_TOUCHES == 0:
                    pruned = await self.prune()
                    if pruned:
                        log.info("Pruned %d expired session record(s)", pruned)
            except DirectoryUnavailable as exc:
                log.debug("Session bookkeeping deferred: %s", exc)
