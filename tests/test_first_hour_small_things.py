"""Issue 25, item 7: small things a user sees. "Last seen" is the sign-in time until the first
batched write; the Browser column names browser and OS; /admin has a Sign out; Typer's help
shows no `<bool>` beside flags and no `{user}` in usage lines."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from regcopilot import cli_help
from regcopilot.cli import app as cli_app

CHROME_LINUX = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/131.0.0.0 Safari/537.36")
SAFARI_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, "
              "like Gecko) Version/17.1 Safari/605.1.15")


async def test_new_sessions_show_sign_in_time_and_browser_names(instance):
    async with instance() as app:
        user_id = await app.add_user("seen@example.com", admin=True)
        r = await app.client.post("/api/auth/login", headers={"user-agent": SAFARI_MAC},
                                  json={"email": "seen@example.com",
                                        "password": "correct horse battery"})
        assert r.status_code == 200
        app.client.cookies.clear()
        r = await app.client.post("/api/auth/login", headers={"user-agent": CHROME_LINUX},
                                  json={"email": "seen@example.com",
                                        "password": "correct horse battery"})
        assert r.status_code == 200
        for path in ("/api/auth/sessions", f"/api/admin/users/{user_id}/sessions"):
            rows = (await app.client.get(path)).json()["sessions"]
            assert len(rows) == 2
            for row in rows:  # no batched write yet: the sign-in is the last use known
                assert row["lastSeenAt"] == row["createdAt"], row
            names = {row["userAgent"]: row["browser"] for row in rows}
            assert names == {CHROME_LINUX: "Chrome 131 on Linux", SAFARI_MAC: "Safari 17 on macOS"}
        await app.services.sessions.flush_seen()  # the batched write: now a real last use
        row = next(x for x in (await app.client.get("/api/auth/sessions")).json()["sessions"]
                   if x["current"])
        assert row["lastSeenAt"] >= row["createdAt"]


async def test_admin_console_has_a_sign_out(instance):
    async with instance() as app:
        await app.add_user("boss@example.com", admin=True)
        assert (await app.login("boss@example.com")).status_code == 200
        page = (await app.client.get("/admin")).text
        assert re.search(r'<form method="post" action="/api/auth/logout"[^>]*>\s*'
                         r'<button type="submit" id="sign-out">Sign out</button>', page)
        out = await app.client.post("/api/auth/logout", data={"from": "admin"})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert (await app.client.get("/admin")).status_code == 303  # back to /login


@pytest.mark.parametrize("command", [
    [], ["users", "ban"], ["users", "add"], ["sessions", "revoke"], ["workspaces", "set-role"],
    ["workspaces", "add-member"], ["monitor"], ["serve"],
])
def test_typer_help_has_no_bool_types_nor_braced_arguments(command):
    assert cli_help.ADJUSTED  # a Typer without the two display methods: look at this again
    done = CliRunner().invoke(cli_app, [*command, "--help"], env={"COLUMNS": "120"})
    assert done.exit_code == 0, done.output
    assert "<bool>" not in done.output, done.output
    usage = next(line for line in done.output.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage
    assert re.search(r"\bhelp\b", done.output)


def test_usage_names_arguments_in_capitals():
    done = CliRunner().invoke(cli_app, ["workspaces", "set-role", "--help"],
                              env={"COLUMNS": "120"})
    usage = r"Usage: \S+ workspaces set-role \[OPTIONS\] WORKSPACE USER ROLE\s"
    assert re.search(usage, done.output), done.output
