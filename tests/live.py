"""A real `regcopilot serve` for the live ops tests (monitor, dashboard, metrics), and the
Chromium they drive."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import PASSWORD, REDIS_URL, TEST_SECRET
from tests.support import end_process, free_port, wait_until

TOKEN = "live-monitor-token"


CONFIG_VARS = ("NEXTAUTH_SECRET", "NEXTAUTH_URL", "DATABASE_URL", "REDIS_URL", "APP_ENV",
               "DATA_DIR", "OBSERVABILITY_TOKEN", "REDIS_KEY_PREFIX", "CACHE_TTL_SECONDS",
               "SESSION_VALIDATION_INTERVAL_SECONDS", "LOG_LEVEL")


CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, and this machine's
# closed network refuses it many times a second.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def launch_chromium(pw: Any) -> Any:
    """Debian's Chromium, headless, under Playwright (`sync_playwright()`'s object)."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def watched_page(browser: Any) -> tuple[Any, list[str]]:
    """A 1280 × 900 page, and the list its script errors land in (a test asserts it empty)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def submit_sign_in(page: Any, email: str) -> None:
    """Fill and send the sign-in form the page is on."""
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


class LiveServer:
    """`regcopilot serve` in a process of its own on a free loopback port."""

    def __init__(self, tmp: Path, *, redis_prefix: str | None = None, workers: int = 1):
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
        self.env.update(DATABASE_URL=f"sqlite:///{tmp}/users.db", NEXTAUTH_SECRET=TEST_SECRET,
                        OBSERVABILITY_TOKEN=TOKEN, DATA_DIR=str(tmp / "data"),
                        LOG_LEVEL="WARNING", APP_ENV="development")
        if redis_prefix:
            self.env.update(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "server.log"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "regcopilot.cli", *args], env=self.env,
                              cwd=self.tmp, capture_output=True, text=True, timeout=60)

    def add_user(self, email: str, admin: bool = False) -> None:
        done = self.cli("users", "add", "--email", email, "--password", PASSWORD,
                        *(["--admin"] if admin else []))
        assert done.returncode == 0, done.stderr

    def start(self) -> LiveServer:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "regcopilot.cli", "serve", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(self.base + "/api/health", timeout=1).status_code == 200
            return False

        wait_until(healthy, timeout=30, interval=0.1)
        return self

    def stop(self) -> None:
        end_process(self.proc)

    @contextlib.contextmanager
    def session(self, email: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            r = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            yield client

    def report(self) -> dict:
        r = httpx.get(self.base + "/api/observability",
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()
