"""Security events: refused tokens, failed logins, rate-limit hits, cross-site requests —
counted (in total and by reason), and the most recent few kept (bounded) for the observability
report. Never a password or a token: only a reason, the client address and at most an email."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Any

log = logging.getLogger("regcopilot.security")

RECENT = 50
RECENT_REPORTED = 20
MAX_REASONS = 50  # reasons are a small fixed set; the cap only guards against a bug


def _reason_key(reason: str) -> str:
    # "malformed: DecodeError" → "malformed": a bounded set of keys for the counters.
    return reason.split(":", 1)[0].strip()[:40] or "unknown"


class SecurityLog:
    def __init__(self) -> None:
        self.counts = {
            "invalidTokens": 0,
            "failedLogins": 0,
            "rateLimited": 0,
            "csrfRefused": 0,
        }
        self.invalid_token_reasons: Counter[str] = Counter()
        self.rate_limited_by: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def _event(self, kind: str, detail: str, client: str | None) -> None:
        self.recent.appendleft(
            {"type": kind, "detail": detail, "client": client, "at": int(time.time() * 1000)}
        )

    def invalid_token(self, reason: str, client: str | None) -> None:
        self.counts["invalidTokens"] += 1
        key = _reason_key(reason)
        if key in self.invalid_token_reasons or len(self.invalid_token_reasons) < MAX_REASONS:
            self.invalid_token_reasons[key] += 1
        self._event("invalid_token", reason[:120], client)

    def failed_login(self, email: str, client: str | None) -> None:
        self.counts["failedLogins"] += 1
        self._event("failed_login", email[:120], client)
        log.info("Failed login for %s from %s", email[:120], client)

    def rate_limited(self, what: str, client: str | None) -> None:
        self.counts["rateLimited"] += 1
        self.rate_limited_by[_reason_key(what)] += 1
        self._event("rate_limited", what[:120], client)
        log.warning("Sign-in rate limit (%s) hit from %s", what[:40], client)

    def csrf_refused(self, reason: str, scope: dict[str, Any]) -> None:
        self.counts["csrfRefused"] += 1
        client = scope.get("client")
        address = client[0] if client else None
        self._event("csrf_refused", f"{scope.get('path', '')[:60]}: {reason[:100]}", address)
        log.warning("Cross-site request refused (%s) from %s", reason[:100], address)

    def report(self) -> dict[str, Any]:
        return {
            **self.counts,
            "invalidTokensByReason": dict(self.invalid_token_reasons),
            "rateLimitedBy": dict(self.rate_limited_by),
            "recentEvents": list(self.recent)[:RECENT_REPORTED],
        }
