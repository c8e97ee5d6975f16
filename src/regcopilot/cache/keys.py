"""Where everything lives in Redis, under REDIS_KEY_PREFIX: the one place the layout is
written (the app, the CLI and the tests build keys here, never by hand)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CacheKeys:
    prefix: str = "copilot:auth:"

    @property
    def validation_prefix(self) -> str:
        # Shared with the upstream Node tier during a move (cache/entry.py).
        return f"{self.prefix}validation:"

    def validation(self, user_id: str) -> str:
        return f"{self.validation_prefix}{user_id}"

    def lock(self, user_id: str) -> str:
        return f"{self.prefix}lock:{user_id}"

    @property
    def change_mark(self) -> str:
        """The change-log position whose changes Redis has had applied."""
        return f"{self.prefix}changes:seq"

    @property
    def revoked_prefix(self) -> str:
        return f"{self.prefix}revoked:"

    @property
    def rate_limit_prefix(self) -> str:
        return f"{self.prefix}ratelimit:"

    @property
    def events_channel(self) -> str:
        return f"{self.prefix}events"
