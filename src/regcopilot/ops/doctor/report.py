"""What every doctor check shares: its outcome, its failure, and what earlier checks learnt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
TIMEOUT_S = 3.0


class Problem(Exception):
    """A check's failure, with the one line the operator reads."""


@dataclass
class Result:
    name: str
    status: str
    message: str


@dataclass(frozen=True)
class Parts:
    """How doctor opens what it checks, handed in by the composition root
    (factories.doctor_parts), so it reads them as the app builds them and creates nothing:
    `settings()` the checked settings (no secret file made, nothing logged); `store(url,
    timeout_s)` the Redis store the app talks through (connects on the first command);
    `backend(database_url)` the directory backend the app would open ("sqlite", "postgres",
    or None when the URL names neither)."""

    settings: Callable[[], Any]
    store: Callable[[str, float], Any]
    backend: Callable[[str], str | None]


@dataclass
class Facts:
    """What earlier checks learnt, for the later ones; `timeout_s` is the wait at each network
    step (--timeout), handed to every check rather than kept in a module global."""

    parts: Parts
    timeout_s: float = TIMEOUT_S
    env: dict[str, str] = field(default_factory=dict)
    settings: Any = None
    redis_url: str | None = None
    redis_ok: bool | None = None
    redis_problem: str | None = None
    production: bool = False
