"""`regcopilot doctor`: the guide's troubleshooting steps as checks, one line each, printed as
they run. Read-only: it never creates the database, its schema or the secret file.

The checks live beside this module, one concern each: environment.py, redis.py, database.py,
feed.py (the change feed and a pooler in its way);
report.py holds what they share. Exit status: 0 when nothing failed (warnings allowed), 1
otherwise.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from regcopilot.ops.doctor.database import check_postgres, check_sqlite
from regcopilot.ops.doctor.environment import (
    check_environment,
    check_secret,
    check_settings,
    raw_environment,
)
from regcopilot.ops.doctor.feed import check_feed
from regcopilot.ops.doctor.redis import redis_checks
from regcopilot.ops.doctor.report import (
    FAIL,
    OK,
    SKIP,
    TIMEOUT_S,
    WARN,
    Facts,
    Parts,
    Problem,
    Result,
)
from regcopilot.users.problems import mask

__all__ = ["Facts", "Parts", "Problem", "Result", "diagnose", "doctor_command"]


# --- backend ----------------------------------------------------------------------------------
def backend_decision(facts: Facts) -> Result:
    if not facts.redis_url:
        status = WARN if facts.production else OK
        return Result("cache backend", status, "in-memory: REDIS_URL not set (log line "
                      "'REDIS_URL not configured - using in-memory cache'); one instance only"
                      + (" - production wants Redis" if facts.production else ""))
    if facts.redis_ok:
        return Result("cache backend", OK, "redis: REDIS_URL set and Redis answered (log line "
                      "'Redis cache connected successfully'); an in-memory tier sits in front")
    return Result("cache backend", WARN, "redis-disconnected: REDIS_URL is set but the "
                  f"'{facts.redis_problem}' check failed; the app would start on its in-memory "
                  "tier and keep probing Redis, backing off to every 2 s")


# --- running ----------------------------------------------------------------------------------
class Printer:
    """One line per check as soon as it is known; on a terminal, the running check shows
    first so a slow one is visibly in progress."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.results: list[Result] = []

    def running(self, name: str) -> None:
        if self.tty:
            sys.stdout.write(f"  ...  {name:16} checking\r")
            sys.stdout.flush()

    def show(self, result: Result) -> None:
        self.results.append(result)
        label = result.status.ljust(4)
        if self.tty:
            colour = {OK: "green", WARN: "yellow", FAIL: "red"}.get(result.status)
            label = typer.style(label, fg=colour, bold=result.status == FAIL) if colour else label
            sys.stdout.write("\r\033[K")
        typer.echo(f"{label}  {result.name:16} {result.message}")


async def _run(step: Callable[[], Any]) -> Any:
    value = step()
    if asyncio.iscoroutine(value):
        value = await value
    return value


async def diagnose(printer: Printer, parts: Parts, timeout_s: float = TIMEOUT_S) -> list[Result]:
    facts = Facts(parts, timeout_s=timeout_s)

    async def one(name: str, step: Callable[[], Any]) -> Any:
        printer.running(name)
        try:
            value = await _run(step)
        except Problem as exc:
            printer.show(Result(name, FAIL, str(exc)))
            return None
        if isinstance(value, Result):
            printer.show(value)
        elif isinstance(value, list):
            for r in value:
                printer.show(r)
        else:
            printer.show(Result(name, OK, str(value)))
        return value

    env_ok = await one("environment", lambda: check_environment(facts)) is not None
    if env_ok:
        await one("secret", lambda: check_secret(facts))
        await one("settings", lambda: check_settings(facts))
    else:
        facts.env = facts.env or raw_environment()
        facts.redis_url = facts.env.get("REDIS_URL") or None

    if facts.redis_url or facts.env.get("REDIS_URL"):
        facts.redis_ok = True
        for name, step in redis_checks(facts):
            if await one(name, step) is None:
                facts.redis_ok = False
                facts.redis_problem = name
                break
    else:
        printer.show(Result("redis", SKIP if not facts.production else WARN,
                            "REDIS_URL not set"))

    db_url = facts.settings.DATABASE_URL if facts.settings else facts.env.get(
        "DATABASE_URL", "sqlite:///./data/regcopilot.db")
    backend = parts.backend(db_url)
    if backend == "sqlite":
        await one("database", lambda: check_sqlite(db_url, facts.timeout_s))
    elif backend == "postgres":
        cache = facts.settings.DATABASE_STATEMENT_CACHE_SIZE if facts.settings else 100
        if await one("database", lambda: check_postgres(db_url, cache, facts.timeout_s)):
            direct = facts.settings.DATABASE_DIRECT_URL if facts.settings else None
            poll = facts.settings.CHANGE_FEED_POLL_SECONDS if facts.settings else 1.0
            await one("change feed", lambda: check_feed(db_url, direct, cache, poll,
                                                        facts.timeout_s))
    else:
        printer.show(Result("database", FAIL, f"DATABASE_URL {mask(db_url)} is neither "
                            "postgresql:// nor sqlite:///"))

    if env_ok:
        printer.show(backend_decision(facts))
    return printer.results


def doctor_command(parts: Parts) -> Callable[..., None]:
    """The `doctor` command, checking through `parts` (the CLI hands in factories.py's)."""

    def doctor(
        timeout: Annotated[float, typer.Option(
            min=0.1, help="Seconds to wait at each network step.")] = TIMEOUT_S,
    ) -> None:
        """Check settings, Redis, the user directory and the cache backend the app would
        pick."""
        printer = Printer()
        results = asyncio.run(diagnose(printer, parts, timeout))
        failed = [r for r in results if r.status == FAIL]
        warned = [r for r in results if r.status == WARN]
        typer.echo(f"{len(results)} checks: {len(failed)} failed, {len(warned)} warning(s)")
        raise typer.Exit(1 if failed else 0)

    return doctor

