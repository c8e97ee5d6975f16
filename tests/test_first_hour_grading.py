"""Issue 25, item 2: a fresh instance raises no alert. One "too few to grade" rule
(ops/grading.py) is applied by `monitor`, the dashboard, `cost --url` and the Prometheus rules."""

from __future__ import annotations

from pathlib import Path

import yaml

from regcopilot.ops.grading import MIN_GRADED_VALIDATIONS
from tests.live import TOKEN, LiveServer

ALERTS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"


def test_fresh_instance_one_sign_in_a_few_requests_monitor_exits_0(tmp_path):
    s = LiveServer(tmp_path)
    s.add_user("first@example.com", admin=True)
    s.start()
    try:
        with s.session("first@example.com") as client:
            for _ in range(5):
                assert client.get("/api/me").status_code == 200
        report = s.report()
        validations = report["authentication"]["validations"]
        # The situation the issue met: a hit rate below the alert line, on a few validations.
        assert 0 < validations["total"] < MIN_GRADED_VALIDATIONS
        assert validations["cacheHitRate"] < 90, validations
        done = s.cli("monitor", s.base, "--token", TOKEN)
        assert done.returncode == 0, done.stdout + done.stderr
        hit = next(line for line in done.stdout.splitlines() if line.startswith("Cache hit"))
        assert "N/A" in hit and "ALERT" not in hit
        assert (f"too few validations to grade ({validations['total']} of "
                f"{MIN_GRADED_VALIDATIONS})") in hit, hit
        cost = s.cli("cost", "--url", s.base, "--token", TOKEN)
        assert cost.returncode == 0, cost.stderr
        assert "too few validations to grade" in cost.stdout, cost.stdout
        # Past the threshold the same figure is graded again.
        with s.session("first@example.com") as client:
            for _ in range(MIN_GRADED_VALIDATIONS):
                assert client.get("/api/me").status_code == 200
        graded = s.cli("monitor", s.base, "--token", TOKEN)
        hit = next(line for line in graded.stdout.splitlines() if line.startswith("Cache hit"))
        assert "too few" not in hit and " OK " in hit, graded.stdout
    finally:
        s.stop()


def test_prometheus_rules_apply_the_same_threshold():
    rules = {r.get("alert") or r.get("record"): r["expr"]
             for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    floor = f"regcopilot:validations:increase15m >= {MIN_GRADED_VALIDATIONS}"
    for alert in ("RegcopilotCacheHitRateLow", "RegcopilotValidationSlow"):
        assert floor in " ".join(rules[alert].split()), rules[alert]
    assert "increase(regcopilot_validations_total[15m])" in rules[
        "regcopilot:validations:increase15m"]
