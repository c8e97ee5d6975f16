"""`regcopilot doctor`: the guide's troubleshooting as checks, one line each, naming the layer
that failed (URL, TCP, TLS, auth) and never creating anything."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regcopilot.cli import app
from regcopilot.users.postgres import PostgresDirectory
from tests.conftest import REDIS_URL, TEST_SECRET
from tests.support import RedisServer, free_port

VARS = ("NEXTAUTH_SECRET", "NEXTAUTH_URL", "DATABASE_URL", "REDIS_URL", "APP_ENV", "DATA_DIR",
        "OBSERVABILITY_TOKEN", "CACHE_TTL_SECONDS", "SESSION_VALIDATION_INTERVAL_SECONDS",
        "NEXT_PUBLIC_SUPABASE_URL", "NEXT_PUBLIC_SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY",
        "REDIS_KEY_PREFIX", "DATABASE_DIRECT_URL", "DATABASE_STATEMENT_CACHE_SIZE")


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user directory with one admin, made by the CLI as an operator would."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    url = f"sqlite:///{tmp_path}/users.db"
    result = CliRunner().invoke(
        app, ["users", "add", "--email", "admin@example.com", "--password", "long enough pw",
              "--admin"], env=env(tmp_path, DATABASE_URL=url))
    assert result.exit_code == 0, result.output
    return url


def env(tmp_path: Path, **values: str | None) -> dict[str, str | None]:
    base: dict[str, str | None] = dict.fromkeys(VARS)
    base.update(NEXTAUTH_SECRET=TEST_SECRET, DATA_DIR=str(tmp_path / "data"),
                OBSERVABILITY_TOKEN="monitor-token")
    base.update(values)
    return base


def doctor(tmp_path: Path, *args: str, **values: str | None) -> tuple[int, dict[str, str]]:
    result = CliRunner().invoke(app, ["doctor", *args], env=env(tmp_path, **values))
    lines: dict[str, str] = {}
    for line in result.output.splitlines():
        m = re.match(r"^(ok|warn|FAIL|skip)\s+(\S+(?: \S+)?)\s{2,}(.*)$", line)
        if m:
            lines[m.group(2).strip()] = f"{m.group(1)} {m.group(3)}"
    assert result.output.rstrip().splitlines()[-1].endswith("warning(s)"), result.output
    return result.exit_code, lines


async def ensure_schema(pg_url: str) -> None:
    """What the app creates at its first start (doctor itself never creates anything)."""
    directory = PostgresDirectory(pg_url)
    await directory.open()
    await directory.close()


def test_good_configuration_passes(tmp_path, sqlite_db):
    code, lines = doctor(tmp_path, DATABASE_URL=sqlite_db, REDIS_URL=REDIS_URL)
    assert code == 0, lines
    assert lines["environment"].startswith("ok")
    assert lines["redis url"].startswith("ok") and "no TLS" in lines["redis url"]
    assert lines["redis reach"].startswith("ok")
    assert lines["redis auth+ping"].startswith("ok PING answered")
    assert lines["database"].startswith("ok SQLite")
    assert lines["schema"].startswith("ok regcopilot's own schema (SQLite)")
    assert lines["users"] == "ok 1 user(s), 1 admin(s)"
    assert lines["cache backend"].startswith("ok redis:")


def test_no_redis_means_in_memory_and_nothing_created(tmp_path, sqlite_db):
    code, lines = doctor(tmp_path, DATABASE_URL=sqlite_db, NEXTAUTH_SECRET=None)
    assert code == 0
    assert lines["secret"].startswith("warn NEXTAUTH_SECRET not set")
    assert lines["cache backend"].startswith("ok in-memory: REDIS_URL not set")
    assert not (tmp_path / "data" / ".nextauth_secret").exists(), "doctor must not write"
    code, lines = doctor(tmp_path, DATABASE_URL=sqlite_db, APP_ENV="production",
                         NEXTAUTH_SECRET=None)
    assert code == 1
    assert lines["environment"].startswith("FAIL NEXTAUTH_SECRET is required")


def test_bad_redis_url(tmp_path, sqlite_db):
    code, lines = doctor(tmp_path, DATABASE_URL=sqlite_db, REDIS_URL="redis://127.0.0.1:abc")
    assert code == 1
    assert lines["environment"].startswith("FAIL REDIS_URL")
    assert lines["redis url"].startswith("FAIL") and "invalid port" in lines["redis url"]


def test_unreachable_redis(tmp_path, sqlite_db):
    port = free_port()
    code, lines = doctor(tmp_path, DATABASE_URL=sqlite_db, REDIS_URL=f"redis://127.0.0.1:{port}")
    assert code == 1
    assert lines["redis url"].startswith("ok")
    assert lines["redis reach"] == (f"FAIL cannot reach 127.0.0.1:{port}: connection refused "
                                    "(nothing listens there)")
    assert "redis auth+ping" not in lines
    assert lines["cache backend"].startswith("warn redis-disconnected")
    assert lines["database"].startswith("ok")  # the rest still runs


def test_redis_auth_and_tls_failures_are_named(tmp_path, sqlite_db):
    server = RedisServer(password="s3cret").start()
    try:
        base = f"127.0.0.1:{server.port}/0"
        _, lines = doctor(tmp_path, DATABASE_URL=sqlite_db, REDIS_URL=f"redis://{base}")
        assert lines["redis reach"].startswith("ok")
        assert lines["redis auth+ping"].startswith("FAIL authentication failed: the server "
                                                   "requires a password")
        _, lines = doctor(tmp_path, DATABASE_URL=sqlite_db, REDIS_URL=f"redis://:nope@{base}")
        assert lines["redis auth+ping"] == ("FAIL authentication failed: wrong username or "
                                            "password in REDIS_URL")
        code, lines = doctor(tmp_path, DATABASE_URL=sqlite_db, REDIS_URL=f"redis://:s3cret@{base}")
        assert code == 0 and lines["redis auth+ping"].startswith("ok")
        # TLS to a plain server: the handshake is what fails, and the line says so.
        code, lines = doctor(tmp_path, "--timeout", "0.5", DATABASE_URL=sqlite_db,
                             REDIS_URL=f"rediss://:s3cret@{base}")
        assert code == 1
        assert lines["redis tls"].startswith("FAIL TLS handshake")
        assert "plain redis://" in lines["redis tls"]
    finally:
        server.stop()


def test_missing_database(tmp_path, monkeypatch, pg_url):
    monkeypatch.chdir(tmp_path)
    code, lines = doctor(tmp_path, DATABASE_URL="sqlite:///nowhere/users.db")
    assert code == 1
    assert lines["database"].startswith(f"FAIL no database at {tmp_path}/nowhere/users.db")
    assert not (tmp_path / "nowhere").exists()

    missing = pg_url.rsplit("/", 1)[0] + "/regcopilot_no_such_db"
    code, lines = doctor(tmp_path, DATABASE_URL=missing)
    assert code == 1
    assert lines["database"] == ("FAIL database 'regcopilot_no_such_db' does not exist on "
                                 "127.0.0.1:5432")

    code, lines = doctor(tmp_path, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert code == 1 and "connection refused" in lines["database"]


def test_postgres_schema_present(tmp_path, monkeypatch, pg_url):
    monkeypatch.chdir(tmp_path)
    asyncio.run(ensure_schema(pg_url))
    code, lines = doctor(tmp_path, DATABASE_URL=pg_url)
    assert lines["database"].startswith("ok PostgreSQL")
    assert lines["schema"] == ("ok regcopilot's own schema: users in auth.users, sessions in "
                               "public.regcopilot_sessions; change trigger installed")
    assert code == 0


def test_several_database_hosts(tmp_path, monkeypatch, pg_url):
    """libpq's multi-host form (a primary and its standbys, docs/multi-instance.md): the
    doctor connects to whichever accepts writes and names every host; a password is masked."""
    monkeypatch.chdir(tmp_path)
    asyncio.run(ensure_schema(pg_url))
    db = pg_url.rsplit("/", 1)[1]
    down = free_port()
    both = (f"postgresql://postgres:s3cret@127.0.0.1:{down},127.0.0.1:5432/{db}"
            "?target_session_attrs=read-write")
    code, lines = doctor(tmp_path, DATABASE_URL=both)
    assert lines["database"].startswith("ok PostgreSQL"), lines
    assert f"127.0.0.1:{down},127.0.0.1:5432/{db}" in lines["database"]
    gone = f"postgresql://postgres:s3cret@127.0.0.1:{down},127.0.0.1:{free_port()}/x"
    code, lines = doctor(tmp_path, DATABASE_URL=gone)
    assert code == 1 and "connection refused" in lines["database"], lines
    assert "s3cret" not in str(lines)


def test_a_transaction_pooler_is_recognised_and_the_fix_named(tmp_path, monkeypatch, pg_url,
                                                              pgbouncers):
    """A real PgBouncer in front of the test database: in transaction mode its admin console
    and the LISTEN round trip both give it away; in session mode LISTEN works."""
    monkeypatch.chdir(tmp_path)

    asyncio.run(ensure_schema(pg_url))
    pooled = pgbouncers("transaction").url
    code, lines = doctor(tmp_path, DATABASE_URL=pooled, DATABASE_STATEMENT_CACHE_SIZE="0")
    assert code == 0, lines  # warnings, not failures: the app works, by polling
    assert lines["database"].startswith("ok PostgreSQL")
    pooler = lines["pooler"]
    assert pooler.startswith("warn") and "transaction-mode pooler" in pooler, pooler
    assert "pool_mode=transaction" in pooler and "round trip" in pooler, pooler
    feed = lines["change feed"]
    assert feed.startswith("warn poll:") and "set DATABASE_DIRECT_URL" in feed, feed
    code, lines = doctor(tmp_path, DATABASE_URL=pooled, DATABASE_STATEMENT_CACHE_SIZE="0",
                         DATABASE_DIRECT_URL=pg_url)
    assert lines["change feed"].startswith("ok listen-direct:"), lines
    # The direct URL pointed at the pooler by mistake is named too.
    code, lines = doctor(tmp_path, DATABASE_URL=pooled, DATABASE_STATEMENT_CACHE_SIZE="0",
                         DATABASE_DIRECT_URL=pooled)
    assert lines["change feed"].startswith("warn poll: no LISTEN round trip"), lines
    code, lines = doctor(tmp_path, DATABASE_URL=pgbouncers("session").url)
    assert lines["pooler"].startswith("ok PgBouncer in session mode"), lines
    assert lines["change feed"].startswith("ok listen:"), lines
    code, lines = doctor(tmp_path, DATABASE_URL=pg_url)
    assert lines["pooler"].startswith("ok LISTEN round trip"), lines
