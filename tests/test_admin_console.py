"""The admin console and "Your sessions", driven in Debian's Chromium against a real
`regcopilot serve` (embedded SQLite): ban a user from the console → that user's next request
is refused; sign out other devices from the home page → that device is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.live import CHROMIUM, LiveServer, launch_chromium, submit_sign_in, watched_page
from tests.support import repo_root

pytestmark = pytest.mark.xdist_group("ops-live")  # Chromium runs on one worker at a time


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(tmp_path)
    s.add_user("admin@example.com", admin=True)
    for name in ("victim", "carol", "dave", "erin"):
        s.add_user(f"{name}@example.com")
    s.start()
    yield s
    s.stop()


def signed_in(s: LiveServer, email: str, agent: str) -> httpx.Client:
    client = httpx.Client(base_url=s.base, timeout=10, headers={"user-agent": agent})
    r = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client


def test_console_ban_and_sign_out_other_devices_in_chromium(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium not installed")
    s = server
    victim = signed_in(s, "victim@example.com", "Victim's phone")
    admins_laptop = signed_in(s, "admin@example.com", "Admin's laptop")
    dave = signed_in(s, "dave@example.com", "Dave's tablet")
    try:
        r = dave.get("/admin")
        assert r.status_code == 403 and "Admins only" in r.text
    finally:
        dave.close()
    assert s.cli("users", "delete", "--soft", _id(s, "erin")).returncode == 0
    assert victim.get("/api/me").status_code == 200
    assert admins_laptop.get("/api/me").status_code == 200
    shots = [repo_root() / "test-output" / "admin-console.png", tmp_path / "admin-console.png"]
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page, errors = watched_page(browser)
            page.goto(s.base + "/admin")
            assert page.url == s.base + "/login?next=/admin"
            submit_sign_in(page, "admin@example.com")
            page.wait_for_url(s.base + "/admin")  # back where the admin was heading
            page.goto(s.base + "/")

            # Home: "Your sessions" lists this browser and the laptop; sign the laptop out.
            rows = page.locator("#my-sessions tbody tr")
            expect(rows).to_have_count(2)
            expect(page.locator("#my-sessions tr.current")).to_have_count(1)
            page.click("#sign-out-others")
            expect(rows).to_have_count(1)
            assert admins_laptop.get("/api/me").status_code == 401
            home_shot = repo_root() / "test-output" / "home-sessions.png"
            home_shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(home_shot), full_page=True)

            # Console: all five users, then a search narrows to one.
            page.goto(s.base + "/admin")
            expect(page.locator("#users tbody tr")).to_have_count(5)
            expect(page.locator('#users tr[data-email="erin@example.com"] .status')
                   ).to_contain_text("deleted")
            page.fill("#q", "victim")
            page.click("form.search button")
            page.wait_for_url("**/admin?q=victim")
            row = page.locator('#users tr[data-email="victim@example.com"]')
            expect(page.locator("#users tbody tr")).to_have_count(1)
            expect(row.locator(".status")).to_have_text("active")

            # Their sessions: the phone.
            row.locator("button[data-action=sessions]").click()
            expect(page.locator("#sessions tbody tr")).to_have_count(1)
            expect(page.locator("#sessions tbody tr")).to_contain_text("Victim's phone")
            # The user's workspaces (issue 13): the personal one made at sign-in, current.
            expect(page.locator("#user-workspaces")).to_contain_text(
                "Personal Workspace (personal, owner) — current")

            # Ban for 2 days.
            row.locator("button[data-action=ban]").click()
            page.check("#ban-dialog input[value=duration]")
            page.fill("#ban-dialog input[name=amount]", "2")
            page.select_option("#ban-dialog select[name=unit]", "86400")
            page.click("#ban-confirm")
            expect(page.locator("#flash")).to_contain_text("Banned victim@example.com until")
            expect(page.locator('#users tr[data-email="victim@example.com"] .status')
                   ).to_contain_text("banned until")

            # The user's very next request is refused.
            r = victim.get("/api/me")
            assert r.status_code == 401, r.text

            # A new user, through the same path as the CLI and the admin API.
            page.click("#new-user")
            page.fill("#new-user-dialog input[name=email]", "frank@example.com")
            page.fill("#new-user-dialog input[name=password]", PASSWORD)
            page.click("#new-user-confirm")
            expect(page.locator("#flash")).to_contain_text("Created frank@example.com.")
            page.goto(s.base + "/admin?q=frank")
            expect(page.locator('#users tr[data-email="frank@example.com"] .status')
                   ).to_have_text("active")
            frank = signed_in(s, "frank@example.com", "Frank's laptop")
            frank.close()

            # Back to the full list for the picture, sessions of the banned user shown.
            page.goto(s.base + "/admin")
            page.locator('#users tr[data-email="victim@example.com"] '
                         "button[data-action=sessions]").click()
            expect(page.locator("#sessions tbody tr")).to_contain_text("No active sessions")
            assert not errors, errors
            for path in shots:
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
            victim.close()
            admins_laptop.close()
    print(f"admin console screenshot: {shots[0]}")
    assert all(path.stat().st_size > 10_000 for path in shots)


def _id(s: LiveServer, name: str) -> str:
    done = s.cli("users", "list")
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        if f"{name}@example.com" in line:
            return line.split()[0]
    raise AssertionError(f"{name} not listed")
