"""The upstream's React pages, unchanged: the real `next-auth/react` (4.24.15) and React 18 from
the npm registry, bundled by esbuild, run in Chromium on a page of a running `regcopilot
serve` — on the embedded default and on PostgreSQL + Redis, with both cookie formats.

The page (tests/node/react_page.js) is served on the server's own origin by Playwright's
`page.route`, so every call the client makes goes to the real server, same-origin, as it would
from pages moved over from the Node tier. useSession()'s update(data) is called too."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.live import CHROMIUM, LiveServer, launch_chromium, watched_page
from tests.nextauth_node import NODE_DIR, install
from tests.support import TEST_HASH_ROUNDS

pytestmark = pytest.mark.xdist_group("ops-live")  # Chromium runs on one worker at a time

PAGE = "/nextauth-page"
HTML = (f'<!doctype html><html><head><meta charset="utf-8"><title>React page</title></head>'
        f'<body><div id="root"></div><script src="{PAGE}.js"></script></body></html>')


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/node/react_page.js with next-auth/react and React, bundled for the browser."""
    modules = install().env["NODE_PATH"]
    out = tmp_path_factory.mktemp("bundle") / "page.js"
    esbuild = Path(modules) / ".bin" / "esbuild"
    done = subprocess.run(
        [str(esbuild), str(NODE_DIR / "react_page.js"), "--bundle", "--format=iife",
         f"--outfile={out}", "--log-level=warning",
         # next-auth/react reads process.env (NEXTAUTH_URL unset: its base path /api/auth).
         '--define:process.env.NODE_ENV="production"',
         "--banner:js=var process = {env: {}};"],
        env={"NODE_PATH": modules, "PATH": "/usr/bin:/bin"}, cwd=Path(modules).parent,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return out.read_text()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium not installed")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            yield browser
        finally:
            browser.close()


SETUPS = [("embedded", "regcopilot"), ("embedded", "nextauth"),
          ("postgres+redis", "regcopilot"), ("postgres+redis", "nextauth")]


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, redis_prefix: str
           ) -> Iterator[LiveServer]:
    backend, cookie_format = request.param
    s = LiveServer(tmp_path, redis_prefix=redis_prefix if backend != "embedded" else None)
    if backend != "embedded":
        s.env["DATABASE_URL"] = pg_url
    # The server's own origin: next-auth answers absolute URLs the client parses.
    s.env.update(NEXTAUTH_URL=s.base, SESSION_COOKIE_FORMAT=cookie_format,
                 PASSWORD_HASH_ROUNDS=str(TEST_HASH_ROUNDS))
    s.email = f"ada-{cookie_format}@example.com"  # type: ignore[attr-defined]
    s.add_user(s.email)  # type: ignore[attr-defined]
    s.start()
    yield s
    s.stop()


@pytest.mark.parametrize("server", SETUPS, indirect=True, ids=["-".join(x) for x in SETUPS])
def test_next_auth_react_signs_in_reads_the_session_and_signs_out(server, bundle, chromium):
    from playwright.sync_api import expect

    s = server
    email = s.email
    page, errors = watched_page(chromium)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.route(s.base + PAGE, lambda route: route.fulfill(
        status=200, content_type="text/html", body=HTML))
    page.route(s.base + PAGE + ".js", lambda route: route.fulfill(
        status=200, content_type="text/javascript", body=bundle))
    try:
        page.goto(s.base + PAGE)
        who = page.locator("#who")
        expect(who).to_have_text("unauthenticated")

        providers = page.evaluate("() => nextAuth.getProviders()")
        assert providers["credentials"]["type"] == "credentials"
        token = page.evaluate("() => nextAuth.getCsrfToken()")
        assert isinstance(token, str) and len(token) == 64

        wrong = page.evaluate("""(email) => nextAuth.signIn('credentials',
            {redirect: false, email, password: 'not the password'})""", email)
        assert wrong == {"error": "CredentialsSignin", "status": 401, "ok": False, "url": None}
        expect(who).to_have_text("unauthenticated")

        right = page.evaluate("""([email, password]) => nextAuth.signIn('credentials',
            {redirect: false, email, password})""", [email, PASSWORD])
        assert right == {"error": None, "status": 200, "ok": True, "url": s.base + PAGE}
        # signIn tells the SessionProvider, whose useSession() re-renders with the user.
        expect(who).to_have_text(email)
        cookies = {c["name"] for c in page.context.cookies()}
        expected = ("next-auth.session-token" if "nextauth" in s.env["SESSION_COOKIE_FORMAT"]
                    else "regcopilot.session-token")
        assert expected in cookies, cookies

        session = page.evaluate("() => nextAuth.getSession()")
        assert session["user"]["email"] == email and session["user"]["name"] == email
        assert session["expires"]
        assert page.evaluate("async () => (await fetch('/api/me')).status") == 200
        # update(data) posts the CSRF token and data; the answer is the session, data ignored.
        updated = page.evaluate("() => nextAuthUpdate({name: 'Someone else'})")
        assert updated["user"] == session["user"]

        out = page.evaluate("() => nextAuth.signOut({redirect: false})")
        assert out == {"url": s.base + PAGE}
        expect(who).to_have_text("unauthenticated")
        assert page.evaluate("() => nextAuth.getSession()") is None
        assert page.evaluate("async () => (await fetch('/api/me')).status") == 401
        assert expected not in {c["name"] for c in page.context.cookies()}
        assert errors == [], errors
        # The client logs every failed call of its own (CLIENT_FETCH_ERROR): none.
        assert not [line for line in console if "next-auth" in line.lower()], console
    finally:
        page.context.close()
