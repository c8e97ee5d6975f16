"""Issue 25, item 4: which directory is in use can be told. The start log names directory,
cache and change feed in one line (never the database password); a CLI command names the
directory it uses when it is not the README's default one, or with -v."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

from tests.commands import REGCOPILOT, cli_env
from tests.conftest import REDIS_URL
from tests.live import LiveServer
from tests.support import wait_until


def start_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.getMessage().startswith("Directory ")]


async def test_start_line_names_postgres_redis_and_feed_without_password(
        instance, pg_url, caplog):
    with_password = pg_url.replace("postgres@", "postgres:s3cret-pw@", 1)
    assert with_password != pg_url  # the trust-auth server ignores it; the log must too
    host_db = pg_url.split("@", 1)[1]  # 127.0.0.1:5432/regcopilot_test_…
    caplog.set_level(logging.INFO, logger="regcopilot")
    async with instance("postgres", "redis", DATABASE_URL=with_password):
        pass
    lines = start_lines(caplog.records)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"Directory PostgreSQL postgres@{host_db} · "), line
    assert f"cache Redis {REDIS_URL.rsplit('/', 1)[0]}" in line, line
    assert "feed LISTEN/NOTIFY" in line and "Redis pub/sub" in line, line
    assert "s3cret" not in caplog.text


def test_served_start_log_names_sqlite_file_and_in_memory_cache(tmp_path):
    s = LiveServer(tmp_path)
    s.env["LOG_LEVEL"] = "INFO"
    s.start()
    try:
        def logged() -> str | None:
            return next((x for x in s.log.read_text().splitlines() if " Directory " in x), None)

        wait_until(lambda: logged() is not None, timeout=10)
        line = logged() or ""
        assert re.search(rf"Directory SQLite {re.escape(str(tmp_path))}/users\.db · cache "
                         r"in-memory \(REDIS_URL not set\) · feed change log polled$", line), line
    finally:
        s.stop()


def run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REGCOPILOT, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_cli_names_the_directory_unless_it_is_the_default_one(tmp_path):
    env = cli_env(tmp_path)
    done = run(tmp_path, env, "users", "list")
    assert done.returncode == 0, done.stderr
    assert f"directory: SQLite {tmp_path}/users.db" in done.stderr.splitlines()

    default = dict(env)
    del default["DATABASE_URL"]  # the README's ./data/regcopilot.db, from this directory
    first = run(tmp_path, default, "users", "list")  # about to make a new file: said
    assert f"directory: SQLite {tmp_path}/data/regcopilot.db" in first.stderr, first.stderr
    again = run(tmp_path, default, "users", "list")  # the README's own file: quiet
    assert again.returncode == 0 and "directory:" not in again.stderr, again.stderr
    verbose = run(tmp_path, default, "-v", "users", "list")
    assert f"directory: SQLite {tmp_path}/data/regcopilot.db" in verbose.stderr


def test_the_directory_is_named_with_every_host_of_a_multi_host_url():
    """libpq's multi-host form (a primary and its standby, docs/multi-instance.md "Failover"):
    every host named, the user kept, the password never; a start with such a URL once died
    on urlsplit's single port."""
    from regcopilot.where import directory

    url = ("postgresql://app:s3cret@primary.db.example:5432,standby.db.example:5433/copilot"
           "?target_session_attrs=read-write")
    assert directory(url) == ("PostgreSQL app@primary.db.example:5432,"
                              "standby.db.example:5433/copilot")
    assert directory("postgresql://db.example/x") == "PostgreSQL db.example:5432/x"
