"""`regcopilot users …` on a SQLite directory, run as the operator runs it; and a running
instance on the same file that hears a CLI ban without being told."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import uuid
from pathlib import Path

from tests.commands import REGCOPILOT, UUID_RE, cli_env
from tests.conftest import PASSWORD
from tests.support import eventually


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REGCOPILOT, "users", *args], cwd=tmp_path, env=cli_env(tmp_path),
        capture_output=True, text=True, timeout=60,
    )


def listed(tmp_path: Path) -> dict[str, str]:
    """email → the list's state column (prefixed with "admin " for admins)."""
    r = cli(tmp_path, "list")
    assert r.returncode == 0, r.stderr
    rows = {}
    for line in r.stdout.splitlines()[1:]:
        cols = line.split()
        role = "admin " if cols[2] == "admin" else ""
        rows[cols[1]] = role + " ".join(cols[3:])
    return rows


def test_users_commands_on_sqlite(tmp_path):
    r = cli(tmp_path, "add", "--email", "Admin@Example.com", "--password", PASSWORD, "--admin")
    assert r.returncode == 0, r.stderr
    assert re.search(rf"admin@example\.com id={UUID_RE} \(admin\)", r.stdout), r.stdout
    r = cli(tmp_path, "add", "--email", "alice@example.com", "--password", PASSWORD)
    assert r.returncode == 0, r.stderr
    alice = re.search(rf"id=({UUID_RE})", r.stdout).group(1)

    r = cli(tmp_path, "add", "--email", "ALICE@example.com", "--password", PASSWORD)
    assert r.returncode != 0
    assert r.stderr.startswith("error: ") and "alice@example.com" in r.stderr
    assert "exists" in r.stderr and "unavailable" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = cli(tmp_path, "add", "--email", "bob@example.com", "--password", "short")
    assert r.returncode != 0 and r.stderr.startswith("error: ")

    assert listed(tmp_path) == {"admin@example.com": "admin active", "alice@example.com": "active"}

    r = cli(tmp_path, "ban", alice, "--seconds", "3600")
    assert r.returncode == 0, r.stderr
    assert listed(tmp_path)["alice@example.com"].startswith("banned until")
    r = cli(tmp_path, "unban", alice)
    assert r.returncode == 0, r.stderr
    assert listed(tmp_path)["alice@example.com"] == "active"

    r = cli(tmp_path, "invalidate", alice)
    assert r.returncode == 0 and alice in r.stdout, r.stderr

    r = cli(tmp_path, "delete", alice, "--soft")
    assert r.returncode == 0, r.stderr
    assert listed(tmp_path)["alice@example.com"] == "deleted"
    r = cli(tmp_path, "delete", alice)
    assert r.returncode == 0, r.stderr
    assert "alice@example.com" not in listed(tmp_path)


def test_users_commands_fail_clearly_for_unknown_ids(tmp_path):
    unknown = str(uuid.uuid4())
    runs = [
        ("ban", unknown), ("unban", unknown), ("delete", unknown), ("invalidate", "nope"),
        ("ban", "not-a-uuid"), ("delete", "not-a-uuid"),
    ]
    procs = [
        subprocess.Popen([REGCOPILOT, "users", *args], cwd=tmp_path, env=cli_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in runs
    ]
    for args, proc in zip(runs, procs, strict=True):
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode != 0, args
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert args[1] in lines[0], (args, err)


def test_ban_rejects_a_past_end(tmp_path):
    r = cli(tmp_path, "add", "--email", "alice@example.com", "--password", PASSWORD)
    alice = re.search(rf"id=({UUID_RE})", r.stdout).group(1)
    r = cli(tmp_path, "ban", alice, "--until", "2000-01-01T00:00:00")
    assert r.returncode != 0 and r.stderr.startswith("error: ") and "future" in r.stderr
    assert listed(tmp_path)["alice@example.com"] == "active"

    # A ban that has run out is listed as what it is: no ban.
    db = sqlite3.connect(tmp_path / "users.db")
    try:
        db.execute("UPDATE auth_users SET banned_until = '2000-01-01T00:00:00+00:00'")
        db.commit()
    finally:
        db.close()
    assert listed(tmp_path)["alice@example.com"] == "active"


async def run_cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """The CLI in a subprocess without blocking the event loop the instance runs on."""
    proc = await asyncio.create_subprocess_exec(
        REGCOPILOT, "users", *args, cwd=tmp_path, env=cli_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_running_instance_hears_a_cli_ban_from_the_change_feed(instance, tmp_path):
    async with instance("sqlite", "memory") as app:
        alice = await app.add_user("alice@example.com")
        assert (await app.login("alice@example.com")).status_code == 200
        assert (await app.client.get("/api/me")).status_code == 200
        assert (await app.client.get("/api/me")).status_code == 200  # cached

        cache = app.services.cache
        assert cache.peek(alice) is not None
        code, _, err = await run_cli(tmp_path, "ban", alice)
        assert code == 0, err
        # The event: the directory's change feed drops the cached answer, no request asked.
        await eventually(lambda: cache.peek(alice) is None, timeout=10, interval=0.02)
        assert (await app.client.get("/api/me")).status_code == 401

        code, _, err = await run_cli(tmp_path, "unban", alice)
        assert code == 0, err
        assert (await app.login("alice@example.com")).status_code == 200
        await eventually(lambda: _status(app.client.get("/api/me"), 200), timeout=10,
                         interval=0.02)


async def _status(response, expected: int) -> bool:
    return (await response).status_code == expected
