"""deploy/prometheus loaded by Debian's Prometheus for real: it scrapes a served instance's
/metrics on loopback with the bearer token read from a file (the token `serve` generated,
as deploy/prometheus/prometheus.yml's credentials_file expects), loads the deployed rule file
unchanged, and an alert goes from inactive to firing when its condition is forced.

Which alert: RegcopilotDeletedUsersHigh, the one with no `for:`, fires when more than 10
sessions of deleted users are refused within an hour; twelve are forced here. The guide's
other natural candidate, the cache backend leaving `redis` in production, is held for 5 min
(`for: 5m`, so a Redis restart does not page anyone); the test kills a Redis of its own and
sees that alert go from inactive to pending, without waiting out the five minutes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from regcopilot.users.sqlite import SqliteDirectory
from tests.conftest import PASSWORD, TEST_SECRET
from tests.live import LiveServer
from tests.support import RedisServer, answering, free_port, hash_password, repo_root, wait_until

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DEPLOY = repo_root() / "deploy" / "prometheus"
DELETED = 12  # the rule alerts above 10 an hour

pytestmark = pytest.mark.skipif(not Path(PROMETHEUS).exists(),
                                reason="Debian's prometheus not installed (scripts/system-deps.sh)")


def scrape_config(target: str, token_file: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with a test's intervals and target; the job name, the
    metrics path, the bearer credentials file and the rule file stay as deployed."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    assert job["authorization"]["type"] == "Bearer" and "credentials_file" in job["authorization"]
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"] = [{"targets": [target]}]
    return config


@contextlib.contextmanager
def prometheus(tmp: Path, config: dict[str, Any]) -> Iterator[str]:
    (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    try:
        with answering(proc, base + "/-/ready", tmp / "prometheus.log", "prometheus ready"):
            yield base
    finally:
        log.close()


def rules(base: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(base + "/api/v1/rules", timeout=5).json()
    return {r["name"]: r for g in body["data"]["groups"] for r in g["rules"]}


def query(base: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(base + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def alert_state(base: str, name: str) -> str:
    return rules(base)[name]["state"]


def test_deployed_rules_in_prometheus_fire_on_a_served_instance(tmp_path):
    redis_server = RedisServer().start()
    server = LiveServer(tmp_path)
    server.env.pop("OBSERVABILITY_TOKEN")  # serve generates one into DATA_DIR
    server.env.update(APP_ENV="production", NEXTAUTH_SECRET=TEST_SECRET,
                      NEXTAUTH_URL=server.base, REDIS_URL=redis_server.url)
    ids = asyncio.run(add_users(tmp_path / "users.db"))
    try:
        server.start()
        token_file = tmp_path / "data" / ".observability_token"
        assert token_file.exists()
        config = scrape_config(f"127.0.0.1:{server.port}", token_file)
        (tmp_path / "prom").mkdir()
        with prometheus(tmp_path / "prom", config) as base:
            # Scraped with the file's token: the target is up and the gauge reads redis.
            wait_until(lambda: query(base, 'regcopilot_cache_backend{backend="redis"} == 1'),
                       timeout=30, interval=0.2, what="first scrape")
            assert query(base, 'up{job="regcopilot"}')[0]["value"][1] == "1"
            loaded = rules(base)
            assert len(loaded) == 15, sorted(loaded)  # promtool counts 15 as well
            wait_until(lambda: all(r.get("lastEvaluation", "").startswith("2")
                                   and r["health"] == "ok" for r in rules(base).values()),
                       timeout=30, interval=0.2, what="every rule evaluated without error")
            alerts = {n: r["state"] for n, r in rules(base).items() if r["type"] == "alerting"}
            assert set(alerts.values()) == {"inactive"}, alerts

            started = time.monotonic()
            force_deleted_sessions(server, ids)
            forced = time.monotonic()
            wait_until(lambda: alert_state(base, "RegcopilotDeletedUsersHigh") == "firing",
                       timeout=60, interval=0.2, what="RegcopilotDeletedUsersHigh firing")
            firing = httpx.get(base + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            deleted = next(a for a in firing if a["labels"]["alertname"]
                           == "RegcopilotDeletedUsersHigh")
            assert deleted["state"] == "firing" and deleted["labels"]["severity"] == "warning"
            assert float(deleted["value"]) > 10
            fired = time.monotonic()

            # The cache backend leaves redis in production: held for its 5 min `for:`.
            assert alert_state(base, "RegcopilotCacheBackendNotRedis") == "inactive"
            redis_server.kill()  # by the PID of the test's own redis-server
            wait_until(lambda: alert_state(base, "RegcopilotCacheBackendNotRedis") == "pending",
                       timeout=60, interval=0.2, what="RegcopilotCacheBackendNotRedis pending")
            print(f"\n{DELETED} deleted sessions forced in {forced - started:.1f} s; "
                  f"RegcopilotDeletedUsersHigh firing {fired - forced:.1f} s later; "
                  f"RegcopilotCacheBackendNotRedis pending {time.monotonic() - fired:.1f} s "
                  "after Redis was killed")
    finally:
        server.stop()
        redis_server.stop()


async def add_users(db: Path) -> dict[str, str]:
    """The admin and DELETED users, straight into the SQLite directory with the tests' cheap
    bcrypt cost (the API would hash at full cost: ~0.8 s a user here)."""
    directory = SqliteDirectory(str(db))
    await directory.open()
    try:
        ids = {}
        for email in ["admin@example.com", *(f"gone{i}@example.com" for i in range(DELETED))]:
            user = await directory.add(email, hash_password(PASSWORD),
                                       admin=email.startswith("admin"))
            ids[email] = user.id
        return ids
    finally:
        await directory.close()


def force_deleted_sessions(server: LiveServer, ids: dict[str, str]) -> None:
    """The DELETED users sign in, are deleted through the admin API, and try their sessions
    again: each refusal is a deleted user detected."""
    gone = [email for email in ids if email.startswith("gone")]
    clients = [httpx.Client(base_url=server.base, timeout=10) for _ in gone]
    try:
        for email, client in zip(gone, clients, strict=True):
            r = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            assert client.get("/api/me").status_code == 200
        with server.session("admin@example.com") as admin:
            for email in gone:
                assert admin.delete(f"/api/admin/users/{ids[email]}").status_code == 200
        for client in clients:
            assert client.get("/api/me").status_code == 401
    finally:
        for client in clients:
            client.close()


def test_promtool_accepts_the_deployed_files(tmp_path):
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    done = subprocess.run([promtool, "check", "rules", str(DEPLOY / "alerts.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "SUCCESS: 15 rules found" in done.stdout, done.stdout
    # The deployed scrape config, with a credentials file that exists on this machine.
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    token = tmp_path / "regcopilot-token"
    token.write_text("t\n")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_feed_alert_fires_once_the_feed_has_not_proved_itself_for_30_s(tmp_path):
    """promtool's rule tests on the deployed rule: proofs every 10 s until t=30 s, then none."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    series = 'regcopilot_change_feed_last_proof_timestamp_seconds{instance="a",job="regcopilot"}'
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    (rule,) = [r for g in rules for r in g["rules"]
               if r.get("alert") == "RegcopilotChangeFeedNotProved"]
    alert = {"exp_labels": {"instance": "a", "job": "regcopilot", "severity": "critical"},
             "exp_annotations": {"summary": "a: change feed not proved for 40s",
                                 "description": rule["annotations"]["description"]}}
    spec = {
        "rule_files": [str(DEPLOY / "alerts.yml")],
        "evaluation_interval": "10s",
        "tests": [{
            "interval": "10s",
            "input_series": [{"series": series, "values": "0 10 20 30 30 30 30 30 30 30"}],
            "alert_rule_test": [
                {"eval_time": "50s", "alertname": "RegcopilotChangeFeedNotProved",
                 "exp_alerts": []},  # 20 s without a proof
                {"eval_time": "70s", "alertname": "RegcopilotChangeFeedNotProved",
                 "exp_alerts": [alert]},  # 40 s
            ],
        }],
    }
    (tmp_path / "feed_test.yml").write_text(json.dumps(spec))
    done = subprocess.run([promtool, "test", "rules", str(tmp_path / "feed_test.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
