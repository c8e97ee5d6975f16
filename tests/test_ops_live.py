"""Operator tools against real `regcopilot serve` processes: monitor's exit codes, the guide's
monitor-auth.sh and `curl | jq` lines (Debian's curl, jq and bc), /metrics across two worker
processes, `cost --url`, and the dashboard page driven in Debian's Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from regcopilot.cli import app
from tests.conftest import REDIS_URL
from tests.live import CHROMIUM, TOKEN, LiveServer, launch_chromium, submit_sign_in, watched_page
from tests.support import delete_prefix, new_prefix, repo_root, wait_until

pytestmark = pytest.mark.xdist_group("ops-live")  # the module's servers stay on one worker





def monitor(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["monitor", *args],
                                env={"APP_ENV": None, "NEXTAUTH_URL": None})
    return result.exit_code, result.output


def guide_script(endpoint: str) -> str:
    env = {**os.environ, "ENDPOINT": endpoint, "OBSERVABILITY_TOKEN": TOKEN}
    done = subprocess.run(["bash", str(repo_root() / "deploy/monitor-auth.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout


@pytest.fixture
def memory_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path)
    server.add_user("alice@example.com")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Two worker processes sharing Redis (a key prefix of this module's own)."""
    prefix = new_prefix()
    server = LiveServer(tmp_path_factory.mktemp("cluster"), redis_prefix=prefix, workers=2)
    server.add_user("admin@example.com", admin=True)
    server.add_user("bob@example.com")
    server.start()
    wait_until(lambda: len(server.report().get("instances", [])) == 2, timeout=20, interval=0.2)
    yield server
    server.stop()
    delete_prefix(prefix, REDIS_URL)


def test_monitor_exit_codes_and_guide_script(memory_server):
    s = memory_server
    endpoint = s.base + "/api/observability"

    # Fresh, single instance, development: nothing to alert on.
    code, out = monitor(s.base, "--token", TOKEN)
    assert code == 0, out
    assert "Cache backend" in out and "in-memory" in out and "Result: OK" in out
    # The same instance judged as production: in-memory is the guide's alert.
    code, out = monitor(s.base, "--token", TOKEN, "--production")
    assert code == 1 and "Result: ALERT" in out
    # Wrong token: refused, which is not the same as unreachable (exit 2).
    code, out = monitor(s.base, "--token", "wrong")
    assert code == 3 and "refused: wrong or missing token" in out and "UNREACHABLE" not in out

    # The guide's script, as is (plus the bearer header): both of its messages.
    out = guide_script(endpoint)
    assert "ALERT: Cache hit rate is 0" in out
    assert "WARNING: Using in-memory cache (in-memory) - not suitable for production" in out

    # One cold validation: a 0 % hit rate, but on too few validations to grade (issue 25:
    # a fresh instance does not alert; ops/grading.py).
    stack = contextlib.ExitStack()
    alice = stack.enter_context(s.session("alice@example.com"))
    assert alice.get("/api/me").status_code == 200
    code, out = monitor(endpoint, "--token", TOKEN)
    assert code == 0, out
    hit_row = next(line for line in out.splitlines() if line.startswith("Cache hit rate"))
    assert "N/A" in hit_row and "too few validations to grade (1 of 100)" in hit_row

    # Warm: 120 more requests from the cache, hit rate ≈ 99.2 % > 95 %, now graded.
    for _ in range(120):
        assert alice.get("/api/me").status_code == 200
    code, out = monitor(s.base, "--token", TOKEN, "--json")
    body = json.loads(out)
    assert code == 0 and body["status"] == "ok" and body["alerts"] == 0
    hit = next(c for c in body["checks"] if c["key"] == "hitRate")
    assert hit["status"] == "OK" and hit["value"] > 95
    assert guide_script(endpoint).splitlines() == [
        "WARNING: Using in-memory cache (in-memory) - not suitable for production"
    ]

    # The guide's `curl | jq` lines, with the bearer header.
    def curl_jq(expr: str) -> str:
        cmd = f'curl -s -H "Authorization: Bearer $TOKEN" "$URL" | jq \'{expr}\''
        done = subprocess.run(["bash", "-c", cmd], env={**os.environ, "TOKEN": TOKEN,
                              "URL": endpoint}, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert float(curl_jq(".authentication.validations.cacheHitRate")) > 95
    costs = json.loads(curl_jq(".authentication.costs"))
    assert set(costs) == {"estimatedDatabaseCost", "costWithoutCache", "savings",
                          "savingsPercentage", "queriesPerHour"}
    assert all(isinstance(costs[k], str) for k in set(costs) - {"queriesPerHour"})
    assert len(json.loads(curl_jq(".authentication.logins.last24Hours"))) == 24
    assert int(curl_jq(".authentication.users.activeCount")) == 1
    stack.close()


def scrape(server: LiveServer) -> dict[str, float]:
    # A new connection each time, so the kernel may hand it to either worker.
    r = httpx.get(server.base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}",
                                                     "Connection": "close"}, timeout=5)
    assert r.status_code == 200, r.text
    return {s.name + json.dumps(s.labels, sort_keys=True): s.value
            for f in text_string_to_metric_families(r.text) for s in f.samples}


def test_metrics_are_the_same_from_every_worker(cluster_server):
    s = cluster_server
    assert httpx.get(s.base + "/metrics", timeout=5).status_code == 401
    before = scrape(s)["regcopilot_validations_total{}"]
    with s.session("bob@example.com") as bob:
        cookies = {"regcopilot.session-token": bob.cookies["regcopilot.session-token"]}
    for _ in range(30):  # a new connection each: the requests land on both workers
        r = httpx.get(s.base + "/api/me", cookies=cookies, headers={"Connection": "close"})
        assert r.status_code == 200
    # Each worker flushes its counts to Redis within a second of its last request: once the
    # total has held still for longer than that, every scrape must agree.
    seen = {"value": -1.0, "since": 0.0}

    def settled() -> bool:
        value, now = scrape(s)["regcopilot_validations_total{}"], time.monotonic()
        if value != seen["value"]:
            seen.update(value=value, since=now)
            return False
        return value >= before + 30 and now - seen["since"] >= 1.5

    wait_until(settled, timeout=15, interval=0.25)
    samples = [scrape(s) for _ in range(6)]
    keys = [k for k in samples[0] if k.startswith(("regcopilot_validations_total",
                                                   "regcopilot_database_queries_total",
                                                   "regcopilot_validation_latency_seconds_count",
                                                   "regcopilot_logins_total"))]
    for sample in samples[1:]:
        assert {k: sample[k] for k in keys} == {k: samples[0][k] for k in keys}
    assert samples[0]['regcopilot_instances{"status": "up"}'] == 2
    assert samples[0]['regcopilot_cache_backend{"backend": "redis"}'] == 1


def test_guide_script_is_quiet_on_a_healthy_cluster(cluster_server):
    s = cluster_server
    with s.session("bob@example.com") as bob:
        for _ in range(20):
            bob.get("/api/me")
    wait_until(lambda: s.report()["authentication"]["validations"]["cacheHitRate"] > 90,
               timeout=10, interval=0.2)
    assert guide_script(s.base + "/api/observability") == ""


def test_monitor_watch_and_cost_url(cluster_server):
    s = cluster_server
    env = {**s.env, "OBSERVABILITY_TOKEN": TOKEN}
    done = subprocess.run([sys.executable, "-m", "regcopilot.cli", "monitor", s.base, "--json",
                           "--watch", "0.5", "--count", "2"], env=env, capture_output=True,
                          text=True, timeout=30)
    rounds = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(rounds) == 2, done.stdout + done.stderr
    assert rounds[0]["backend"] == "redis" and rounds[0]["scope"] == "cluster"
    instances = next(c for c in rounds[1]["checks"] if c["key"] == "instances")
    assert instances["display"] == "2 up"

    result = CliRunner().invoke(app, ["cost", "--url", s.base, "--token", TOKEN])
    assert result.exit_code == 0, result.output
    assert "Live counters from" in result.output and "scope cluster" in result.output
    assert "DB queries/h with cache" in result.output


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium not installed")
def test_dashboard_draws_in_chromium(cluster_server, tmp_path):
    from playwright.sync_api import sync_playwright

    s = cluster_server
    with s.session("bob@example.com") as bob:  # something to draw
        for _ in range(10):
            bob.get("/api/me")
    shots = [repo_root() / "test-output" / "dashboard.png", tmp_path / "dashboard.png"]
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page, errors = watched_page(browser)
            page.goto(s.base + "/admin/observability?refresh=1")
            # Not signed in: sent to the form, which brings the admin back here afterwards.
            assert page.url == s.base + "/login?next=/admin/observability%3Frefresh%3D1"
            submit_sign_in(page, "admin@example.com")
            page.wait_for_url(s.base + "/admin/observability?refresh=1")
            # Refreshing itself: a second fetch and redraw, with no reload.
            page.wait_for_function("Number(document.body.dataset.refreshes || 0) >= 2",
                                   timeout=15_000)
            assert page.locator("#logins-chart rect.bar").count() == 24
            drawn = page.eval_on_selector_all(
                "#logins-chart rect.bar", "bars => bars.map(b => Number(b.dataset.value))")
            assert sum(drawn) >= 1  # at least the sign-in just made through the form
            assert page.locator("#latency-chart rect.lat").count() == 3
            assert page.locator("#history-chart polyline").count() == 2
            assert page.text_content("#hit-rate").endswith("%")
            assert float(page.text_content("#hit-rate").split()[0]) > 0
            assert page.text_content("#backend") == "redis"
            assert page.locator("#instances tbody tr").count() == 2
            assert page.text_content("#saved").startswith("$")
            assert not errors, errors
            for path in shots:
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    print(f"dashboard screenshot: {shots[0]} (and {shots[1]})")
    assert all(path.stat().st_size > 10_000 for path in shots)
