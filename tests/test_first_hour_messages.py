"""Issue 25, item 6: messages a newcomer reads. /api/observability and /metrics without a token
say what to send and where `serve` put its token; a missing secret gets the same `openssl`
hint a short one has; a short secret in development is warned about once per start."""

from __future__ import annotations

import pytest

from regcopilot.config import ConfigError, load_settings
from tests.live import LiveServer


async def test_observability_without_a_token_says_what_is_needed(instance):
    async with instance() as app:
        await app.add_user("member@example.com")
        for path in ("/api/observability", "/metrics"):
            anonymous = await app.client.get(path)
            wrong = await app.client.get(path, headers={"Authorization": "Bearer nope"})
            for r in (anonymous, wrong):
                assert r.status_code == 401
                error = r.json()["error"]
                assert "Authorization: Bearer" in error and "admin" in error, error
                assert "DATA_DIR/.observability_token" in error, error
        assert (await app.login("member@example.com")).status_code == 200
        member = await app.client.get("/api/observability")  # signed in, not an admin
        assert member.status_code == 401 and member.json()["error"] == anonymous.json()["error"]
        ok = await app.client.get("/api/observability",
                                  headers={"Authorization": "Bearer monitor-token"})
        assert ok.status_code == 200


def test_missing_production_secret_gives_the_openssl_hint(tmp_path):
    with pytest.raises(ConfigError) as missing:
        load_settings(APP_ENV="production", NEXTAUTH_SECRET=None, DATA_DIR=str(tmp_path))
    assert "openssl rand -base64 32" in str(missing.value)
    with pytest.raises(ConfigError) as short:
        load_settings(APP_ENV="production", NEXTAUTH_SECRET="short", DATA_DIR=str(tmp_path))
    assert "openssl rand -base64 32" in str(short.value)


def test_short_development_secret_is_warned_once_per_start(tmp_path):
    s = LiveServer(tmp_path)
    s.env.update(NEXTAUTH_SECRET="only-sixteen-byt", LOG_LEVEL="INFO")
    s.start()
    try:
        log = s.log.read_text()
    finally:
        s.stop()
    assert log.count("NEXTAUTH_SECRET is shorter than 32 bytes") == 1, log
    assert "openssl rand -base64 32" in log
