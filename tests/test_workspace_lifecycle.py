"""Workspace lifecycle (issue 22), on real SQLite/PostgreSQL and Redis, two in-process instances
on one directory: invite → list → accept → switch → delete (members moved out on both
instances) → restore; every refusal answers a clear 4xx and changes nothing; user_preferences
follows every switch; the upstream's membership_change_events trigger keeps filling its table;
a deletion by plain SQL while every listener is killed reaches both instances on reconnect."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.support import COOKIE, eventually
from tests.tenancy import call, cookie_of, me, sign_in, sql, upstream_database

BACKENDS = [("sqlite", "memory"), ("postgres", "redis")]
PUBLIC_URL = "http://127.0.0.1:8000"


async def _current_records(directory: str, app: Any, pg_url: str, user_id: str) -> tuple:
    """(user_tenant_contexts, user_preferences) current workspace of a user."""
    found = await sql(directory, app, pg_url,
                      "SELECT (SELECT current_tenant_id FROM {contexts} WHERE user_id = $1),"
                      " (SELECT current_tenant_id FROM {preferences} WHERE user_id = $1)",
                      user_id)
    return tuple(str(v) if v is not None else None for v in found[0])


async def _people(a: Any, b: Any) -> dict[str, Any]:
    """alice owns a team and is in it (instance a); bob and eve are signed in on b."""
    tag = uuid.uuid4().hex[:8]
    emails = {who: f"{who}-{tag}@example.com" for who in ("alice", "bob", "eve")}
    ids = {who: await a.add_user(email) for who, email in emails.items()}
    alice, alice_user = await sign_in(a, emails["alice"])
    bob, bob_user = await sign_in(b, emails["bob"])
    eve, _ = await sign_in(b, emails["eve"])
    r = await call(a, "POST", "/api/workspaces", alice, json={"name": "Acme Compliance"})
    team = r.json()["id"]
    r = await call(a, "POST", "/api/workspaces/switch", alice, json={"tenantId": team})
    assert r.status_code == 200, r.text
    return {"emails": emails, "ids": ids, "alice": cookie_of(r), "bob": bob, "eve": eve,
            "team": team, "alice_personal": alice_user["tenantId"],
            "bob_personal": bob_user["tenantId"]}


def _token(r: Any) -> str:
    """The token in an invitation's link."""
    return r.json()["invitation"]["inviteUrl"].rsplit("/", 1)[1]


async def _bob_joins(a: Any, b: Any, s: dict[str, Any], role: str) -> None:
    """alice invites bob (instance a), bob accepts (instance b)."""
    r = await call(a, "POST", "/api/invitations", s["alice"],
                   json={"email": s["emails"]["bob"], "role": role})
    r = await call(b, "POST", f"/api/invitations/{_token(r)}/accept", s["bob"])
    assert r.status_code == 200, r.text


async def _served_in(app: Any, cookie: str, tenant: str) -> Any:
    r = await me(app, cookie)
    return r if r.status_code == 200 and r.json()["tenantId"] == tenant else None


@pytest.mark.parametrize(("directory", "cache"), BACKENDS)
async def test_journey_invite_list_accept_switch_delete_restore(pair, pg_url, caplog,
                                                                directory, cache):
    async with pair(directory, cache) as (a, b):
        s = await _people(a, b)
        # Invite bob into alice's current workspace (the team).
        with caplog.at_level(logging.INFO, logger="regcopilot.workspaces"):
            r = await call(a, "POST", "/api/invitations", s["alice"],
                           json={"email": s["emails"]["bob"].upper(), "role": "member"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"success", "invitation"} and body["success"] is True
        invitation = body["invitation"]
        assert set(invitation) == {"id", "email", "role", "workspaceName", "inviteUrl",
                                   "expiresAt"}
        assert (invitation["email"], invitation["role"], invitation["workspaceName"]) == (
            s["emails"]["bob"], "member", "Acme Compliance")
        public = a.services.settings.NEXTAUTH_URL.rstrip("/")
        match = re.fullmatch(re.escape(public) + r"/invite/([0-9a-f]{64})",
                             invitation["inviteUrl"])
        assert match, invitation["inviteUrl"]
        token = match.group(1)
        logged = [rec.getMessage() for rec in caplog.records if invitation["inviteUrl"] in
                  rec.getMessage()]
        assert len(logged) == 1 and logged[0].startswith("Workspace invitation for")
        # Stored in the upstream's shape: the token, a 7-day expiry, the inviter.
        (stored,) = await sql(directory, a, pg_url,
                              "SELECT token, role, email, invited_by, expires_at, created_at,"
                              " accepted_at FROM {invitations} WHERE id = $1", invitation["id"])
        assert stored[:4] == (token, "member", s["emails"]["bob"],
                              uuid.UUID(s["ids"]["alice"]) if directory == "postgres"
                              else s["ids"]["alice"])
        from regcopilot.users.rows import as_datetime

        lifetime = as_datetime(stored[4]) - as_datetime(stored[5])
        assert abs(lifetime - timedelta(days=7)) < timedelta(seconds=1) and stored[6] is None

        # bob lists it (on the other instance), accepts, and accepting again says so.
        r = await call(b, "GET", "/api/invitations", s["bob"])
        assert r.status_code == 200
        (pending,) = r.json()["invitations"]
        assert (pending["id"], pending["workspaceId"], pending["workspaceName"],
                pending["invitedByEmail"], pending["role"]) == (
            invitation["id"], s["team"], "Acme Compliance", s["emails"]["alice"], "member")
        assert (await call(b, "GET", "/api/invitations", s["eve"])).json() == {"invitations": []}
        home = (await call(b, "GET", "/", s["bob"])).text
        assert 'id="my-invitations"' in home and f'href="/invite/{token}"' in home
        r = await call(b, "POST", f"/api/invitations/{token}/accept", s["bob"])
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in ("success", "tenantId", "role", "alreadyMember")} == {
            "success": True, "tenantId": s["team"], "role": "member", "alreadyMember": False}
        r = await call(a, "POST", f"/api/invitations/{token}/accept", s["bob"])
        assert r.status_code == 200 and r.json()["alreadyMember"] is True, r.text
        assert (await call(b, "GET", "/api/invitations", s["bob"])).json()["invitations"] == []
        assert 'id="my-invitations"' not in (await call(b, "GET", "/", s["bob"])).text
        members = (await call(a, "GET", f"/api/workspaces/{s['team']}/members",
                              s["alice"])).json()["members"]
        assert {(m["email"], m["role"]) for m in members} == {
            (s["emails"]["alice"], "owner"), (s["emails"]["bob"], "member")}

        # bob switches into the team: both records of the current workspace follow.
        r = await call(b, "POST", "/api/workspaces/switch", s["bob"],
                       json={"tenantId": s["team"]})
        assert r.status_code == 200, r.text
        bob = cookie_of(r)
        assert await _current_records(directory, a, pg_url, s["ids"]["bob"]) == (
            s["team"], s["team"])
        for app in (a, b):
            for _ in range(2):  # served from each instance's cache
                assert (await me(app, bob)).json()["tenantId"] == s["team"]

        # alice deletes the team: her own answer moves her session at once ...
        r = await call(a, "DELETE", f"/api/workspaces/{s['team']}", s["alice"])
        assert r.status_code == 200, r.text
        deleted = r.json()
        assert (deleted["success"], deleted["workspace_name"], deleted["members_affected"],
                deleted["grace_period_days"]) == (True, "Acme Compliance", 2, 30)
        assert r.headers["x-workspace-changed"] == s["alice_personal"]
        assert (await me(a, cookie_of(r))).json()["tenantId"] == s["alice_personal"]
        # ... and bob's, on both instances, the way a lost workspace does.
        for app in (a, b):
            r = await eventually(
                lambda app=app: _served_in(app, bob, s["bob_personal"]), timeout=5)
            assert r.headers["x-workspace-changed"] == s["bob_personal"]
            assert (await me(app, cookie_of(r))).json()["tenantId"] == s["bob_personal"]
            listed = (await call(app, "GET", "/api/workspaces", bob)).json()["workspaces"]
            assert [w["id"] for w in listed] == [s["bob_personal"]]
        assert await _current_records(directory, a, pg_url, s["ids"]["bob"]) == (
            s["bob_personal"], s["bob_personal"])
        r = await call(b, "POST", "/api/workspaces/switch", bob, json={"tenantId": s["team"]})
        assert r.status_code == 403
        # Its details say who may restore it, and until when.
        seen = {}
        for who, cookie in (("alice", s["alice"]), ("bob", bob)):
            r = await call(b, "GET", f"/api/workspaces/{s['team']}", cookie)
            assert r.status_code == 200, r.text
            seen[who] = r.json()
        assert seen["alice"]["workspace"]["canRestore"] is True
        assert seen["alice"]["workspace"]["daysUntilPermanentDeletion"] == 30
        assert seen["alice"]["workspace"]["deleted_by"] == s["ids"]["alice"]
        assert seen["bob"]["workspace"]["canRestore"] is False
        assert seen["bob"]["membership"]["role"] == "member"
        assert seen["bob"]["membership"]["deleted_at"] is not None

        # Restored: the team is back in bob's lists everywhere, and he can go back in.
        r = await call(b, "PATCH", f"/api/workspaces/{s['team']}", s["alice"],
                       json={"action": "restore"})
        assert r.status_code == 200, r.text
        assert (r.json()["success"], r.json()["members_restored"]) == (True, 2)

        async def listed_again(app: Any) -> bool:
            found = (await call(app, "GET", "/api/workspaces", bob)).json()["workspaces"]
            return {w["id"] for w in found} == {s["team"], s["bob_personal"]}

        for app in (a, b):
            await eventually(lambda app=app: listed_again(app), timeout=5)
        r = await call(a, "POST", "/api/workspaces/switch", bob, json={"tenantId": s["team"]})
        assert r.status_code == 200, r.text
        for app in (a, b):
            assert (await me(app, cookie_of(r))).json()["tenantRole"] == "member"


async def _snapshot(directory: str, app: Any, pg_url: str) -> list:
    """Everything a refused request must leave as it was."""
    return [
        sorted(map(str, await sql(directory, app, pg_url,
                                  "SELECT id, email, role, accepted_at FROM {invitations}"))),
        sorted(map(str, await sql(directory, app, pg_url,
                                  "SELECT tenant_id, user_id, role, status, deleted_at"
                                  " FROM {members}"))),
        sorted(map(str, await sql(directory, app, pg_url,
                                  "SELECT id, deleted_at, deleted_by FROM {tenants}"))),
        sorted(map(str, await sql(directory, app, pg_url,
                                  "SELECT user_id, current_tenant_id FROM {contexts}"))),
    ]


@pytest.mark.parametrize(("directory", "cache"), BACKENDS)
async def test_every_refusal_is_a_clear_4xx_and_changes_nothing(pair, pg_url, directory,
                                                                cache):
    async with pair(directory, cache) as (a, b):
        s = await _people(a, b)
        r = await call(a, "POST", "/api/invitations", s["alice"],
                       json={"email": s["emails"]["bob"], "role": "viewer"})
        token = _token(r)
        invitation_id = r.json()["invitation"]["id"]
        # carol: a viewer, made through an accepted invitation.
        carol_email = f"carol-{uuid.uuid4().hex[:6]}@example.com"
        carol_id = await a.add_user(carol_email)
        r = await call(a, "POST", "/api/invitations", s["alice"],
                       json={"email": carol_email, "role": "viewer"})
        carol, _ = await sign_in(a, carol_email)
        carol_token = _token(r)
        assert (await call(a, "POST", f"/api/invitations/{carol_token}/accept",
                           carol)).status_code == 200
        r = await call(a, "POST", "/api/workspaces/switch", carol, json={"tenantId": s["team"]})
        carol = cookie_of(r)
        # An expired invitation and one for a different email.
        r = await call(a, "POST", "/api/invitations", s["alice"],
                       json={"email": "late@example.com", "role": "member"})
        late_token = _token(r)
        past = "{now}" if directory == "sqlite" else "now() - interval '1 minute'"
        await sql(directory, a, pg_url,
                  "UPDATE {invitations} SET expires_at = " + past + " WHERE token = $1",
                  late_token)
        late_id = await a.add_user("late@example.com")
        late, _ = await sign_in(a, "late@example.com")
        # dan: a plain member, working in the team.
        dan_email = f"dan-{uuid.uuid4().hex[:6]}@example.com"
        await a.add_user(dan_email)
        dan, _ = await sign_in(a, dan_email)
        r = await call(a, "POST", f"/api/workspaces/{s['team']}/members", s["alice"],
                       json={"email": dan_email, "role": "member"})
        r = await call(a, "POST", "/api/workspaces/switch", dan, json={"tenantId": s["team"]})
        dan = cookie_of(r)
        before = await _snapshot(directory, a, pg_url)

        refusals: list[tuple[str, str, str, Any, int, str]] = [
            # (who, method, path, json, status, words in the message)
            ("alice", "POST", "/api/invitations", {"email": "x@example.com", "role": "owner"},
             400, "role"),
            ("alice", "POST", "/api/invitations", {"email": "x@example.com", "role": "boss"},
             400, "role"),
            ("alice", "POST", "/api/invitations", {"email": "x@example.com"}, 400, "role"),
            ("alice", "POST", "/api/invitations", {"email": "not-an-email", "role": "member"},
             400, "email"),
            ("alice", "POST", "/api/invitations", {"email": 42, "role": "member"}, 400, "email"),
            ("alice", "POST", "/api/invitations", ["x@example.com"], 400, "JSON object"),
            ("alice", "POST", "/api/invitations", {"email": "a@b.c\x00", "role": "member"},
             400, "email"),
            ("carol", "POST", "/api/invitations", {"email": "x@example.com", "role": "member"},
             403, "owners and admins"),
            ("dan", "POST", "/api/invitations", {"email": "x@example.com", "role": "viewer"},
             403, "owners and admins"),
            ("dan", "DELETE", f"/api/invitations/{invitation_id}", None, 403,
             "owners and admins"),
            ("dan", "DELETE", f"/api/workspaces/{s['team']}", None, 403, "owners"),
            ("alice", "POST", "/api/invitations", {"email": s["emails"]["bob"],
                                                   "role": "member"}, 409, "pending"),
            ("alice", "POST", "/api/invitations", {"email": carol_email, "role": "member"},
             409, "already a member"),
            ("eve", "POST", f"/api/invitations/{token}/accept", None, 403, "different email"),
            ("bob", "POST", f"/api/invitations/{uuid.uuid4().hex * 2}/accept", None, 400,
             "not valid"),
            ("bob", "POST", "/api/invitations/not-a-token/accept", None, 400, "not valid"),
            ("late", "POST", f"/api/invitations/{late_token}/accept", None, 400, "expired"),
            ("carol", "DELETE", f"/api/invitations/{invitation_id}", None, 403,
             "owners and admins"),
            ("alice", "DELETE", f"/api/invitations/{uuid.uuid4()}", None, 404, "not found"),
            ("alice", "DELETE", "/api/invitations/not-a-uuid", None, 404, "not found"),
            ("carol", "DELETE", f"/api/workspaces/{s['team']}", None, 403, "owners"),
            ("bob", "DELETE", f"/api/workspaces/{s['team']}", None, 403, "owners"),
            ("alice", "DELETE", f"/api/workspaces/{s['alice_personal']}", None, 400,
             "personal"),
            ("alice", "DELETE", f"/api/workspaces/{uuid.uuid4()}", None, 404,
             "no such workspace"),
            ("alice", "DELETE", "/api/workspaces/not-a-uuid", None, 404, "no such workspace"),
            ("eve", "GET", f"/api/workspaces/{s['team']}", None, 403, "not a member"),
            ("eve", "GET", f"/api/workspaces/{uuid.uuid4()}", None, 404, "not found"),
            ("alice", "PATCH", f"/api/workspaces/{s['team']}", {"action": "undelete"}, 400,
             "restore"),
            ("alice", "PATCH", f"/api/workspaces/{s['team']}", {"action": "restore"}, 400,
             "not deleted"),
            ("carol", "PATCH", f"/api/workspaces/{s['team']}", "restore", 400, "JSON object"),
        ]
        cookies = {"alice": s["alice"], "bob": s["bob"], "eve": s["eve"], "carol": carol,
                   "late": late, "dan": dan}
        for who, method, path, payload, status, words in refusals:
            kw = {"json": payload} if payload is not None else {}
            r = await call(a, method, path, cookies[who], **kw)
            assert (r.status_code, words in r.json()["error"]) == (status, True), (
                who, method, path, r.status_code, r.text)
        r = await a.client.post("/api/invitations", content=b"{not json",
                                headers={"Cookie": f"{COOKIE}={s['alice']}",
                                         "Content-Type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json()["error"]
        assert await _snapshot(directory, a, pg_url) == before

        # A cancelled invitation can no longer be accepted.
        r = await call(a, "DELETE", f"/api/invitations/{invitation_id}", s["alice"])
        assert r.status_code == 200 and r.json()["success"] is True
        r = await call(b, "POST", f"/api/invitations/{token}/accept", s["bob"])
        assert r.status_code == 400 and "cancelled" in r.json()["error"]
        # Deleted: invitations into it are refused; an outsider may not restore; 30 days on,
        # nobody may.
        r = await call(a, "POST", "/api/invitations", s["alice"],
                       json={"email": s["emails"]["bob"], "role": "member"})
        token = _token(r)
        assert (await call(a, "DELETE", f"/api/workspaces/{s['team']}",
                           s["alice"])).status_code == 200
        r = await call(b, "POST", f"/api/invitations/{token}/accept", s["bob"])
        assert r.status_code == 400 and "deleted" in r.json()["error"]
        for who in ("eve", "carol", "late", "dan"):
            r = await call(a, "PATCH", f"/api/workspaces/{s['team']}", cookies[who],
                           json={"action": "restore"})
            assert r.status_code == 403, (who, r.text)
        r = await call(a, "DELETE", f"/api/workspaces/{s['team']}", s["alice"])
        assert r.status_code == 404
        old = ("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-31 days')" if directory == "sqlite"
               else "now() - interval '31 days'")
        await sql(directory, a, pg_url, "UPDATE {tenants} SET deleted_at = " + old +
                  " WHERE id = $1", s["team"])
        r = await call(a, "PATCH", f"/api/workspaces/{s['team']}", s["alice"],
                       json={"action": "restore"})
        assert r.status_code == 400 and "grace period" in r.json()["error"]
        assert late_id and carol_id


@pytest.mark.parametrize(("directory", "cache"), BACKENDS)
async def test_plain_sql_delete_moves_members_out_on_both_instances_and_restore_by_sql(
        pair, pg_url, directory, cache):
    async with pair(directory, cache) as (a, b):
        s = await _people(a, b)
        await _bob_joins(a, b, s, "admin")
        r = await call(b, "POST", "/api/workspaces/switch", s["bob"],
                       json={"tenantId": s["team"]})
        bob = cookie_of(r)
        for app in (a, b):
            for cookie in (bob, s["alice"]):
                assert (await me(app, cookie)).json()["tenantId"] == s["team"]
        await sql(directory, a, pg_url, "UPDATE {tenants} SET deleted_at = {now} WHERE id = $1",
                  s["team"])
        for app in (a, b):
            for cookie, personal in ((bob, s["bob_personal"]), (s["alice"], s["alice_personal"])):
                r = await eventually(lambda app=app, c=cookie, p=personal: _served_in(app, c, p),
                                     timeout=5)
                assert r.headers["x-workspace-changed"] == personal
        # A workspace deleted by plain SQL (no deleted_by) can be restored by its owner.
        r = await call(a, "PATCH", f"/api/workspaces/{s['team']}", s["alice"],
                       json={"action": "restore"})
        assert r.status_code == 200, r.text
        r = await call(b, "POST", "/api/workspaces/switch", bob, json={"tenantId": s["team"]})
        assert r.status_code == 200 and r.json()["tenantRole"] == "admin"


@pytest.mark.parametrize("directory", ["sqlite", "postgres"])
async def test_every_switch_writes_user_preferences(instance, pg_url, directory):
    """API switch, automatic switch (access lost), sign-in switch and the first personal
    workspace: user_preferences.current_tenant_id says what user_tenant_contexts says."""
    async with instance(directory, "memory") as app:
        tag = uuid.uuid4().hex[:8]
        await app.add_user(f"owner-{tag}@example.com")
        dan_id = await app.add_user(f"dan-{tag}@example.com")
        owner, _ = await sign_in(app, f"owner-{tag}@example.com")
        dan, dan_user = await sign_in(app, f"dan-{tag}@example.com")
        personal = dan_user["tenantId"]
        assert await _current_records(directory, app, pg_url, dan_id) == (personal, personal)
        teams = []
        for name in ("One", "Two"):
            r = await call(app, "POST", "/api/workspaces", owner, json={"name": name})
            teams.append(r.json()["id"])
            await call(app, "POST", f"/api/workspaces/{teams[-1]}/members", owner,
                       json={"email": f"dan-{tag}@example.com"})
        r = await call(app, "POST", "/api/workspaces/switch", dan, json={"tenantId": teams[0]})
        assert await _current_records(directory, app, pg_url, dan_id) == (teams[0], teams[0])
        dan = cookie_of(r)
        # Automatic: access to One lost → served (and recorded) in the personal workspace.
        await sql(directory, app, pg_url, "UPDATE {members} SET status = 'suspended'"
                  " WHERE tenant_id = $1 AND user_id = $2", teams[0], dan_id)
        await eventually(lambda: _served_in(app, dan, personal), timeout=5)
        assert await _current_records(directory, app, pg_url, dan_id) == (personal, personal)
        # Sign-in: the stored workspace is gone by the time dan signs in again.
        r = await call(app, "POST", "/api/workspaces/switch", dan, json={"tenantId": teams[1]})
        assert r.status_code == 200
        await sql(directory, app, pg_url, "UPDATE {members} SET status = 'removed'"
                  " WHERE tenant_id = $1 AND user_id = $2", teams[1], dan_id)
        await sql(directory, app, pg_url, "UPDATE {members} SET status = 'removed'"
                  " WHERE tenant_id = $1 AND user_id = $2", personal, dan_id)
        await sql(directory, app, pg_url, "UPDATE {members} SET status = 'active'"
                  " WHERE tenant_id = $1 AND user_id = $2", teams[0], dan_id)
        _cookie, body = await sign_in(app, f"dan-{tag}@example.com")
        assert body["tenantId"] == teams[0]
        assert await _current_records(directory, app, pg_url, dan_id) == (teams[0], teams[0])


# The upstream's trigger, rewritten here in its behaviour (not its text): one event row per
# membership added, role change or status change, with the inviter as changed_by on adds.
UPSTREAM_EVENTS = """
CREATE TABLE copilot_core.membership_change_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL,
    tenant_id uuid NOT NULL, event_type text NOT NULL, old_role text, new_role text,
    old_status text, new_status text, changed_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(), processed_at timestamptz);
CREATE FUNCTION copilot_core.on_membership_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO copilot_core.membership_change_events
            (user_id, tenant_id, event_type, new_role, new_status, changed_by)
        VALUES (NEW.user_id, NEW.tenant_id, 'added', NEW.role, NEW.status, NEW.invited_by);
    ELSIF TG_OP = 'UPDATE' AND (OLD.role <> NEW.role OR OLD.status <> NEW.status) THEN
        INSERT INTO copilot_core.membership_change_events
            (user_id, tenant_id, event_type, old_role, new_role, old_status, new_status)
        VALUES (NEW.user_id, NEW.tenant_id,
                CASE WHEN OLD.role <> NEW.role THEN 'role_changed'
                     WHEN NEW.status = 'suspended' THEN 'suspended'
                     WHEN OLD.status = 'suspended' AND NEW.status = 'active' THEN 'reactivated'
                     ELSE 'status_changed' END,
                OLD.role, NEW.role, OLD.status, NEW.status);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO copilot_core.membership_change_events
            (user_id, tenant_id, event_type, old_role, old_status)
        VALUES (OLD.user_id, OLD.tenant_id, 'removed', OLD.role, OLD.status);
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;
CREATE TRIGGER membership_change_trigger
    AFTER INSERT OR UPDATE OR DELETE ON copilot_core.tenant_memberships
    FOR EACH ROW EXECUTE FUNCTION copilot_core.on_membership_change();
"""


async def test_upstream_membership_change_events_trigger_still_fills_its_table(pair, pg_url):
    async with pair("postgres", "redis") as (a, b):
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(UPSTREAM_EVENTS)
            s = await _people(a, b)
            await _bob_joins(a, b, s, "viewer")
            r = await call(a, "PATCH", f"/api/workspaces/{s['team']}/members/{s['ids']['bob']}",
                           s["alice"], json={"role": "member"})
            assert r.status_code == 200
            assert (await call(a, "DELETE", f"/api/workspaces/{s['team']}",
                               s["alice"])).status_code == 200
            assert (await call(a, "PATCH", f"/api/workspaces/{s['team']}", s["alice"],
                               json={"action": "restore"})).status_code == 200
            events = await conn.fetch(
                "SELECT event_type, new_role, changed_by FROM copilot_core.membership_change_events"
                " WHERE user_id = $1 AND tenant_id = $2 ORDER BY created_at, event_type",
                uuid.UUID(s["ids"]["bob"]), uuid.UUID(s["team"]))
            assert [(e[0], e[1]) for e in events] == [("added", "viewer"),
                                                      ("role_changed", "member")]
            assert str(events[0][2]) == s["ids"]["alice"]  # the inviter
        finally:
            await conn.execute("DROP TABLE IF EXISTS copilot_core.membership_change_events;"
                               " DROP TRIGGER IF EXISTS membership_change_trigger"
                               " ON copilot_core.tenant_memberships;"
                               " DROP FUNCTION IF EXISTS copilot_core.on_membership_change()")
            await conn.close()


async def test_sql_delete_while_listeners_are_killed_reaches_every_instance(pair, pg_url):
    """Fault: the deletion commits while every instance's listener is gone; the change log
    replayed on reconnect moves the members out everywhere (the pattern of
    tests/test_freshness.py's workspace-access fault test)."""
    async with pair("postgres", "redis") as (a, b):
        s = await _people(a, b)
        for app in (a, b):
            assert (await me(app, s["alice"])).json()["tenantId"] == s["team"]
            await eventually(lambda app=app: app.services.cache.freshness.proving, timeout=5)
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
                " current_database() AND application_name = 'regcopilot-listener';"
                f" UPDATE copilot_core.tenants SET deleted_at = now() WHERE id = '{s['team']}'")
        finally:
            await conn.close()
        for app in (a, b):
            await eventually(lambda app=app: _served_in(app, s["alice"], s["alice_personal"]),
                             timeout=6.0)


async def test_upstream_database_invitations_and_preferences(settings_for):
    """On a database shaped like the upstream's (pgcrypto installed, a user_preferences table
    of its own with row-level security and preferences kept in it): the invitations table this
    app creates gets the upstream's token default, so a row inserted the upstream's way (no
    token) gets 32 random bytes in hex; the existing preferences row keeps its other columns
    and follows the switches."""
    from tests.conftest import serve

    async with upstream_database("""
                CREATE SCHEMA extensions;
                CREATE EXTENSION pgcrypto SCHEMA extensions;
                CREATE SCHEMA copilot_core;
                CREATE TABLE copilot_core.tenants (
                    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL,
                    slug text UNIQUE, type text NOT NULL DEFAULT 'personal',
                    owner_id uuid NOT NULL, deleted_at timestamptz, deleted_by uuid,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now());
                CREATE TABLE copilot_core.user_preferences (
                    user_id uuid PRIMARY KEY REFERENCES auth.users(id) ON DELETE CASCADE,
                    current_tenant_id uuid REFERENCES copilot_core.tenants(id)
                        ON DELETE SET NULL,
                    preferences jsonb NOT NULL DEFAULT '{}'::jsonb,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now());
                ALTER TABLE copilot_core.user_preferences ENABLE ROW LEVEL SECURITY;
            """) as url:
        async with serve(settings_for("postgres", "memory", DATABASE_URL=url)) as app:
            owner_id = await app.add_user("owner@example.com")
            bob_id = await app.add_user("bob@example.com")
            owner, _ = await sign_in(app, "owner@example.com")
            bob, bob_user = await sign_in(app, "bob@example.com")
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("UPDATE copilot_core.user_preferences SET preferences ="
                                   " '{\"theme\": \"dark\"}' WHERE user_id = $1",
                                   uuid.UUID(bob_id))
                team = (await call(app, "POST", "/api/workspaces", owner,
                                   json={"name": "Team"})).json()["id"]
                token = await conn.fetchval(
                    "INSERT INTO copilot_core.workspace_invitations (tenant_id, email, role,"
                    " invited_by) VALUES ($1, 'bob@example.com', 'member', $2)"
                    " RETURNING token", uuid.UUID(team), uuid.UUID(owner_id))
                assert re.fullmatch(r"[0-9a-f]{64}", token)
                r = await call(app, "POST", f"/api/invitations/{token}/accept", bob)
                assert r.json()["tenantId"] == team, r.text
                r = await call(app, "POST", "/api/workspaces/switch", bob,
                               json={"tenantId": team})
                assert r.status_code == 200
                stored = await conn.fetchrow("SELECT current_tenant_id, preferences"
                                             " FROM copilot_core.user_preferences"
                                             " WHERE user_id = $1", uuid.UUID(bob_id))
            finally:
                await conn.close()
            assert (str(stored[0]), stored[1]) == (team, '{"theme": "dark"}')
            assert bob_user["tenantId"] != team
