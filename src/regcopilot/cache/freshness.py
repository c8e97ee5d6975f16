"""How long a cached validation may be trusted: freshness from events, the TTL as a safety net.

Every change to a user is a numbered entry in the directory's change log, and every cached
entry records the log position its answer reflects (`seq`: all changes up to it had been
applied by the process that asked the directory). A process that has applied the log without
a gap since an entry's `seq` knows whether that user changed since: if not, the entry is still
the directory's answer, and it is trusted up to CACHE_MAX_AGE_SECONDS. Whenever that cannot be
proved — the feed is down or has a gap, the entry predates what this process can see of the
log, or it carries no `seq` (an upstream tier wrote it) — only CACHE_TTL_SECONDS apply, as
before.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import StrEnum

from regcopilot.cache.entry import CacheEntry
from regcopilot.users.changes import Change, FeedCursor
from regcopilot.users.directory import LogSnapshot

# Users whose newest change is remembered; forgetting one raises the floor past its change, so
# entries older than that fall back to the short TTL (never to a stale answer).
MAX_TRACKED_USERS = 100_000


class FreshnessModel(StrEnum):
    EVENTS = "event-driven"  # the feed is complete: entries live up to the max age
    TTL = "ttl"  # completeness cannot be proved: the short TTL


class Freshness:
    def __init__(self, ttl: float, max_age: float, cursor: FeedCursor | None = None) -> None:
        self.ttl = ttl
        self.max_age = max(max_age, ttl)
        self.cursor = cursor or FeedCursor()
        # Nothing is provable until the log has been read at start.
        self.floor: int | None = None
        self.feed_complete = False
        self._last: OrderedDict[str, int] = OrderedDict()

    @property
    def position(self) -> int:
        """The log position an answer asked of the directory now reflects at least."""
        return self.cursor.position

    @property
    def model(self) -> FreshnessModel:
        return FreshnessModel.EVENTS if self.proving else FreshnessModel.TTL

    @property
    def proving(self) -> bool:
        return self.feed_complete and self.floor is not None

    def load(self, snapshot: LogSnapshot) -> None:
        """At start: what the retained log says, before the feed replays from its head."""
        self.floor = snapshot.floor
        self.cursor.position = max(self.cursor.position, snapshot.head)
        for user_id, seq in sorted(snapshot.last.items(), key=lambda item: item[1]):
            self._remember(user_id, seq)

    def applied(self, change: Change) -> None:
        self._remember(change.user_id, change.seq)

    def _remember(self, user_id: str, seq: int) -> None:
        last = self._last
        if last.get(user_id, -1) >= seq:
            return
        last[user_id] = seq
        last.move_to_end(user_id)
        while len(last) > MAX_TRACKED_USERS:
            _, forgotten = last.popitem(last=False)
            self.floor = max(self.floor or 0, forgotten)

    def provable(self, user_id: str, entry: CacheEntry) -> bool:
        """An entry another process wrote may be served: this process has read the log it
        must be checked against, and the user has no change after it."""
        return self.floor is not None and not self.stale(user_id, entry)

    def stale(self, user_id: str, entry: CacheEntry) -> bool:
        """The user changed after the answer this entry holds."""
        if entry.seq is None:
            return False
        return self._last.get(user_id, -1) > entry.seq

    def trust_seconds(self, entry: CacheEntry) -> float:
        """How long after it was read (its timestamp) this entry may be served."""
        if self.proving and entry.seq is not None and entry.seq >= (self.floor or 0):
            return self.max_age
        return self.ttl

    def changed_since(self, seq: int) -> list[str]:
        """Users with a change after `seq` that this process knows of."""
        return [user for user, last in self._last.items() if last > seq]
