"""The session APIs: a user lists and revokes their own sessions, signs out everywhere; an admin
does the same for any user; the CLI too; each state change is refused cross-site, and counted."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_SECRET
from tests.support import COOKIE, eventually

BEARER = {"Authorization": "Bearer monitor-token"}
REGCOPILOT = str(Path(sys.executable).with_name("regcopilot"))


class Browser:
    """One signed-in client of the app under test (its own cookie and user agent)."""

    def __init__(self, app: Any, cookie: str) -> None:
        self.app, self.cookie = app, cookie

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        self.app.client.cookies.clear()
        self.app.client.cookies.set(COOKIE, self.cookie)
        try:
            return await self.app.client.request(method, path, **kw)
        finally:
            self.app.client.cookies.clear()


async def sign_in(app: Any, email: str, agent: str = "test-agent") -> Browser:
    app.client.cookies.clear()
    r = await app.client.post("/api/auth/login", json={"email": email,
                                                       "password": "correct horse battery"},
                              headers={"user-agent": agent})
    assert r.status_code == 200, r.text
    app.client.cookies.clear()
    return Browser(app, r.cookies[COOKIE])


async def report(app: Any) -> dict:
    app.client.cookies.clear()
    r = await app.client.get("/api/observability", headers=BEARER)
    assert r.status_code == 200
    return r.json()


@pytest.mark.parametrize("directory", ["sqlite", "postgres", "gotrue"])
async def test_list_revoke_one_and_sign_out_other_devices(instance, directory):
    async with instance(directory, "memory") as app:
        await app.add_user("me@example.com")
        await app.add_user("other@example.com")
        laptop = await sign_in(app, "me@example.com", "laptop-browser")
        phone = await sign_in(app, "me@example.com", "phone-browser")
        tablet = await sign_in(app, "me@example.com", "tablet-browser")
        stranger = await sign_in(app, "other@example.com")

        r = await laptop.call("GET", "/api/auth/sessions")
        assert r.status_code == 200, r.text
        rows = r.json()["sessions"]
        assert {s["userAgent"] for s in rows} == {"laptop-browser", "phone-browser",
                                                  "tablet-browser"}
        assert [s["userAgent"] for s in rows if s["current"]] == ["laptop-browser"]
        assert all(s["address"] == "127.0.0.1" and s["createdAt"] for s in rows)
        assert set(rows[0]) >= {"id", "createdAt", "lastSeenAt", "userAgent", "address",
                                "current"}
        phone_id = next(s["id"] for s in rows if s["userAgent"] == "phone-browser")

        # Someone else's session id is not found, and nothing is revoked.
        assert (await stranger.call("DELETE", f"/api/auth/sessions/{phone_id}")
                ).status_code == 404
        assert (await phone.call("GET", "/api/me")).status_code == 200

        r = await laptop.call("DELETE", f"/api/auth/sessions/{phone_id}")
        assert r.status_code == 200 and r.json() == {"ok": True, "revoked": 1, "current": False}
        assert (await phone.call("GET", "/api/me")).status_code == 401
        assert (await laptop.call("DELETE", f"/api/auth/sessions/{phone_id}")
                ).status_code == 404  # already revoked

        r = await laptop.call("POST", "/api/auth/sessions/revoke-all",
                              json={"keepCurrent": True})
        assert r.json() == {"ok": True, "revoked": 1, "current": False}
        assert (await tablet.call("GET", "/api/me")).status_code == 401
        assert (await laptop.call("GET", "/api/me")).status_code == 200
        assert (await stranger.call("GET", "/api/me")).status_code == 200

        r = await laptop.call("POST", "/api/auth/sessions/revoke-all")
        assert r.json() == {"ok": True, "revoked": 1, "current": True}
        assert f"{COOKIE}=;" in r.headers["set-cookie"]
        assert (await laptop.call("GET", "/api/me")).status_code == 401

        sessions = (await report(app))["sessions"]
        assert sessions["issued"] == 4
        assert sessions["revoked"] == {"logout": 0, "user": 3, "admin": 0, "banOrDelete": 0}
        assert sessions["active"] == 1  # the stranger's


async def test_admin_lists_and_revokes_a_users_sessions(instance):
    async with instance("postgres", "redis") as app:
        await app.add_user("boss@example.com", admin=True)
        user_id = await app.add_user("staff@example.com")
        boss = await sign_in(app, "boss@example.com")
        one = await sign_in(app, "staff@example.com", "one")
        two = await sign_in(app, "staff@example.com", "two")
        three = await sign_in(app, "staff@example.com", "three")

        assert (await one.call("GET", f"/api/admin/users/{user_id}/sessions")).status_code == 403
        r = await boss.call("GET", f"/api/admin/users/{user_id}/sessions")
        assert r.status_code == 200
        rows = r.json()["sessions"]
        assert sorted(s["userAgent"] for s in rows) == ["one", "three", "two"]
        assert not any(s["current"] for s in rows)
        assert (await boss.call("GET", "/api/admin/users/not-a-user/sessions")).status_code == 404

        target = next(s["id"] for s in rows if s["userAgent"] == "two")
        r = await boss.call("DELETE", f"/api/admin/users/{user_id}/sessions/{target}")
        assert r.status_code == 200, r.text
        assert (await two.call("GET", "/api/me")).status_code == 401
        assert (await one.call("GET", "/api/me")).status_code == 200

        r = await boss.call("POST", f"/api/admin/users/{user_id}/sessions/revoke-all")
        assert r.json()["revoked"] == 2
        assert (await one.call("GET", "/api/me")).status_code == 401
        assert (await three.call("GET", "/api/me")).status_code == 401
        assert (await boss.call("GET", "/api/me")).status_code == 200

        # A delete revokes whatever the user signed in since.
        four = await sign_in(app, "staff@example.com")
        r = await boss.call("DELETE", f"/api/admin/users/{user_id}?soft=true")
        assert r.status_code == 200
        assert (await four.call("GET", "/api/me")).status_code == 401
        revoked = (await report(app))["sessions"]["revoked"]
        assert revoked["admin"] == 3 and revoked["banOrDelete"] == 1

        scrape = (await app.client.get("/metrics", headers=BEARER)).text
        assert 'regcopilot_sessions_revoked_total{reason="admin"} 3.0' in scrape
        assert "regcopilot_sessions_issued_total 5.0" in scrape
        assert "regcopilot_sessions_active 1.0" in scrape  # the admin's own


async def test_state_changes_are_refused_cross_site(instance):
    async with instance("sqlite", "memory") as app:
        await app.add_user("csrf@example.com")
        me = await sign_in(app, "csrf@example.com")
        evil = {"origin": "https://evil.example"}
        r = await me.call("POST", "/api/auth/sessions/revoke-all", headers=evil)
        assert r.status_code == 403
        rows = (await me.call("GET", "/api/auth/sessions")).json()["sessions"]
        r = await me.call("DELETE", f"/api/auth/sessions/{rows[0]['id']}", headers=evil)
        assert r.status_code == 403
        assert (await me.call("GET", "/api/me")).status_code == 200
        r = await me.call("POST", "/api/auth/sessions/revoke-all",
                          headers={"origin": "http://testserver"})
        assert r.status_code == 200  # same origin: allowed


async def _cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/users.db", DATA_DIR=str(tmp_path / "data"),
               NEXTAUTH_SECRET=TEST_SECRET)
    proc = await asyncio.create_subprocess_exec(
        REGCOPILOT, "sessions", *args, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_lists_and_revokes_and_a_running_instance_hears_it(instance, tmp_path):
    async with instance("sqlite", "memory") as app:
        await app.add_user("cli@example.com")
        one = await sign_in(app, "cli@example.com", "first-agent")
        two = await sign_in(app, "cli@example.com", "second-agent")
        three = await sign_in(app, "cli@example.com", "third-agent")
        code, out, err = await _cli(tmp_path, "list", "--email", "cli@example.com")
        assert code == 0, err
        assert "3 active session(s)" in out and "second-agent" in out
        two_id = app.services.tokens.decode(two.cookie).jti
        assert two_id in out

        code, out, err = await _cli(tmp_path, "revoke", "--email", "cli@example.com",
                                    "--id", two_id)
        assert code == 0, err
        await eventually(lambda: _refused(two), timeout=1.0)
        assert (await one.call("GET", "/api/me")).status_code == 200

        code, _, err = await _cli(tmp_path, "revoke", "--email", "cli@example.com",
                                  "--id", two_id)
        assert code == 1 and "no active session" in err
        code, _, err = await _cli(tmp_path, "revoke", "--email", "cli@example.com")
        assert code == 2 and "exactly one of --all or --id" in err
        code, _, err = await _cli(tmp_path, "list", "--email", "nobody@example.com")
        assert code == 1 and "no user" in err

        code, out, err = await _cli(tmp_path, "revoke", "--email", "cli@example.com", "--all")
        assert code == 0 and "revoked 2 session(s)" in out, err
        await eventually(lambda: _refused(one), timeout=1.0)
        await eventually(lambda: _refused(three), timeout=1.0)


async def _refused(browser: Browser) -> bool:
    return (await browser.call("GET", "/api/me")).status_code == 401
