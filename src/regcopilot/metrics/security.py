"""Security events: refused tokens, failed logins, rate-limit hits — counted, and the most
recent few kept (bounded) for the observability report. Never a password or a token."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

log = logging.getLogger("regcopilot.security")

RECENT = 50


class SecurityLog:
    def __init__(self) -> None:
        self.counts = {"invalidTokens": 0, "failedLogins": 0, "rateLimited": 0}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def _event(self, kind: str, detail: str, client: str | None) -> None:
        self.recent.appendleft(
            {"type": kind, "detail": detail, "client": client, "at": int(time.time() * 1000)}
        )

    def invalid_token(self, reason: str, scope: dict[str, Any]) -> None:
        self.counts["invalidTokens"] += 1
        client = scope.get("client")
        self._event("invalid_token", reason, client[0] if client else None)

    def failed_login(self, email: str, client: str | None) -> None:
        self.counts["failedLogins"] += 1
        self._event("failed_login", email[:120], client)
        log.info("Failed login for %s from %s", email[:120], client)

    def rate_limited(self, what: str, client: str | None) -> None:
        self.counts["rateLimited"] += 1
        self._event("rate_limited", what[:120], client)

    def report(self) -> dict[str, Any]:
        return {**self.counts, "recentEvents": list(self.recent)[:20]}
