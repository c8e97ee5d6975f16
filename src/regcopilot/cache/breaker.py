"""A circuit breaker for the shared store: after a few failures the request path stops
paying even the short timeout, and a background probe decides when to try again."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from regcopilot.names import Backend

DISCONNECTED = Backend.REDIS_DISCONNECTED
ERROR = Backend.REDIS_ERROR


class Breaker:
    def __init__(self, threshold: int = 3) -> None:
        self.threshold = threshold
        self.failures = 0
        self.open = True  # closed only once the store has answered
        self.state = DISCONNECTED
        self.last_error: str | None = "not connected yet"
        self.opened_at = time.monotonic()
        self.transitions = 0
        # Told (with the error) when failures open the breaker, whoever's call failed.
        self.on_open: list[Callable[[str], None]] = []

    @property
    def allows(self) -> bool:
        return not self.open

    def success(self) -> bool:
        """Record an answer; True when this closes the breaker (the store is back)."""
        self.failures = 0
        if self.open:
            self.open = False
            self.last_error = None
            self.transitions += 1
            return True
        return False

    def answered(self) -> None:
        """The store answered a command: the failure streak ends. Only the probe
        (`success`) closes an open breaker, so recovery work runs in one place."""
        if not self.open:
            self.failures = 0

    def failure(self, exc: BaseException | None, message: str, *, notify: bool = True) -> bool:
        """Record a failure; True when this opens the breaker."""
        self.failures += 1
        self.last_error = message
        cause = exc.__cause__ if exc is not None and exc.__cause__ else exc
        # redis-py files a refused password under ConnectionError, but Redis did answer:
        # that is a configuration error for the operator, not a lost connection.
        reachable = isinstance(cause, AuthenticationError)
        self.state = (
            DISCONNECTED
            if isinstance(cause, RedisConnectionError | OSError) and not reachable
            else ERROR
        )
        if not self.open and self.failures >= self.threshold:
            self.open = True
            self.opened_at = time.monotonic()
            self.transitions += 1
            for hook in self.on_open if notify else ():
                hook(message)
            return True
        return False

    def trip(self, exc: BaseException | None, message: str) -> bool:
        """Open at once (a probe or start-up check failed)."""
        self.failures = self.threshold - 1
        return self.failure(exc, message, notify=False)
