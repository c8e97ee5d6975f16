"""Issue 25, item 3: every CLI command that names a user takes an id or an email, the same way
(users/lookup.py), and a user that is not there is answered with how to list users."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.commands import REGCOPILOT, UUID_RE, cli_env
from tests.conftest import PASSWORD

LIST_HINT = "`regcopilot users list` shows them"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REGCOPILOT, *args], cwd=tmp_path, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=60)


def ok(tmp_path: Path, *args: str) -> str:
    done = run(tmp_path, *args)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def people(tmp_path: Path) -> dict[str, str]:
    ids = {}
    for email in ("owner@example.com", "bob@example.com"):
        out = ok(tmp_path, "users", "add", "--email", email, "--password", PASSWORD)
        ids[email] = re.search(rf"id=({UUID_RE})", out).group(1)
    return ids


def state(tmp_path: Path, email: str) -> str:
    line = next(x for x in ok(tmp_path, "users", "list").splitlines() if f" {email} " in x)
    return " ".join(line.split()[3:])


def test_users_commands_take_an_email(tmp_path, people):
    bob = people["bob@example.com"]
    out = ok(tmp_path, "users", "ban", "bob@example.com", "--seconds", "600")
    assert f"banned bob@example.com ({bob})" in out
    assert state(tmp_path, "bob@example.com").startswith("banned until")
    ok(tmp_path, "users", "unban", "BOB@example.com")  # as an email is matched at sign-in
    assert state(tmp_path, "bob@example.com") == "active"
    assert f"invalidated bob@example.com ({bob})" in ok(
        tmp_path, "users", "invalidate", "bob@example.com")
    out = ok(tmp_path, "users", "set-password", "bob@example.com", "--password", "another-long-one")
    assert "password set for bob@example.com" in out
    ok(tmp_path, "users", "ban", bob)  # the id still works
    assert state(tmp_path, "bob@example.com").startswith("banned until")
    ok(tmp_path, "users", "delete", "bob@example.com", "--soft")
    assert state(tmp_path, "bob@example.com") == "deleted"


def test_sessions_commands_take_an_email_and_keep_the_email_option(tmp_path, people):
    for args in (["bob@example.com"], ["--email", "bob@example.com"],
                 [people["bob@example.com"]]):
        out = ok(tmp_path, "sessions", "list", *args)
        assert "0 active session(s) for bob@example.com" in out
    out = ok(tmp_path, "sessions", "revoke", "bob@example.com", "--all")
    assert "revoked 0 session(s) of bob@example.com" in out
    out = ok(tmp_path, "sessions", "revoke", "--email", "bob@example.com", "--all")
    assert "revoked 0 session(s) of bob@example.com" in out
    both = run(tmp_path, "sessions", "list", "bob@example.com", "--email", "bob@example.com")
    assert both.returncode == 2 and "name the user once" in both.stderr


def test_workspaces_commands_take_an_email(tmp_path, people):
    out = ok(tmp_path, "workspaces", "create", "Ops", "--owner", "owner@example.com")
    team = re.search(rf"id=({UUID_RE})", out).group(1)
    ok(tmp_path, "workspaces", "add-member", team, "bob@example.com")
    assert "bob@example.com" in ok(tmp_path, "workspaces", "members", team)
    assert re.search(rf"{team}\s+team\s+member", ok(tmp_path, "workspaces", "list",
                                                     "bob@example.com"))
    ok(tmp_path, "workspaces", "set-role", team, "bob@example.com", "viewer")
    assert re.search(r"bob@example\.com\s+viewer", ok(tmp_path, "workspaces", "members", team))
    ok(tmp_path, "workspaces", "remove-member", team, "bob@example.com")
    ok(tmp_path, "workspaces", "add-member", team, "--email", "bob@example.com",
       "--role", "admin")  # the older spelling
    assert re.search(r"bob@example\.com\s+admin", ok(tmp_path, "workspaces", "members", team))


@pytest.mark.parametrize("args", [
    ("users", "ban", "nobody@example.com"),
    ("users", "unban", "nobody@example.com"),
    ("users", "delete", "00000000-0000-4000-8000-000000000000"),
    ("users", "invalidate", "nobody"),
    ("sessions", "list", "nobody@example.com"),
    ("sessions", "revoke", "--email", "nobody@example.com", "--all"),
    ("workspaces", "list", "nobody@example.com"),
    ("workspaces", "create", "X", "--owner", "nobody@example.com"),
])
def test_an_unknown_user_says_how_to_list_users(tmp_path, args):
    done = run(tmp_path, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no user with id or email ") and LIST_HINT in last, last
    assert "Traceback" not in done.stderr
