"""`GET /metrics`: Prometheus text format from the same numbers as /api/observability, and the
deploy/ rules and dashboard that read it."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import repo_root

TOKEN = {"Authorization": "Bearer monitor-token"}
COUNTERS = ("regcopilot_logins", "regcopilot_validations", "regcopilot_validation_cache_hits",
            "regcopilot_validation_cache_misses", "regcopilot_database_queries",
            "regcopilot_deleted_users_detected", "regcopilot_banned_users_detected")


def parse(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict, name: str, suffix: str = "", **labels: str) -> float:
    for s in families[name].samples:
        if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(name + suffix)


async def test_metrics_text_format_and_access(instance):
    async with instance() as app:
        assert (await app.client.get("/metrics")).status_code == 401
        r = await app.client.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401

        await app.add_user("admin@example.com", admin=True)
        user_id = await app.add_user("alice@example.com")
        assert (await app.login("alice@example.com")).status_code == 200
        for _ in range(5):
            assert (await app.client.get("/api/me")).status_code == 200
        # A signed-in user who is not an admin is refused too.
        assert (await app.client.get("/metrics")).status_code == 401
        app.client.cookies.clear()
        assert (await app.login("admin@example.com")).status_code == 200
        assert (await app.client.delete(f"/api/admin/users/{user_id}")).status_code == 200
        assert (await app.client.get("/metrics")).status_code == 200  # admin session

        app.client.cookies.clear()
        r = await app.client.get("/metrics", headers=TOKEN)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        fams = parse(r.text)
        for name in COUNTERS:
            assert fams[name].type == "counter", name
        report = (await app.client.get("/api/observability", headers=TOKEN)).json()
        v = report["authentication"]["validations"]
        assert value(fams, "regcopilot_validations", "_total") == v["total"]
        assert value(fams, "regcopilot_validation_cache_hits", "_total") == v["cacheHits"]
        assert value(fams, "regcopilot_database_queries", "_total") == v["databaseQueries"]
        assert value(fams, "regcopilot_logins", "_total") == 2

        hist = fams["regcopilot_validation_latency_seconds"]
        assert hist.type == "histogram"
        assert value(fams, "regcopilot_validation_latency_seconds", "_count") == v["total"]
        inf = value(fams, "regcopilot_validation_latency_seconds", "_bucket", le="+Inf")
        buckets = [s for s in hist.samples if s.name.endswith("_bucket")]
        assert inf == v["total"] and len(buckets) > 10

        assert value(fams, "regcopilot_cache_backend", backend="in-memory") == 1
        assert value(fams, "regcopilot_cache_backend", backend="redis") == 0
        assert value(fams, "regcopilot_info", scope="process", app_env="development") == 1


async def test_metrics_on_redis_are_cluster_totals(instance):
    async with instance("sqlite", "redis") as app:
        await app.add_user("bob@example.com")
        assert (await app.login("bob@example.com")).status_code == 200
        for _ in range(3):
            await app.client.get("/api/me")
        fams = parse((await app.client.get("/metrics", headers=TOKEN)).text)
        assert value(fams, "regcopilot_info", scope="cluster") == 1
        assert value(fams, "regcopilot_cache_backend", backend="redis") == 1
        assert value(fams, "regcopilot_instances", status="up") == 1
        assert value(fams, "regcopilot_cluster_metrics_available") == 1
        assert value(fams, "regcopilot_validations", "_total") == 3


def exposed_names() -> set[str]:
    import logging

    from regcopilot.feed import FeedState
    from regcopilot.metrics.counters import Snapshot
    from regcopilot.ops.exposition import exposition, feed_families, render

    snap = Snapshot(start_ms=0, counters={}, time_sum_ms=0, latency=[1] * 16, logins_hourly={},
                    last_login_ms=1, active_users=1, instances=[{"status": "up"}])
    text = exposition(snap, backend="redis", cache_size=1, max_size=None, ttl_seconds=300,
                      app_env="production", scope="cluster").decode()
    feeds = [FeedState(name, logging.getLogger("test")) for name in ("feed", "bus")]
    text += render(feed_families(*feeds)).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def referenced(expr: str) -> set[str]:
    return set(re.findall(r"\bregcopilot_[a-z_]+", expr))


def test_alert_rules_and_dashboard_use_exposed_metrics():
    names = exposed_names()
    rules = yaml.safe_load((repo_root() / "deploy/prometheus/alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    alerts = {r.get("alert") for g in rules["groups"] for r in g["rules"]}
    # The guide's table, one rule per row.
    assert {"RegcopilotCacheHitRateLow", "RegcopilotDatabaseQueriesHigh",
            "RegcopilotValidationSlow", "RegcopilotCacheBackendNotRedis",
            "RegcopilotActiveUsersSpike", "RegcopilotDeletedUsersHigh"} <= alerts
    dashboard = json.loads((repo_root() / "deploy/grafana/regcopilot-auth.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in exprs:
        missing = referenced(expr) - names
        assert not missing, f"{missing} in {expr!r} is not exposed by /metrics"
        assert expr.count("(") == expr.count(")"), expr
        assert "sum(" not in expr.replace(" ", ""), "cluster totals are combined with max()"


async def test_metrics_leave_out_counters_while_redis_is_unreadable(instance):
    from tests.support import RedisServer, eventually

    server = RedisServer().start()
    try:
        async with instance("sqlite", server.url) as app:
            await app.add_user("carol@example.com")
            assert (await app.login("carol@example.com")).status_code == 200
            await app.client.get("/api/me")
            fams = parse((await app.client.get("/metrics", headers=TOKEN)).text)
            assert value(fams, "regcopilot_cluster_metrics_available") == 1
            server.kill()

            async def degraded() -> bool:
                f = parse((await app.client.get("/metrics", headers=TOKEN)).text)
                return value(f, "regcopilot_cache_backend", backend="redis") == 0 and f

            fams = await eventually(degraded, timeout=10, interval=0.1)
            # A gap, not this process's smaller numbers (Prometheus would see a reset).
            assert value(fams, "regcopilot_cluster_metrics_available") == 0
            assert "regcopilot_validations" not in fams
            assert value(fams, "regcopilot_cache_backend", backend="redis-disconnected") == 1
    finally:
        server.stop()


async def test_dashboard_page_access(instance):
    async with instance() as app:
        await app.add_user("admin@example.com", admin=True)
        await app.add_user("dave@example.com")
        r = await app.client.get("/admin/observability")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=/admin/observability"
        assert (await app.login("dave@example.com")).status_code == 200
        r = await app.client.get("/admin/observability")
        assert r.status_code == 403 and "Admins only" in r.text
        app.client.cookies.clear()
        assert (await app.login("admin@example.com")).status_code == 200
        r = await app.client.get("/admin/observability?refresh=2")
        assert r.status_code == 200
        assert 'id="logins-chart"' in r.text and "const REFRESH_MS = 2000;" in r.text
        assert "https://" not in r.text.split("<script>", 1)[1]  # nothing from a CDN
