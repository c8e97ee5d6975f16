"""The change log as a process reads it: every change the database announces has a sequence
number, and this process knows how far it has applied them without a gap.

PostgreSQL hands out sequence numbers when a change is written and announces it when the
transaction commits, so announcements can arrive out of order, and a rolled-back change leaves a
number that is never announced. A number skipped over is therefore a *hole*: maybe a change still
committing, maybe one lost while the listener was away, maybe nothing. Until the log has been
re-read past it, the process cannot prove it has seen every change (the short TTL applies); a
hole the log still lacks after HOLE_GRACE_SECONDS was a rolled-back change and is forgotten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Longer than any transaction that changes a user should stay open; a hole older than this
# that the log does not hold was rolled back.
HOLE_GRACE_SECONDS = 10.0
# More holes than this at once: something is badly off; forget them and let the replay of the
# log (which reads from the position) find whatever is really there.
MAX_HOLES = 10_000


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    user_id: str


class FeedCursor:
    """How far this process has applied the change log.

    `position`: every change numbered up to here has been applied (or proved not to exist).
    Changes above it that arrived early are remembered until the gap below them closes.
    """

    def __init__(self, position: int = 0) -> None:
        self.position = position
        self._ahead: set[int] = set()
        self._holes: dict[int, float] = {}  # seq → when it was first missed (monotonic)

    @property
    def complete(self) -> bool:
        """No hole: every change up to the newest one applied is known to be applied."""
        return not self._holes

    @property
    def replay_from(self) -> int:
        """Re-read the log after this sequence number to fill every hole."""
        return self.position

    def seen(self, seq: int) -> bool:
        return seq <= self.position or seq in self._ahead

    def apply(self, seq: int) -> bool:
        """Record an applied change; False when it was applied before (a replay overlap)."""
        if self.seen(seq):
            return False
        if seq == self.position + 1:
            self.position = seq
            self._advance()
            return True
        now = time.monotonic()
        newest = max(self._ahead, default=self.position)
        for missing in range(newest + 1, seq):
            self._holes.setdefault(missing, now)
        self._holes.pop(seq, None)
        self._ahead.add(seq)
        if len(self._holes) > MAX_HOLES:
            self._forget_holes()
        return True

    def read_through(self, seq: int) -> None:
        """The log has been read up to `seq` in one go, and a log whose writers commit in
        sequence order (SQLite's) has no change still to come below it: a number missing
        there was taken back (a quiet write) or pruned, never lost."""
        if seq <= self.position:
            return
        self._holes = {s: t for s, t in self._holes.items() if s > seq}
        self._ahead = {s for s in self._ahead if s > seq}
        self.position = seq
        self._advance()

    def expire_holes(self) -> bool:
        """Forget holes older than the grace period; True when that made the cursor complete."""
        if not self._holes:
            return False
        cutoff = time.monotonic() - HOLE_GRACE_SECONDS
        for seq in [s for s, since in self._holes.items() if since <= cutoff]:
            del self._holes[seq]
        self._advance()
        return not self._holes

    def _forget_holes(self) -> None:
        self._holes.clear()
        self._advance()

    def _advance(self) -> None:
        ahead, holes = self._ahead, self._holes
        holes.pop(self.position, None)
        while True:
            nxt = self.position + 1
            if nxt in ahead:
                ahead.discard(nxt)
                holes.pop(nxt, None)
                self.position = nxt
            elif ahead and nxt not in self._holes and nxt < min(ahead):
                # Forgotten hole (rolled back): step over it.
                self.position = nxt
            else:
                return
