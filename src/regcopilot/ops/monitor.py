"""`regcopilot monitor`: the guide's "Metrics to Monitor" table applied to a live report.

Exit status: 0 all within limits (warnings allowed), 1 at least one alert, 2 unreachable,
3 refused (HTTP 401: wrong or missing token).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from regcopilot.ops import endpoint, table
from regcopilot.ops.grading import graded, too_few

OK, WARN, ALERT, NA = "OK", "WARN", "ALERT", "N/A"
EXIT_OK, EXIT_ALERT, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3

# The guide's table, "Monitoring & Alerts": target, then the alert threshold.
HIT_RATE_TARGET, HIT_RATE_ALERT = 95.0, 90.0  # percent: target > 95, alert < 90
QUERIES_TARGET, QUERIES_ALERT = 500, 1000  # per hour: target < 500 (1000 users), alert > 1000
AVG_MS_TARGET, AVG_MS_ALERT = 10.0, 50.0  # ms: target < 10, alert > 50
DELETED_ALERT_PER_HOUR = 10  # alert > 10/hour
# "Sudden spike" needs a number: more than double since the previous look, and by enough
# users that a handful of sign-ins on a quiet instance does not page anyone.
SPIKE_FACTOR, SPIKE_MIN_USERS = 2.0, 50
HOUR_S = 3600.0

THRESHOLDS = {
    "hitRate": {"target": HIT_RATE_TARGET, "alert": HIT_RATE_ALERT},
    "queriesPerHour": {"target": QUERIES_TARGET, "alert": QUERIES_ALERT},
    "avgValidationMs": {"target": AVG_MS_TARGET, "alert": AVG_MS_ALERT},
    "deletedPerHour": {"alert": DELETED_ALERT_PER_HOUR},
}


@dataclass
class Check:
    key: str
    metric: str
    value: Any
    display: str
    target: str
    alert_if: str
    status: str
    note: str = ""


@dataclass
class Sample:
    at: float
    deleted: int
    active: int


@dataclass
class History:
    """What --watch remembers between looks: an hour of samples, for rates and spikes."""

    samples: deque[Sample] = field(default_factory=deque)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        while self.samples and sample.at - self.samples[0].at > HOUR_S:
            self.samples.popleft()


def _num(body: dict[str, Any], *path: str, default: float = 0.0) -> float:
    node: Any = body
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return float(node) if isinstance(node, int | float) else default


def evaluate(report: dict[str, Any], *, production: bool, history: History | None = None,
             now: float | None = None) -> list[Check]:
    now = time.time() if now is None else now
    auth = report.get("authentication", {})
    validations = int(_num(auth, "validations", "total"))
    checks: list[Check] = []

    rate = _num(auth, "validations", "cacheHitRate")
    if validations == 0:
        status, note = NA, "no validations yet"
    elif not graded(validations):
        status, note = NA, too_few(validations)
    else:
        status = ALERT if rate < HIT_RATE_ALERT else WARN if rate <= HIT_RATE_TARGET else OK
        note = f"{validations:,} validations" + (
            "; see 'Low cache hit rate' in the guide" if status != OK else ""
        )
    checks.append(Check("hitRate", "Cache hit rate", rate, f"{rate:.2f} %", "> 95 %", "< 90 %",
                        status, note))

    qph = int(_num(auth, "costs", "queriesPerHour"))
    status = ALERT if qph > QUERIES_ALERT else WARN if qph >= QUERIES_TARGET else OK
    checks.append(Check("queriesPerHour", "Database queries/hour", qph, f"{qph:,}",
                        "< 500 (1000 users)", "> 1000", status,
                        "increase the cache TTL" if status != OK else ""))

    avg = _num(auth, "validations", "averageTimeMs")
    if not graded(validations):  # a new instance's first validations include cold connects
        status = NA
    else:
        status = ALERT if avg > AVG_MS_ALERT else WARN if avg >= AVG_MS_TARGET else OK
    p99 = auth.get("validations", {}).get("latencyMs", {}).get("p99")
    checks.append(Check("avgValidationMs", "Average validation time", avg, f"{avg:.2f} ms",
                        "< 10 ms", "> 50 ms", status,
                        f"p99 <= {p99:g} ms" if isinstance(p99, int | float) else ""))

    backend = str(report.get("validationCache", {}).get("backend", "unknown"))
    if backend == "redis":
        status, note = OK, ""
    elif production:
        status, note = ALERT, "production needs Redis: see 'Cache backend shows in-memory'"
    elif backend == "in-memory":
        status, note = OK, "fine for one instance (alert in production)"
    else:
        status, note = WARN, "REDIS_URL is set but Redis is failing; serving from memory"
    checks.append(Check("backend", "Cache backend", backend, backend, "redis",
                        "in-memory in prod", status, note))

    active = int(_num(auth, "users", "activeCount"))
    status, note = OK, "last 24 h"
    previous = history.samples[-1] if history and history.samples else None
    if previous is not None:
        grew = active - previous.active
        if active > previous.active * SPIKE_FACTOR and grew >= SPIKE_MIN_USERS:
            status, note = ALERT, f"sudden spike: {previous.active:,} -> {active:,}"
        else:
            note = f"{grew:+,} since last check"
    checks.append(Check("activeUsers", "Active users", active, f"{active:,}", "-",
                        "sudden spike", status, note))

    deleted = int(_num(auth, "users", "deletedDetected"))
    hours = max(_num(auth, "uptime", "hours"), 1.0)  # as the report's own per-hour figures
    per_hour = deleted / hours
    note = f"{deleted:,} since start"
    if history and history.samples:
        oldest = history.samples[0]
        recent = deleted - oldest.deleted
        if recent >= 0:  # a negative step is a restart, not a rate
            minutes = (now - oldest.at) / 60
            note += f"; {recent:,} in the last {minutes:.0f} min"
            per_hour = max(per_hour, float(recent))
    status = ALERT if per_hour > DELETED_ALERT_PER_HOUR else OK
    checks.append(Check("deletedPerHour", "Deleted users detected", per_hour,
                        f"{per_hour:.1f}/hour", "-", "> 10/hour", status, note))

    instances = report.get("instances")
    if isinstance(instances, list) and instances:
        up = sum(1 for i in instances if i.get("status") == "up")
        stale = len(instances) - up
        backends = sorted({str(i.get("backend")) for i in instances})
        checks.append(Check("instances", "Instances", up, f"{up} up" + (
            f", {stale} stale" if stale else ""), "-", "-", WARN if stale else OK,
            "backends: " + ", ".join(backends)))

    if history is not None:
        history.add(Sample(now, deleted, active))
    return checks


def overall(checks: list[Check]) -> int:
    return EXIT_ALERT if any(c.status == ALERT for c in checks) else EXIT_OK


def _colour(status: str, text: str, tty: bool) -> str:
    if not tty:
        return text
    colour = {OK: "green", WARN: "yellow", ALERT: "red"}.get(status)
    return typer.style(text, fg=colour, bold=status == ALERT) if colour else text


def render_text(url: str, report: dict[str, Any], checks: list[Check], tty: bool = False) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    auth = report.get("authentication", {})
    scope = auth.get("scope", "?")
    uptime = _num(auth, "uptime", "hours")
    head = f"{url}  ·  {stamp}  ·  scope {scope}  ·  uptime {uptime:.2f} h"
    rows = [[c.metric, c.display, c.target, c.alert_if, c.status, c.note] for c in checks]
    body = table.render(["Metric", "Value", "Target", "Alert if", "Status", "Note"], rows,
                        right={1})
    alerts = sum(c.status == ALERT for c in checks)
    warns = sum(c.status == WARN for c in checks)
    verdict = "ALERT" if alerts else "OK"
    tail = f"Result: {_colour(ALERT if alerts else OK, verdict, tty)} ({alerts} alert(s), " \
           f"{warns} warning(s))"
    return f"{head}\n{body}\n{tail}"


def as_json(url: str, report: dict[str, Any] | None, checks: list[Check] | None, code: int,
            error: str | None = None) -> str:
    body: dict[str, Any] = {
        "url": url,
        "checkedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "status": {EXIT_OK: "ok", EXIT_ALERT: "alert", EXIT_REFUSED: "refused"}.get(
            code, "unreachable"),
        "exitCode": code,
    }
    if error:
        body["error"] = error
    if checks is not None:
        body["alerts"] = sum(c.status == ALERT for c in checks)
        body["warnings"] = sum(c.status == WARN for c in checks)
        body["checks"] = [
            {"alertIf" if k == "alert_if" else k: v for k, v in asdict(c).items()}
            for c in checks
        ]
    if report is not None:
        body["backend"] = report.get("validationCache", {}).get("backend")
        body["scope"] = report.get("authentication", {}).get("scope")
    return json.dumps(body)


def check_once(url: str, token: str | None, *, production: bool, as_json_output: bool,
               history: History | None, timeout: float, source: str = "") -> int:
    target = endpoint.report_url(url)
    tty = sys.stdout.isatty() and not as_json_output
    try:
        report = endpoint.read_report(target, token, timeout, source)
    except endpoint.Refused as exc:
        if as_json_output:
            typer.echo(as_json(target, None, None, EXIT_REFUSED, str(exc)))
        else:
            typer.echo(f"{target}  ·  {exc}")
        return EXIT_REFUSED
    except endpoint.Unreachable as exc:
        if as_json_output:
            typer.echo(as_json(target, None, None, EXIT_UNREACHABLE, str(exc)))
        else:
            typer.echo(f"{target}  ·  UNREACHABLE: {exc}")
        return EXIT_UNREACHABLE
    checks = evaluate(report, production=production, history=history)
    code = overall(checks)
    if as_json_output:
        typer.echo(as_json(target, report, checks, code))
    else:
        typer.echo(render_text(target, report, checks, tty))
    return code


def _wait(seconds: float) -> None:
    """Sleep between looks, counting down on a terminal so a quiet screen is not a hang."""
    if not sys.stderr.isatty():
        time.sleep(seconds)
        return
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sys.stderr.write(f"\rnext check in {left:4.0f} s (Ctrl-C stops)")
        sys.stderr.flush()
        time.sleep(min(1.0, left))
    sys.stderr.write("\r" + " " * 40 + "\r")


def monitor(
    url: Annotated[str | None, typer.Argument(
        help="Base URL of an instance (or its /api/observability); default $NEXTAUTH_URL "
             "or http://localhost:3000.", show_default=False)] = None,
    token: Annotated[str | None, typer.Option(
        envvar="OBSERVABILITY_TOKEN", help="Bearer token ($OBSERVABILITY_TOKEN).",
        show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per check round.")
                           ] = False,
    watch: Annotated[float | None, typer.Option(
        min=0.5, help="Repeat every SECONDS until Ctrl-C.", show_default=False)] = None,
    count: Annotated[int | None, typer.Option(
        min=1, help="With --watch: stop after this many rounds.", show_default=False)] = None,
    production: Annotated[bool | None, typer.Option(
        "--production/--development",
        help="Apply the production rule (backend must be redis); default from $APP_ENV.",
        show_default=False)] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for an answer.")
                       ] = endpoint.TIMEOUT_SECONDS,
) -> None:
    """Check a live instance against the guide's alert table (exit 0 OK, 1 alert, 2 unreachable,
    3 refused: wrong or missing token)."""
    base = url or endpoint.default_url()
    token, source = endpoint.resolve_token(token)
    prod = production if production is not None else os.environ.get("APP_ENV") == "production"
    history = History()
    rounds, code = 0, EXIT_OK
    try:
        while True:
            code = check_once(base, token, production=prod, as_json_output=json_output,
                              history=history, timeout=timeout, source=source)
            rounds += 1
            if watch is None or (count is not None and rounds >= count):
                break
            if not json_output:
                typer.echo("")
            _wait(watch)
    except KeyboardInterrupt:
        typer.echo("", err=True)
    raise typer.Exit(code)
