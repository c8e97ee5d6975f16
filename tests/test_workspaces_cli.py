"""`regcopilot workspaces …` run as the operator runs it, against the SQLite file a running
instance uses: the instance hears every change through the change log."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.commands import REGCOPILOT, UUID_RE, cli_env
from tests.support import COOKIE, eventually


async def workspaces(tmp_path: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        REGCOPILOT, "workspaces", *args, cwd=tmp_path, env=cli_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_workspace_commands_take_effect_on_a_running_instance(instance, tmp_path):
    async with instance("sqlite", "memory") as app:
        await app.add_user("alice@example.com")
        bob_id = await app.add_user("bob@example.com")
        r = await app.login("bob@example.com")
        personal = r.json()["user"]["tenantId"]
        cookie = r.cookies[COOKIE]
        app.client.cookies.clear()

        async def me() -> dict:
            r = await app.client.get("/api/me", headers={"Cookie": f"{COOKIE}={cookie}"})
            return r.json()

        out = await workspaces(tmp_path, "create", "Ops Team", "--owner", "alice@example.com")
        team = re.search(rf"id=({UUID_RE})", out).group(1)
        await workspaces(tmp_path, "add-member", team, "--email", "bob@example.com",
                         "--role", "admin")
        out = await workspaces(tmp_path, "members", team)
        assert re.search(r"alice@example\.com\s+owner\s+active", out), out
        assert re.search(r"bob@example\.com\s+admin\s+active", out), out

        r = await app.client.post("/api/workspaces/switch", json={"tenantId": team},
                                  headers={"Cookie": f"{COOKIE}={cookie}"})
        assert r.status_code == 200, r.text
        cookie = r.cookies[COOKIE]
        app.client.cookies.clear()
        out = await workspaces(tmp_path, "list", "bob@example.com")
        assert re.search(rf"\* {team}\s+team\s+admin\s+Ops Team", out), out
        assert personal in out

        await workspaces(tmp_path, "set-role", team, "bob@example.com", "viewer")
        await eventually(lambda: _is(me(), "tenantRole", "viewer"), timeout=5)
        await workspaces(tmp_path, "remove-member", team, bob_id)
        await eventually(lambda: _is(me(), "tenantId", personal), timeout=5)


async def _is(body, key: str, value: str) -> bool:
    return (await body).get(key) == value


async def test_invite_delete_restore_commands_on_a_running_instance(instance, tmp_path):
    async with instance("sqlite", "memory") as app:
        await app.add_user("owner@example.com")
        await app.add_user("bob@example.com")
        r = await app.login("bob@example.com")
        personal = r.json()["user"]["tenantId"]
        cookie = r.cookies[COOKIE]
        app.client.cookies.clear()
        out = await workspaces(tmp_path, "create", "Ops Team", "--owner", "owner@example.com")
        team = re.search(rf"id=({UUID_RE})", out).group(1)

        out = await workspaces(tmp_path, "invite", team, "--email", "Bob@Example.com",
                               "--role", "viewer")
        link = re.search(r"https?://\S+/invite/([0-9a-f]{64})", out)
        assert link and "invited bob@example.com to Ops Team as viewer" in out, out
        out = await workspaces(tmp_path, "invitations", team)
        assert re.search(r"bob@example\.com\s+viewer\s+pending", out) and link.group(0) in out
        r = await app.client.post(f"/api/invitations/{link.group(1)}/accept",
                                  headers={"Cookie": f"{COOKIE}={cookie}"})
        assert r.json()["role"] == "viewer", r.text
        r = await app.client.post("/api/workspaces/switch", json={"tenantId": team},
                                  headers={"Cookie": f"{COOKIE}={cookie}"})
        cookie = r.cookies[COOKIE]
        app.client.cookies.clear()
        assert "bob@example.com" not in await workspaces(tmp_path, "invitations")

        async def me() -> dict:
            r = await app.client.get("/api/me", headers={"Cookie": f"{COOKIE}={cookie}"})
            return r.json()

        assert (await me())["tenantId"] == team
        out = await workspaces(tmp_path, "delete", team)
        assert "deleted Ops Team (2 active member(s))" in out, out
        await eventually(lambda: _is(me(), "tenantId", personal), timeout=5)
        assert re.search(rf"{team}\s.*\s2\s+Ops Team", await workspaces(tmp_path, "deleted"))
        out = await workspaces(tmp_path, "restore", team)
        assert "restored Ops Team (2 membership(s))" in out, out
        r = await app.client.get("/api/workspaces", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert team in {w["id"] for w in r.json()["workspaces"]}
