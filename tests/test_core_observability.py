"""`/api/observability`: the guide's JSON field by field, the labels at their thresholds, and
who may read it."""

from __future__ import annotations

import re
import time

import pytest

from regcopilot.metrics.counters import last_hours
from regcopilot.metrics.report import costs, effectiveness, iso_ms, time_rating, ttl_advice
from tests.support import eventually

BEARER = {"Authorization": "Bearer monitor-token"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HOUR_KEY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d$")
MONEY = re.compile(r"^\d+\.\d{4}$")
PERCENT = re.compile(r"^\d+\.\d{2}$")


# --- the report's rules, as plain functions --------------------------------------------------

def test_costs_reproduce_the_guides_example():
    # The guide: 45,000 validations, 900 database queries, over one hour.
    assert costs(45_000, 900, 1.0) == {
        "estimatedDatabaseCost": "0.0090",
        "costWithoutCache": "0.4500",
        "savings": "0.4410",
        "savingsPercentage": "98.00",
        "queriesPerHour": 900,
    }



def test_costs_edge_cases():
    empty = costs(0, 0, 1.0)
    assert empty == {
        "estimatedDatabaseCost": "0.0000",
        "costWithoutCache": "0.0000",
        "savings": "0.0000",
        "savingsPercentage": "0.00",
        "queriesPerHour": 0,
    }
    # Every validation a query: nothing saved.
    assert costs(1000, 1000, 2.0)["savingsPercentage"] == "0.00"
    assert costs(1000, 1000, 2.0)["queriesPerHour"] == 500
    assert isinstance(costs(10, 3, 4.0)["queriesPerHour"], int)


@pytest.mark.parametrize(
    ("rate", "label"),
    [(100.0, "Excellent"), (95.01, "Excellent"), (95.0, "Good"), (90.01, "Good"),
     (90.0, "Fair"), (80.01, "Fair"), (80.0, "Poor"), (0.0, "Poor")],
)
def test_effectiveness_thresholds(rate, label):
    assert effectiveness(rate) == label


@pytest.mark.parametrize(
    ("rate", "advice"),
    [(0.0, "Consider increasing cache TTL"), (89.99, "Consider increasing cache TTL"),
     (90.0, "Current TTL is optimal"), (98.0, "Current TTL is optimal")],
)
def test_ttl_advice_thresholds(rate, advice):
    assert ttl_advice(rate) == advice


@pytest.mark.parametrize(
    ("ms", "label"),
    [(0.0, "Excellent"), (9.99, "Excellent"), (10.0, "Good"), (49.99, "Good"),
     (50.0, "Needs optimization"), (500.0, "Needs optimization")],
)
def test_time_rating_thresholds(ms, label):
    assert time_rating(ms) == label


def test_iso_ms_has_milliseconds_and_z():
    assert iso_ms(1_766_923_200_000) == "2025-12-28T12:00:00.000Z"
    assert iso_ms(1_766_926_770_007) == "2025-12-28T12:59:30.007Z"


def test_last_hours_are_24_utc_keys_newest_first():
    # 2025-12-28T12:30Z: the window runs back across midnight to 2025-12-27T13.
    hours = last_hours(1_766_925_000)
    assert len(hours) == 24 and len(set(hours)) == 24
    assert hours[0] == "2025-12-28T12" and hours[12] == "2025-12-28T00"
    assert hours[13] == "2025-12-27T23" and hours[-1] == "2025-12-27T13"


# --- the served JSON ---------------------------------------------------------------------------

def _is_int(v):
    return type(v) is int


def _is_float(v):
    return type(v) is float


def _is_number(v):
    return type(v) in (int, float)


def check_shape(body: dict, *, backend: str, max_size, ttl_ms: int) -> None:
    """Every key of the guide's example, with its type; added keys are allowed."""
    assert set(body) >= {"authentication", "validationCache"}
    auth = body["authentication"]
    assert set(auth) >= {"uptime", "logins", "validations", "users", "costs", "performance"}

    up = auth["uptime"]
    assert set(up) >= {"milliseconds", "hours", "startTime"}
    assert _is_int(up["milliseconds"]) and up["milliseconds"] >= 0
    assert _is_float(up["hours"])
    assert ISO_MS.match(up["startTime"]), up["startTime"]

    logins = auth["logins"]
    assert set(logins) >= {"total", "last24Hours", "lastLoginTimestamp", "averagePerHour"}
    assert _is_int(logins["total"])
    assert _is_float(logins["averagePerHour"])
    hourly = logins["last24Hours"]
    assert isinstance(hourly, dict) and len(hourly) == 24
    assert all(HOUR_KEY.match(k) for k in hourly)
    assert all(_is_int(v) and v >= 0 for v in hourly.values())
    # The 24 UTC hours ending now, newest first, zeros included (an hour may have turned
    # between the response and this check).
    assert list(hourly) in (last_hours(), last_hours(time.time() - 60))
    assert sum(hourly.values()) == logins["total"]
    if logins["total"]:
        assert ISO_MS.match(logins["lastLoginTimestamp"]), logins["lastLoginTimestamp"]
    else:
        assert logins["lastLoginTimestamp"] is None

    v = auth["validations"]
    for key in ("total", "cacheHits", "cacheMisses", "databaseQueries", "failures"):
        assert _is_int(v[key]), key
    assert _is_float(v["cacheHitRate"]) and 0 <= v["cacheHitRate"] <= 100
    assert _is_number(v["averageTimeMs"])
    assert _is_float(v["averagePerHour"])
    assert v["cacheHits"] + v["cacheMisses"] == v["total"]
    if v["total"]:
        assert v["cacheHitRate"] == round(v["cacheHits"] / v["total"] * 100, 2)

    users = auth["users"]
    assert set(users) >= {"activeCount", "deletedDetected", "bannedDetected"}
    assert all(_is_int(users[k]) for k in ("activeCount", "deletedDetected", "bannedDetected"))

    c = auth["costs"]
    for key in ("estimatedDatabaseCost", "costWithoutCache", "savings"):
        assert isinstance(c[key], str) and MONEY.match(c[key]), (key, c[key])
    assert isinstance(c["savingsPercentage"], str) and PERCENT.match(c["savingsPercentage"])
    assert _is_int(c["queriesPerHour"])

    p = auth["performance"]
    assert p["cacheEffectiveness"] == effectiveness(v["cacheHitRate"])
    assert p["recommendedCacheTTL"] == ttl_advice(v["cacheHitRate"])
    assert p["avgValidationTime"] == time_rating(v["averageTimeMs"])

    cache = body["validationCache"]
    assert set(cache) >= {"size", "maxSize", "ttlMs", "backend"}
    assert _is_int(cache["size"]) and cache["size"] >= 0
    assert cache["maxSize"] == max_size and type(cache["maxSize"]) is type(max_size)
    assert cache["ttlMs"] == ttl_ms and _is_int(cache["ttlMs"])
    assert cache["backend"] == backend


@pytest.mark.parametrize(
    ("cache", "backend", "max_size"), [("memory", "in-memory", 1234), ("redis", "redis", None)]
)
async def test_observability_json_field_by_field(instance, cache, backend, max_size):
    async with instance(
        "sqlite", cache, MAX_CACHE_SIZE=1234, CACHE_TTL_SECONDS=120,
        SESSION_VALIDATION_INTERVAL_SECONDS=120,
    ) as app:
        r = await app.client.get("/api/observability", headers=BEARER)
        assert r.status_code == 200
        check_shape(r.json(), backend=backend, max_size=max_size, ttl_ms=120_000)
        assert r.json()["authentication"]["logins"]["total"] == 0

        await app.add_user("alice@example.com")
        assert (await app.login("alice@example.com")).status_code == 200
        for _ in range(3):
            assert (await app.client.get("/api/me")).status_code == 200

        r = await app.client.get("/api/observability", headers=BEARER)
        assert r.status_code == 200
        body = r.json()
        check_shape(body, backend=backend, max_size=max_size, ttl_ms=120_000)
        auth = body["authentication"]
        assert auth["logins"]["total"] == 1
        assert auth["validations"]["total"] == 3
        assert auth["validations"]["cacheMisses"] == 1
        assert auth["validations"]["cacheHits"] == 2
        assert auth["validations"]["databaseQueries"] == 1
        assert auth["validations"]["cacheHitRate"] == 66.67
        assert auth["users"]["activeCount"] == 1
        assert auth["costs"]["queriesPerHour"] == 1  # under an hour: per hour of one hour

        async def size() -> int:
            r = await app.client.get("/api/observability", headers=BEARER)
            return r.json()["validationCache"]["size"]

        # Redis's count is a SCAN, reused for a couple of seconds: poll for it.
        await eventually(lambda: _equals(size(), 1), timeout=5, interval=0.2)


async def _equals(value, expected) -> bool:
    return (await value) == expected


async def test_observability_access(instance):
    async with instance() as app:
        await app.add_user("admin@example.com", admin=True)
        await app.add_user("user@example.com")

        assert (await app.client.get("/api/observability")).status_code == 401
        r = await app.client.get("/api/observability", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        r = await app.client.get("/api/observability", headers={"Authorization": "monitor-token"})
        assert r.status_code == 401
        assert (await app.client.get("/api/observability", headers=BEARER)).status_code == 200

        assert (await app.login("user@example.com")).status_code == 200
        assert (await app.client.get("/api/observability")).status_code == 401
        # A wrong bearer with a non-admin session is still refused.
        r = await app.client.get("/api/observability", headers={"Authorization": "Bearer x"})
        assert r.status_code == 401

        app.client.cookies.clear()
        assert (await app.login("admin@example.com")).status_code == 200
        r = await app.client.get("/api/observability")
        assert r.status_code == 200
        assert "authentication" in r.json()


async def test_observability_without_a_token_configured_is_admin_only(instance):
    async with instance(OBSERVABILITY_TOKEN=None) as app:
        r = await app.client.get("/api/observability", headers={"Authorization": "Bearer "})
        assert r.status_code == 401
        r = await app.client.get("/api/observability", headers={"Authorization": "Bearer None"})
        assert r.status_code == 401


# --- active users: stamped when an answer is first judged, then once a minute ----------------


async def _active(app) -> int:
    r = await app.client.get("/api/observability", headers=BEARER)
    assert r.status_code == 200
    return r.json()["authentication"]["users"]["activeCount"]


def _age_past_the_window(app, user_id: str) -> None:
    """As if the user's last stamp was taken just over 24 hours ago."""
    from regcopilot.metrics.counters import DAY_MS

    app.services.metrics.local.active[user_id] = int(time.time() * 1000) - DAY_MS - 1


async def test_a_user_signed_in_elsewhere_counts_here_and_stays_counted_while_served(pair):
    """Instance b never saw alice sign in: her first request there counts her; while b keeps
    answering her from its reused answer, the minute's flush of used sessions keeps her in the
    24-hour window."""
    async with pair("sqlite", "memory") as (a, b):
        alice = await a.add_user("alice@example.com")
        assert (await a.login("alice@example.com")).status_code == 200
        b.client.cookies.update(a.client.cookies)
        assert await _active(b) == 0
        assert (await b.client.get("/api/me")).status_code == 200
        assert await _active(b) == 1  # at once, not a minute later

        _age_past_the_window(b, alice)
        assert await _active(b) == 0  # the window really dropped her
        for _ in range(3):
            assert (await b.client.get("/api/me")).status_code == 200
        assert await b.services.sessions.flush_seen() == 1
        assert await _active(b) == 1
        # Every minute she is served in, again (a reused answer writes its session once per
        # minute's batch, not once for good); a minute without her writes nothing.
        assert await b.services.sessions.flush_seen() == 0
        for _minute in range(2):
            _age_past_the_window(b, alice)
            for _ in range(3):
                assert (await b.client.get("/api/me")).status_code == 200
            assert await b.services.sessions.flush_seen() == 1
            assert await _active(b) == 1


async def test_active_users_are_stamped_while_the_database_cannot_take_last_seen(
        instance, pg_url):
    """The minute's flush with the database hanging: the users are still counted as active,
    and the sessions' last use is written by the next flush, once it answers."""
    from urllib.parse import urlsplit

    from regcopilot.users.directory import DirectoryUnavailable
    from tests.support import TcpProxy
    from tests.test_core_directory_down import through

    proxy = await TcpProxy(urlsplit(pg_url).port or 5432).start()
    try:
        async with instance("postgres", "memory", DATABASE_URL=through(proxy, pg_url),
                            DATABASE_TIMEOUT_SECONDS=0.5) as app:
            alice = await app.add_user("alice@example.com")
            assert (await app.login("alice@example.com")).status_code == 200
            assert (await app.client.get("/api/me")).status_code == 200
            _age_past_the_window(app, alice)

            proxy.frozen = True
            with pytest.raises(DirectoryUnavailable):
                await app.services.sessions.flush_seen()
            assert await _active(app) == 1
            proxy.frozen = False

            assert await app.services.sessions.flush_seen() == 1  # kept for the next flush
            r = await app.client.get("/api/auth/sessions")
            mine = [s for s in r.json()["sessions"] if s["current"]]
            assert mine and mine[0]["lastSeenAt"] is not None
    finally:
        await proxy.stop()
