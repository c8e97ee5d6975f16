"""The guide's "Metrics to Monitor" table as `regcopilot monitor` applies it."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from regcopilot.cli import app
from regcopilot.ops.monitor import ALERT, NA, OK, WARN, History, evaluate, overall
from tests.support import free_port

REPORT = {
    "authentication": {
        "uptime": {"milliseconds": 7_200_000, "hours": 2.0, "startTime": "x"},
        "validations": {"total": 45_000, "cacheHitRate": 98.0, "averageTimeMs": 3,
                        "latencyMs": {"p50": 0.1, "p95": 1, "p99": 2.5}},
        "users": {"activeCount": 1200, "deletedDetected": 3, "bannedDetected": 1},
        "costs": {"queriesPerHour": 450},
        "scope": "cluster",
    },
    "validationCache": {"backend": "redis"},
}


def with_(path: str, value: object) -> dict:
    body = copy.deepcopy(REPORT)
    node = body
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return body


def status(report: dict, key: str, production: bool = False) -> str:
    return next(c.status for c in evaluate(report, production=production) if c.key == key)


def test_healthy_report_is_ok():
    checks = evaluate(REPORT, production=True)
    assert {c.status for c in checks} == {OK}
    assert overall(checks) == 0


@pytest.mark.parametrize(("rate", "expected"), [(98.0, OK), (95.0, WARN), (90.0, WARN),
                                                 (89.99, ALERT)])
def test_hit_rate_thresholds(rate, expected):
    assert status(with_("authentication.validations.cacheHitRate", rate), "hitRate") == expected


@pytest.mark.parametrize(("total", "expected"), [(1, NA), (99, NA), (100, ALERT)])
def test_a_low_hit_rate_is_graded_from_100_validations(total, expected):
    body = with_("authentication.validations.total", total)
    body["authentication"]["validations"]["cacheHitRate"] = 50.0
    body["authentication"]["validations"]["averageTimeMs"] = 80.0
    assert status(body, "hitRate") == expected and status(body, "avgValidationMs") == expected


def test_no_validations_is_not_an_alert():
    body = with_("authentication.validations.total", 0)
    body["authentication"]["validations"]["cacheHitRate"] = 0.0
    assert status(body, "hitRate") == NA and status(body, "avgValidationMs") == NA


@pytest.mark.parametrize(("qph", "expected"), [(499, OK), (500, WARN), (1000, WARN),
                                               (1001, ALERT)])
def test_queries_per_hour(qph, expected):
    assert status(with_("authentication.costs.queriesPerHour", qph), "queriesPerHour") == expected


@pytest.mark.parametrize(("ms", "expected"), [(9.9, OK), (10, WARN), (50, WARN), (50.1, ALERT)])
def test_average_validation_time(ms, expected):
    body = with_("authentication.validations.averageTimeMs", ms)
    assert status(body, "avgValidationMs") == expected


def test_backend_rule_depends_on_production():
    body = with_("validationCache.backend", "in-memory")
    assert status(body, "backend", production=False) == OK
    assert status(body, "backend", production=True) == ALERT
    body = with_("validationCache.backend", "redis-disconnected")
    assert status(body, "backend", production=False) == WARN


def test_deleted_users_per_hour():
    # 3 over 2 h is fine; 30 over 2 h is 15/hour.
    assert status(REPORT, "deletedPerHour") == OK
    assert status(with_("authentication.users.deletedDetected", 30), "deletedPerHour") == ALERT
    # Watching: 11 detected within the window alerts even on a long-running instance.
    history = History()
    old = with_("authentication.uptime.hours", 100.0)
    evaluate(old, production=False, history=history, now=1000.0)
    later = copy.deepcopy(old)
    later["authentication"]["users"]["deletedDetected"] = 3 + 11
    checks = evaluate(later, production=False, history=history, now=1600.0)
    assert next(c for c in checks if c.key == "deletedPerHour").status == ALERT


def test_active_user_spike_between_looks():
    history = History()
    evaluate(REPORT, production=False, history=history, now=0.0)
    spike = with_("authentication.users.activeCount", 5000)
    checks = evaluate(spike, production=False, history=history, now=30.0)
    assert next(c for c in checks if c.key == "activeUsers").status == ALERT


def test_unreachable_exits_2_in_text_and_json():
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["monitor", url, "--token", "t"])
    assert result.exit_code == 2 and "UNREACHABLE" in result.output
    assert "connection refused" in result.output.lower() or "errno 111" in result.output.lower()
    result = CliRunner().invoke(app, ["monitor", url, "--token", "t", "--json"])
    body = json.loads(result.output)
    assert result.exit_code == 2 and body["status"] == "unreachable" and body["error"]
