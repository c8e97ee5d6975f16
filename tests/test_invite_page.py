"""The invitation page in Debian's Chromium against a real `regcopilot serve` (embedded
SQLite): a signed-out invitee opens the link, signs in, comes back to it, sees the workspace
and the inviter, accepts with a click and opens the workspace; someone else's link is refused
on the page; the admin console lists the invitation and the deleted workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.live import CHROMIUM, LiveServer, launch_chromium, submit_sign_in, watched_page
from tests.support import repo_root

pytestmark = pytest.mark.xdist_group("ops-live")  # Chromium runs on one worker at a time


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(tmp_path)
    s.env["NEXTAUTH_URL"] = s.base  # the links in invitations point at this server
    s.add_user("owner@example.com", admin=True)
    s.add_user("bob@example.com")
    s.add_user("mallory@example.com")
    s.start()
    yield s
    s.stop()


def test_invitee_signs_in_through_the_link_and_accepts_in_chromium(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium not installed")
    s = server
    with s.session("owner@example.com") as owner:
        team = owner.post("/api/workspaces", json={"name": "Acme Compliance"}).json()["id"]
        assert owner.post("/api/workspaces/switch", json={"tenantId": team}).status_code == 200
        r = owner.post("/api/invitations", json={"email": "bob@example.com", "role": "member"})
        assert r.status_code == 200, r.text
        link = r.json()["invitation"]["inviteUrl"]
        r = owner.post("/api/invitations", json={"email": "carol@example.com", "role": "viewer"})
        carol_link = r.json()["invitation"]["inviteUrl"]
        doomed = owner.post("/api/workspaces", json={"name": "Old Project"}).json()["id"]
        assert owner.delete(f"/api/workspaces/{doomed}").status_code == 200
    assert link.startswith(s.base + "/invite/")
    path = link.removeprefix(s.base)
    out = repo_root() / "test-output"
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page, errors = watched_page(browser)
            page.goto(link)
            # Signed out: to the sign-in form, which comes back here afterwards.
            assert page.url.startswith(s.base + "/login?")
            assert quote(path, safe="/") in page.url
            submit_sign_in(page, "bob@example.com")
            page.wait_for_url(link)
            expect(page.locator("#invite-workspace")).to_have_text("Acme Compliance")
            expect(page.locator("#invite-from")).to_contain_text("owner@example.com")
            expect(page.locator("#invite-from")).to_contain_text("member")
            page.screenshot(path=str(out / "invite-page.png"), full_page=True)

            page.click("#accept")
            expect(page.locator("#invite-result")).to_contain_text("Acme Compliance")
            page.screenshot(path=str(out / "invite-accepted.png"), full_page=True)
            page.click("#open-workspace")
            page.wait_for_url(s.base + "/")
            expect(page.locator("#workspace")).to_have_text("Acme Compliance")

            # Another user's link: refused on the page, nothing joined.
            page.goto(carol_link)
            expect(page.locator("#invite-problem")).to_contain_text("different email")
            page.screenshot(path=str(out / "invite-refused.png"), full_page=True)
            assert errors == []
            page.close()

            # The console lists carol's open invitation with its link, and the deleted one.
            admin, errors = watched_page(browser)
            admin.goto(s.base + "/admin")
            submit_sign_in(admin, "owner@example.com")
            admin.wait_for_url(s.base + "/admin")
            expect(admin.locator("#invitations tbody tr")).to_have_count(1)
            expect(admin.locator("#invitations .invite-url")).to_have_text(carol_link)
            expect(admin.locator(f'#deleted-workspaces tr[data-tenant-id="{doomed}"]')
                   ).to_contain_text("Old Project")
            admin.locator("#invitations-panel").scroll_into_view_if_needed()
            admin.screenshot(path=str(out / "admin-invitations.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    with s.session("bob@example.com") as bob:
        me = bob.get("/api/workspaces").json()
        assert {w["name"] for w in me["workspaces"]} == {"Acme Compliance", "Personal Workspace"}
        r = bob.post(f"{path.replace('/invite/', '/api/invitations/')}/accept")
        assert r.status_code == 200 and r.json()["alreadyMember"] is True
