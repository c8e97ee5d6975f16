"""The sign-in form over real HTTP (a `regcopilot serve` process) and in Debian's Chromium: a
failed sign-in stays on /login with the email kept and the message shown; a good one goes to
where the user was heading (`next`), and only ever to a path on this site (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from regcopilot.web.next_path import safe_next
from tests.conftest import PASSWORD
from tests.live import CHROMIUM, LiveServer, launch_chromium
from tests.support import COOKIE

OFF_SITE = ["//evil.example/x", "https://evil.example/", "/\\evil.example", "\\\\evil.example",
            "/\t/evil.example", "javascript:alert(1)", "evil.example", "http:/evil.example",
            "/%0a//evil.example\n", ""]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(tmp_path)
    s.add_user("admin@example.com", admin=True)
    s.start()
    yield s
    s.stop()


def test_only_same_site_paths_are_followed():
    for value in OFF_SITE:
        assert safe_next(value) == "/", value
    for value in ("/admin/observability", "/admin/observability?refresh=1", "/", "/a//b"):
        assert safe_next(value) == value


def test_pages_send_next_and_the_form_follows_it_over_http(server):
    with httpx.Client(base_url=server.base, timeout=10) as client:
        r = client.get("/admin/observability?refresh=2")
        assert r.status_code == 303
        location = r.headers["location"]
        assert urlsplit(location).path == "/login"
        heading = parse_qs(urlsplit(location).query)["next"][0]
        assert heading == "/admin/observability?refresh=2"

        page = client.get(location)
        assert page.status_code == 200 and f'value="{heading}"' in page.text.replace("&amp;", "&")

        # Wrong password: the form again, at /login, the email kept, the message shown.
        r = client.post("/login", data={"email": "admin@example.com", "password": "wrong",
                                        "next": heading})
        assert r.status_code == 401 and r.url.path == "/login"
        assert 'value="admin@example.com"' in r.text and "Invalid email or password" in r.text
        assert 'name="next" value="/admin/observability?refresh=2"' in r.text.replace("&amp;", "&")
        assert COOKIE not in r.headers.get("set-cookie", "")

        r = client.post("/login", data={"email": "admin@example.com", "password": PASSWORD,
                                        "next": heading})
        assert r.status_code == 303 and r.headers["location"] == heading
        assert COOKIE in r.headers["set-cookie"]
        assert client.get(heading).status_code == 200

    # The form's new address is guarded against login CSRF like /api/auth/login.
    r = httpx.post(server.base + "/login", timeout=10,
                   data={"email": "admin@example.com", "password": PASSWORD},
                   headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers

    for value in OFF_SITE:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            r = client.post("/login", data={"email": "admin@example.com", "password": PASSWORD,
                                            "next": value})
            assert r.status_code == 303 and r.headers["location"] == "/", value
            # The login page does not carry it into the form either.
            form = client.get("/login", params={"next": value}).text
            assert 'name="next" value="/"' in form, value


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium not installed")
def test_failed_then_good_sign_in_in_chromium(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page()
            page.goto(server.base + "/admin/observability")
            heading = server.base + "/login?next=/admin/observability"
            assert page.url == heading
            page.fill("#email", "admin@example.com")
            page.fill("#password", "not the password")
            page.click("button[type=submit]")
            page.wait_for_selector("p.error")
            # Still the sign-in page (not /api/auth/login), the email kept, the message shown.
            assert urlsplit(page.url).path == "/login"
            assert page.input_value("#email") == "admin@example.com"
            assert page.text_content("p.error") == "Invalid email or password"
            assert page.input_value("#password") == ""
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(server.base + "/admin/observability")
            assert page.locator("#hit-rate").count() == 1
        finally:
            browser.close()
