"""Configuration: a bad value stops startup with one line naming the variable; the TTL and the
validation interval reconcile; the generated secret is kept."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from regcopilot.config import ConfigError, load_settings
from tests.conftest import TEST_SECRET

REGCOPILOT = str(Path(sys.executable).with_name("regcopilot"))

BAD = [
    ({"CACHE_TTL_SECONDS": "0"}, "CACHE_TTL_SECONDS"),
    ({"CACHE_TTL_SECONDS": "-5"}, "CACHE_TTL_SECONDS"),
    ({"CACHE_TTL_SECONDS": "five"}, "CACHE_TTL_SECONDS"),
    ({"MAX_CACHE_SIZE": "0"}, "MAX_CACHE_SIZE"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"REDIS_URL": "redis://host:notaport"}, "REDIS_URL"),
    ({"DATABASE_URL": "mysql://user@db/app"}, "DATABASE_URL"),
    ({"DATABASE_URL": "sqlite://"}, "DATABASE_URL"),
    ({"NEXTAUTH_URL": "ftp://example.com"}, "NEXTAUTH_URL"),
    ({"NEXTAUTH_URL": "localhost:3000"}, "NEXTAUTH_URL"),
    ({"APP_ENV": "staging"}, "APP_ENV"),
    ({"APP_ENV": "production", "NEXTAUTH_SECRET": None}, "NEXTAUTH_SECRET"),
    ({"APP_ENV": "production", "NEXTAUTH_SECRET": "short"}, "NEXTAUTH_SECRET"),
    ({"NEXT_PUBLIC_SUPABASE_URL": "xxx.supabase.co"}, "NEXT_PUBLIC_SUPABASE_URL"),
    ({"DATABASE_DIRECT_URL": "sqlite:///./x.db"}, "DATABASE_DIRECT_URL"),
    ({"CHANGE_FEED_POLL_SECONDS": "2"}, "CHANGE_FEED_POLL_SECONDS"),  # past the 2 s bound
    ({"CHANGE_FEED_POLL_SECONDS": "0"}, "CHANGE_FEED_POLL_SECONDS"),
    ({"SESSION_UPDATE_AGE_SECONDS": "0"}, "SESSION_UPDATE_AGE_SECONDS"),
    ({"SESSION_ABSOLUTE_MAX_AGE_SECONDS": "-1"}, "SESSION_ABSOLUTE_MAX_AGE_SECONDS"),
]


@pytest.mark.parametrize(("values", "variable"), BAD)
def test_bad_value_raises_one_line_naming_the_variable(tmp_path, values, variable):
    with pytest.raises(ConfigError) as caught:
        load_settings(**{"DATA_DIR": str(tmp_path), "NEXTAUTH_SECRET": TEST_SECRET, **values})
    message = str(caught.value)
    assert variable in message, message
    assert "\n" not in message and len(message) < 300, message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_URL", "redis://:s3cret@cache.internal:6379"),
        ("REDIS_URL", "rediss://:s3cret@cache.internal:6380/0"),
        ("REDIS_URL", ""),
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/app"),
        ("DATABASE_URL", "postgres://u:p@db.example.supabase.co:5432/postgres"),
        ("DATABASE_URL", "sqlite:///./data/regcopilot.db"),
        ("NEXTAUTH_URL", "https://copilot.example.com/"),
        ("DATABASE_DIRECT_URL", "postgresql://postgres@db.example.supabase.co:5432/postgres"),
        ("DATABASE_DIRECT_URL", ""),
        ("CHANGE_FEED_POLL_SECONDS", "0.5"),
    ],
)
def test_good_values_are_accepted(tmp_path, name, value):
    s = load_settings(DATA_DIR=str(tmp_path), NEXTAUTH_SECRET=TEST_SECRET, **{name: value})
    if name in ("REDIS_URL", "DATABASE_DIRECT_URL") and not value:
        assert getattr(s, name) is None  # empty means unset
    elif name == "NEXTAUTH_URL":
        assert s.NEXTAUTH_URL == "https://copilot.example.com" and s.secure_cookies


def test_production_with_a_long_secret_starts(tmp_path):
    s = load_settings(DATA_DIR=str(tmp_path), APP_ENV="production", NEXTAUTH_SECRET="z" * 32)
    assert s.production and s.NEXTAUTH_SECRET == "z" * 32
    assert not (tmp_path / ".nextauth_secret").exists()


def test_short_secret_outside_production_only_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="regcopilot"):
        s = load_settings(DATA_DIR=str(tmp_path), NEXTAUTH_SECRET="short")
    assert s.NEXTAUTH_SECRET == "short"
    assert any("NEXTAUTH_SECRET" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("ttl", "interval", "used"), [(120, 300, 120), (300, 60, 60)])
def test_ttl_and_interval_differ_smaller_wins_with_a_warning(tmp_path, caplog, ttl, interval,
                                                            used):
    with caplog.at_level(logging.WARNING, logger="regcopilot"):
        s = load_settings(
            DATA_DIR=str(tmp_path), NEXTAUTH_SECRET=TEST_SECRET, CACHE_TTL_SECONDS=ttl,
            SESSION_VALIDATION_INTERVAL_SECONDS=interval,
        )
    assert s.cache_ttl == used
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("CACHE_TTL_SECONDS" in w and "SESSION_VALIDATION_INTERVAL_SECONDS" in w
               for w in warnings), warnings


def test_equal_ttl_and_interval_do_not_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="regcopilot"):
        s = load_settings(DATA_DIR=str(tmp_path), NEXTAUTH_SECRET=TEST_SECRET,
                          CACHE_TTL_SECONDS=200, SESSION_VALIDATION_INTERVAL_SECONDS=200)
    assert s.cache_ttl == 200
    assert not any("CACHE_TTL_SECONDS" in r.getMessage() for r in caplog.records)


async def test_the_ttl_in_force_is_what_the_cache_uses(instance):
    async with instance(CACHE_TTL_SECONDS=600, SESSION_VALIDATION_INTERVAL_SECONDS=90) as app:
        assert app.services.cache.ttl == 90
        r = await app.client.get("/api/observability",
                                 headers={"Authorization": "Bearer monitor-token"})
        assert r.json()["validationCache"]["ttlMs"] == 90_000


def test_generated_secret_is_kept_and_reused(tmp_path, caplog):
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="regcopilot"):
        first = load_settings(DATA_DIR=str(data), NEXTAUTH_SECRET=None)
    second = load_settings(DATA_DIR=str(data), NEXTAUTH_SECRET=None)
    assert first.NEXTAUTH_SECRET and len(first.NEXTAUTH_SECRET.encode()) >= 32
    assert second.NEXTAUTH_SECRET == first.NEXTAUTH_SECRET
    path = data / ".nextauth_secret"
    assert path.read_text().strip() == first.NEXTAUTH_SECRET
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("NEXTAUTH_SECRET" in r.getMessage() for r in caplog.records)
    # Another data folder: another secret.
    other = load_settings(DATA_DIR=str(tmp_path / "other"), NEXTAUTH_SECRET=None)
    assert other.NEXTAUTH_SECRET != first.NEXTAUTH_SECRET


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The process environment without any of our variables, plus the given ones."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["DATA_DIR"] = str(tmp_path / "data")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/users.db"
    env.update(values)
    return env


SERVE_BAD = [  # (environment, the variable the error line must name)
    ({"CACHE_TTL_SECONDS": "0"}, "CACHE_TTL_SECONDS"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"DATABASE_URL": "mysql://user@db/app"}, "DATABASE_URL"),
    ({"NEXTAUTH_URL": "ftp://example.com"}, "NEXTAUTH_URL"),
    ({"APP_ENV": "production"}, "NEXTAUTH_SECRET"),
    ({"APP_ENV": "production", "NEXTAUTH_SECRET": "short"}, "NEXTAUTH_SECRET"),
]


def test_serve_with_a_bad_value_exits_with_one_line(tmp_path):
    procs = []
    for i, (values, variable) in enumerate(SERVE_BAD):
        cwd = tmp_path / f"run{i}"  # no .env there
        cwd.mkdir()
        env = clean_env(cwd, **values)
        procs.append((values, variable, subprocess.Popen(
            [REGCOPILOT, "serve", "--port", "1"], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )))
    for values, variable, proc in procs:
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        lines = err.strip().splitlines()
        assert proc.returncode != 0, (values, out, err)
        assert len(lines) == 1, (values, err)
        assert lines[0].startswith("error: ") and variable in lines[0], (values, err)
        assert "Traceback" not in err


def test_a_bad_value_in_dot_env_stops_serve_too(tmp_path):
    (tmp_path / ".env").write_text("CACHE_TTL_SECONDS=0\n")
    r = subprocess.run([REGCOPILOT, "serve", "--port", "1"], cwd=tmp_path,
                       env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CACHE_TTL_SECONDS"), r.stderr
