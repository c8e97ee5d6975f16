"""The dashboard of a brand-new instance in Debian's Chromium at 1280 px, in a time zone far
from UTC: a handful of validations is not graded, the hit rate stays on one line, the header
clock is UTC like every other time on the page (issue 16). Saves a screenshot."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from regcopilot.web.routes.dashboard import MIN_GRADED_VALIDATIONS
from tests.conftest import PASSWORD
from tests.live import CHROMIUM, LiveServer, launch_chromium
from tests.support import repo_root

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium not installed")
SHOT = repo_root() / "test-output" / "dashboard-new-instance.png"
ONE_LINE = """(text) => {
  const value = document.getElementById("hit-rate"), tile = document.getElementById("tile-hit");
  value.textContent = text;
  const range = document.createRange();
  range.selectNodeContents(value);
  const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
  return {lines: lines.size,
          inside: range.getBoundingClientRect().right <= tile.getBoundingClientRect().right};
}"""


@pytest.fixture
def new_instance(tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(tmp_path)
    s.add_user("admin@example.com", admin=True)
    s.add_user("bob@example.com")
    s.start()
    yield s
    s.stop()


def seconds_of_day(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def test_new_instance_dashboard_in_chromium(new_instance, tmp_path):
    from playwright.sync_api import sync_playwright

    s = new_instance
    with s.session("bob@example.com") as bob:  # 4 validations: 3 of them hits
        for _ in range(4):
            assert bob.get("/api/me").status_code == 200
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            # 12-13 h from UTC: a local clock could not pass for UTC by accident.
            context = browser.new_context(viewport={"width": 1280, "height": 900},
                                          timezone_id="Pacific/Auckland", locale="en-US")
            page = context.new_page()
            page.goto(s.base + "/admin/observability?refresh=1")
            page.fill("#email", "admin@example.com")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(s.base + "/admin/observability?refresh=1")
            page.wait_for_function("Number(document.body.dataset.refreshes || 0) >= 1")

            validations = int(page.text_content("#validations").replace(",", ""))
            assert 0 < validations < MIN_GRADED_VALIDATIONS
            assert page.text_content("#hit-rate").endswith(" %")
            assert page.text_content("#hit-sub") == (
                f"too few validations to grade ({validations} of {MIN_GRADED_VALIDATIONS})")
            assert "Poor" not in page.text_content("#tile-hit")
            tile_class = page.get_attribute("#tile-hit", "class").split()
            assert not {"ok", "warn", "alert"} & set(tile_class), tile_class

            updated = page.text_content("#updated")
            match = re.fullmatch(r"updated (\d\d:\d\d:\d\d) UTC", updated)
            assert match, updated
            now = datetime.now(UTC).strftime("%H:%M:%S")
            drift = abs(seconds_of_day(now) - seconds_of_day(match.group(1)))
            assert min(drift, 86_400 - drift) < 60, (updated, now)

            for path in (SHOT, tmp_path / SHOT.name):
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)

            # The widest hit rate there can be, at 1280 px: one line, inside its tile.
            for text in ("100.00 %", "75.00 %"):
                fit = page.evaluate(ONE_LINE, text)
                assert fit == {"lines": 1, "inside": True}, (text, fit)

            # Past the minimum sample the tile is graded again.
            with s.session("bob@example.com") as bob:
                for _ in range(MIN_GRADED_VALIDATIONS):
                    assert bob.get("/api/me").status_code == 200
            page.wait_for_function(
                "!document.getElementById('hit-sub').textContent.startsWith('too few')",
                timeout=15_000)
            graded = set(page.get_attribute("#tile-hit", "class").split())
            assert graded & {"ok", "warn", "alert"}, graded
            assert "target > 95" in page.text_content("#hit-sub")
        finally:
            browser.close()
    print(f"dashboard screenshot: {SHOT}")
