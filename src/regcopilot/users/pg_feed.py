"""How a process hears PostgreSQL's change log, and shows that it does.

Two modes, chosen on every (re)connect and reported through the FeedState:

- **listen** (`listen-direct` on DATABASE_DIRECT_URL): LISTEN on a dedicated connection. It is
  used only after a round trip proves it: a NOTIFY sent through the directory's pool (the path
  every change takes) must come back to the listener within PROBE_SECONDS. Behind a
  transaction-mode pooler it does not — LISTEN ran on a server connection the pooler has since
  handed to another client — and the feed falls back to polling.
- **poll**: read the log past the cursor every CHANGE_FEED_POLL_SECONDS (≤ 1 s): one indexed
  query per process per period, whatever the number of users.

While listening, the keep-alive reads the log's head (`max(seq)`, one index probe) every
HEAD_CHECK_SECONDS. A head this process has not applied, still unapplied DEAF_GRACE_SECONDS
later with nothing heard left to apply, was never announced to it: the listener is deaf (a
pooled LISTEN, a proxy or failover that kept the socket and dropped the session). The gap is
replayed at once, the feed stops counting as complete (one WARNING), and the listener
reconnects and proves itself again. A change is therefore applied within HEAD_CHECK_SECONDS +
DEAF_GRACE_SECONDS + one replay even by a deaf listener: inside the 2 s lockout bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, Protocol

import asyncpg

from regcopilot.background import cancelling
from regcopilot.feed import FeedState
from regcopilot.names import FeedMode
from regcopilot.users.changes import Change, FeedCursor
from regcopilot.users.directory import (
    ChangeCallback,
    DirectoryUnavailable,
    RevokedCallback,
    dispatch,
)
from regcopilot.users.pg_errors import UNAVAILABLE
from regcopilot.users.schema import NOTIFY_CHANNEL

log = logging.getLogger("regcopilot.users")

RECONNECT_SECONDS = 0.5
# The keep-alive: a hung server closes nothing, so only a query proves the line is live; it
# reads the log's head, which also proves the notifications arrive. 1 s (was a SELECT 1 every
# 2 s) so that a deaf listener still applies a change within the 2 s bound.
HEAD_CHECK_SECONDS = 1.0
# A committed change is announced within milliseconds (bench/lockout.py: 10 ms p50, 16 ms p99
# from commit to refusal on every instance); a head still unapplied this long after it was read
# was not announced to this listener.
DEAF_GRACE_SECONDS = 0.25
# The LISTEN round trip at (re)connect; a NOTIFY through a healthy pooler comes back in ms.
PROBE_SECONDS = 1.0
# While a gap is open, the log is re-read this often: a change still committing lands within
# milliseconds, so the feed is proved complete again quickly.
GAP_RECHECK_SECONDS = 0.05
PRUNE_EVERY_SECONDS = 60.0
# DATABASE_DIRECT_URL unreachable (Supabase's direct connection is IPv6-only without an add-on):
# the log is polled through DATABASE_URL meanwhile, and the direct connection tried this often.
DIRECT_RETRY_SECONDS = 5.0
# How the listening connection shows in pg_stat_activity (operators and tests find it by it).
LISTENER_NAME = "regcopilot-listener"
LOST = ""  # queued by the termination listener: never a user id
# A round-trip payload. Sequence 0 is never a change (the log's numbers start at 1), so a
# listener of an older version, mid rolling upgrade, skips it as already applied, silently.
PROBE = "0:probe:"
HEAD = "SELECT max(seq) FROM public.regcopilot_user_changes"
AFTER = "SELECT seq, user_id FROM public.regcopilot_user_changes WHERE seq > $1 ORDER BY seq"


class FeedSource(Protocol):
    """What the feed needs of the PostgreSQL directory (users/postgres.py)."""

    url: str
    direct_url: str | None
    timeout: float
    statement_cache_size: int
    poll_seconds: float

    def connection(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]: ...
    async def notify(self, channel: str, payload: str) -> None: ...
    async def prune_log(self) -> int: ...


class Deaf(Exception):
    """The listener's connection answers, but the announcements do not reach it."""


class PostgresFeed:
    def __init__(
        self,
        directory: FeedSource,
        cursor: FeedCursor,
        on_change: ChangeCallback,
        state: FeedState,
        on_revoked: RevokedCallback | None,
    ) -> None:
        self.directory = directory
        self.cursor = cursor
        self.on_change = on_change
        self.on_revoked = on_revoked
        self.state = state
        self.listener: asyncpg.Connection | None = None  # tests make it deaf on purpose
        self.attempts = 0  # connections tried: retries during an outage show here, not in the log
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._probes: dict[str, asyncio.Event] = {}
        self._next_prune = 0.0

    # --- the connection --------------------------------------------------------------------
    async def run(self) -> None:
        """Reconnect forever; after every (re)connect choose the mode and replay the log from
        the cursor before the feed counts as complete."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                try:
                    conn, mode = await self._open()
                except UNAVAILABLE as exc:
                    if self.directory.direct_url is None or cancelling():
                        raise
                    conn, mode = await self._poll_until_direct(exc)
                # Listening first, then replaying: a change committed in between is both
                # replayed and announced, and the cursor applies it once.
                await self._replay(conn, loud=True)
                self._settle()
                if mode is FeedMode.POLL:
                    await self._poll(conn)
                else:
                    await self._listen(conn)
            except (*UNAVAILABLE, DirectoryUnavailable) as exc:
                if cancelling():
                    raise asyncio.CancelledError from exc
                self.state.lost(f"listener connection lost ({exc or type(exc).__name__})")
            except Deaf as exc:
                self.state.lost(str(exc))
            finally:
                self.listener = None
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _open(self) -> tuple[asyncpg.Connection, FeedMode]:
        conn = await self._connect()
        try:
            # LISTEN waits for a server connection behind a pooler, and a hung server answers
            # nothing: bounded, so a feed that cannot start is said (lost), not silently
            # "starting" (seen: 13 s with a session pooler's connections all held).
            async with asyncio.timeout(self.directory.timeout + PROBE_SECONDS):
                return conn, await self._choose_mode(conn)
        except BaseException:
            conn.terminate()
            raise

    async def _connect(self) -> asyncpg.Connection:
        d = self.directory
        direct = d.direct_url is not None
        self.attempts += 1
        conn = await asyncpg.connect(
            d.direct_url or d.url, timeout=d.timeout,
            # Through a transaction pooler (DATABASE_URL) prepared statements must stay off.
            statement_cache_size=100 if direct else d.statement_cache_size,
            server_settings={"application_name": LISTENER_NAME},
        )
        self._queue = asyncio.Queue()
        conn.add_termination_listener(lambda _c: self._queue.put_nowait(LOST))
        self.listener = conn
        return conn

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(PROBE):
            heard = self._probes.get(payload[len(PROBE):])
            if heard is not None:
                heard.set()
            return  # another process's round trip, or a late one of ours
        self._queue.put_nowait(payload)

    async def _choose_mode(self, conn: asyncpg.Connection) -> FeedMode:
        d = self.directory
        source = "DATABASE_DIRECT_URL" if d.direct_url else "DATABASE_URL"
        await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        if await self._round_trip():
            mode = FeedMode.LISTEN_DIRECT if d.direct_url else FeedMode.LISTEN
            self.state.use(mode, f"a LISTEN round trip was heard on {source}")
            return mode
        await conn.remove_listener(NOTIFY_CHANNEL, self._notified)
        fix = ("point DATABASE_DIRECT_URL at the database itself, not a pooler" if d.direct_url
               else "set DATABASE_DIRECT_URL to the direct connection (Supabase: port 5432) "
               "to listen instead")
        self.state.use(FeedMode.POLL, (
            f"a NOTIFY was not heard by LISTEN on {source} within {PROBE_SECONDS:g} s (a "
            "transaction-mode pooler hands LISTEN's server connection to other clients): "
            f"reading the change log every {d.poll_seconds:g} s; {fix}"), warn=True)
        return FeedMode.POLL

    async def _round_trip(self) -> bool:
        token = uuid.uuid4().hex
        heard = self._probes[token] = asyncio.Event()
        try:
            # Through the directory's pool: the path every change is written by.
            await self.directory.notify(NOTIFY_CHANNEL, PROBE + token)
            async with asyncio.timeout(PROBE_SECONDS):
                await heard.wait()
            return True
        except TimeoutError:
            return False
        finally:
            del self._probes[token]

    # --- the two modes ---------------------------------------------------------------------
    async def _listen(self, conn: asyncpg.Connection) -> None:
        cursor, queue = self.cursor, self._queue
        next_check = time.monotonic() + HEAD_CHECK_SECONDS
        behind: int | None = None  # a head read but not applied yet
        while True:
            wait = max(0.0, next_check - time.monotonic())
            if not cursor.complete:
                wait = min(wait, GAP_RECHECK_SECONDS)
            try:
                payload: str | None = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                payload = None
            if payload == LOST:
                raise ConnectionResetError("listener connection closed")
            if payload is not None:
                change = _parse(payload)
                if change is not None:
                    was_complete = cursor.complete
                    await self._deliver(change)
                    if was_complete and not cursor.complete:
                        self.state.unsure(f"a gap behind change {change.seq}: re-reading the log")
            elif not cursor.complete:
                await self._fill(conn)
            if time.monotonic() < next_check:
                continue
            head = await conn.fetchval(HEAD, timeout=self.directory.timeout)
            next_check = time.monotonic() + HEAD_CHECK_SECONDS
            if head is None or cursor.seen(head):
                behind = None
                if cursor.complete:
                    self.state.proved()
                else:
                    await self._fill(conn)
            elif behind is None or cursor.seen(behind) or not queue.empty():
                # Maybe still on its way, or heard and waiting its turn (a bulk change
                # announces thousands at once): look again after the grace.
                behind = int(head) if behind is None or cursor.seen(behind) else behind
                next_check = time.monotonic() + DEAF_GRACE_SECONDS
            else:
                await self._replay(conn, loud=False)  # the bound first, then the reconnect
                raise Deaf(
                    f"change {behind} was in the log for {DEAF_GRACE_SECONDS:g} s and never "
                    "announced to this process (LISTEN on a pooled connection, or a proxy or "
                    "failover that kept the connection and lost its session) - replayed it; "
                    "listening again on a new connection")
            await self._prune_now_and_then()

    async def _poll(self, conn: asyncpg.Connection) -> None:
        period = self.directory.poll_seconds
        while True:
            await asyncio.sleep(period)
            while not self._queue.empty():  # announcements heard before UNLISTEN: the log has them
                if self._queue.get_nowait() == LOST:
                    raise ConnectionResetError("feed connection closed")
            await self._fill(conn)
            await self._prune_now_and_then()

    async def _poll_until_direct(self, exc: BaseException
                                 ) -> tuple[asyncpg.Connection, FeedMode]:
        """The direct connection cannot be had: poll the log through the directory's pool (the
        pooler is fine for that), trying the direct connection in the background every
        DIRECT_RETRY_SECONDS (a connect that hangs must not stop the polls); its connection
        and mode once it answers."""
        period = self.directory.poll_seconds
        self.state.use(FeedMode.POLL, (
            f"DATABASE_DIRECT_URL unreachable ({type(exc).__name__}): reading the change log "
            f"through DATABASE_URL every {period:g} s, trying the direct connection again every "
            f"{DIRECT_RETRY_SECONDS:g} s"), warn=True)
        attempt: asyncio.Task[tuple[asyncpg.Connection, FeedMode]] | None = None
        next_try = time.monotonic() + DIRECT_RETRY_SECONDS
        try:
            while True:
                async with self.directory.connection() as conn:
                    await self._fill(conn)
                await self._prune_now_and_then()
                if attempt is not None and attempt.done():
                    if attempt.exception() is None:
                        direct, attempt = attempt.result(), None
                        return direct
                    if not isinstance(attempt.exception(), UNAVAILABLE):
                        attempt.result()  # a bug, not an outage: raise it
                    attempt, next_try = None, time.monotonic() + DIRECT_RETRY_SECONDS
                if attempt is None and time.monotonic() >= next_try:
                    attempt = asyncio.create_task(self._open(), name="feed-direct-connect")
                await asyncio.sleep(period)
        finally:
            if attempt is not None:
                attempt.cancel()
                with contextlib.suppress(BaseException):
                    (await attempt)[0].terminate()

    # --- the log ---------------------------------------------------------------------------
    async def _deliver(self, change: Change) -> None:
        if self.cursor.apply(change.seq):
            result = dispatch(change, self.on_change, self.on_revoked)
            if asyncio.iscoroutine(result):
                await result

    async def _replay(self, conn: asyncpg.Connection, *, loud: bool) -> int:
        """Apply every logged change after the cursor's position; how many were new."""
        rows = await conn.fetch(AFTER, self.cursor.replay_from, timeout=self.directory.timeout)
        new = 0
        for seq, user_id in rows:
            if not self.cursor.seen(seq):
                new += 1
                await self._deliver(Change(int(seq), user_id))
        if new:
            # Polling applies changes this way all day long: only a recovery is news.
            log.log(logging.INFO if loud else logging.DEBUG,
                    "Replayed %d change(s) from the change log", new)
        return new

    async def _fill(self, conn: asyncpg.Connection) -> None:
        """Re-read the log; holes it still lacks are forgotten after a grace period (a
        rolled-back change never appears)."""
        await self._replay(conn, loud=False)
        self._settle()

    def _settle(self) -> None:
        if self.cursor.complete or self.cursor.expire_holes():
            self.state.proved()
        else:
            self.state.unsure("a gap in the change log: re-reading it")

    async def _prune_now_and_then(self) -> None:
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            await self.directory.prune_log()


def _parse(payload: str) -> Change | None:
    seq, sep, user_id = payload.partition(":")
    if not sep or not seq.isdigit() or not user_id:
        log.warning("Ignoring a malformed change announcement")
        return None
    return Change(int(seq), user_id)
