"""One observable state per feed: can this process show, now, that it has heard everything?

A connection that stays up proves nothing: behind a transaction-mode pooler LISTEN lands on a
server connection that is handed to someone else, and a proxy or failover can keep the client's
socket while dropping its server session (issue 19: an instance reported `connected` for 120 s
while hearing nothing). So a feed is complete only while its listener keeps *showing* it hears:
the directory's feed when the log's head has been applied (users/pg_feed.py, users/sqlite.py),
the event bus when its own heartbeat comes back through pub/sub (cache/bus.py).

The listener writes; everyone else reads the same object: the validation cache (max age, near
tier trust), the revocation list, the session records (re-read on every return), /api/ready,
/api/observability and /metrics. `complete` is a plain attribute so the request path pays one
attribute read. Said once: one WARNING when the feed stops proving itself, one INFO when it is
back, never a line per retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from regcopilot.names import FeedMode

Watcher = Callable[[bool], None]


class FeedState:
    def __init__(self, name: str, log: logging.Logger) -> None:
        self.name = name  # as the log says it: "User change feed", "Event bus"
        self.complete = False
        self.mode: FeedMode | None = None
        self.mode_reason = ""
        self.problem: str | None = "starting"
        # Unix time of the last proof; the clock starts at start, so a feed that never proves
        # itself ages like one that stopped (the alert rule reads this).
        self.proved_at = time.time()
        self.lost_count = 0  # times it stopped proving itself (a flapping feed shows here)
        self._log = log
        self._warned = False
        self._watchers: list[Watcher] = []

    def watch(self, watcher: Watcher) -> None:
        """Call `watcher(complete)` on every change of `complete`."""
        self._watchers.append(watcher)

    def use(self, mode: FeedMode, reason: str, *, warn: bool = False) -> None:
        """The listener chose how it hears; logged when that changes (the start log says it)."""
        if (mode, reason) == (self.mode, self.mode_reason):
            return
        self.mode, self.mode_reason = mode, reason
        (self._log.warning if warn else self._log.info)("%s mode: %s - %s", self.name,
                                                        mode.value, reason)

    def proved(self) -> None:
        """Everything the source holds has been applied, as of now."""
        self.proved_at = time.time()
        self.problem = None
        if self._warned:
            self._warned = False
            self._log.info("%s proves itself again (%s)", self.name,
                           self.mode.value if self.mode else "?")
        self._set(True)

    def unsure(self, why: str) -> None:
        """A moment's doubt the listener is already resolving (a gap behind an early change,
        filled within milliseconds as a rule): not complete, and not worth a log line."""
        self.problem = why
        self._set(False)

    def lost(self, why: str) -> None:
        """The feed cannot show it hears: one WARNING until it proves itself again."""
        self.problem = why
        if not self._warned:
            self._warned = True
            self.lost_count += 1
            self._log.warning("%s not proved: %s", self.name, why)
        self._set(False)

    def proved_ago(self) -> float:
        return max(0.0, time.time() - self.proved_at)

    def report(self) -> dict[str, object]:
        """The observability view (/api/observability's `invalidation` block)."""
        return {
            "mode": self.mode.value if self.mode else None,
            "modeReason": self.mode_reason or None,
            "proved": self.complete,
            "provedAgoMs": int(self.proved_ago() * 1000),
            "problem": self.problem,
            "lost": self.lost_count,
        }

    def _set(self, complete: bool) -> None:
        if complete == self.complete:
            return
        self.complete = complete
        for watcher in self._watchers:
            watcher(complete)
