"""What every doctor check shares: its outcome, its failure, and what earlier checks learnt."""

from __future__ import annotations

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


@dataclass
class Facts:
    """What earlier checks learnt, for the later ones; `timeout_s` is the wait at each network
    step (--timeout), handed to every check rather than kept in a module global."""

    timeout_s: float = TIMEOUT_S
    env: dict[str, str] = field(default_factory=dict)
    settings: Any = None
    redis_url: str | None = None
    redis_ok: bool | None = None
    redis_problem: str | None = None
    production: bool = False
