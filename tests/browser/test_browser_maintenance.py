"""A real Chromium on the maintenance page: it shows the planned end in the reader's own
time zone, and comes back to the real page by itself, after ``off`` or at the end.

The app is Starlette under uvicorn following the switch in a real SQLite store. The
page's random share of the 60 s spread is pinned small (``Math.random`` stubbed before
the page's script runs) so the test takes seconds; the spread itself is measured in
``tests/test_maintenance_herd.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

from gracefail import maintenance
from tests.apps.common import free_port
from tests.conftest import start_server, stop

pytestmark = pytest.mark.browser

# The page's first probe: the planned end plus 5% of the spread (3 s).
PINNED_RANDOM = "Math.random = function () { return 0.05; };"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, str]]:
    store = str(tmp_path / "events.sqlite3")
    port = free_port()
    proc = start_server(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.apps.maintenance_app:app",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        port,
        env={"GRACEFAIL_DB": store, "GRACEFAIL_RECORD_IN_TESTS": "1"},
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        stop(proc)


def open_page(browser: Browser, url: str, problems: list[str]) -> Page:
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    context.add_init_script(PINNED_RANDOM)
    page = context.new_page()
    # Script errors and CSP violations; not the 503s themselves, which Chromium logs too.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url)
    return page


def wait_until_back(page: Page, *, within: float) -> float:
    # Polled from here: the page's CSP (rightly) refuses Playwright's evaluated predicates.
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            if page.locator("body").inner_text(timeout=1000).startswith("hello from"):
                return time.monotonic() - start
        except PlaywrightError:
            pass  # navigating
        page.wait_for_timeout(100)
    raise AssertionError(f"not back on the real page within {within} s")


def shown_end(page: Page) -> str:
    return page.locator("#gf-end").inner_text()


def test_the_page_shows_the_end_locally_and_returns_after_off(
    browser: Browser, site: tuple[str, str]
) -> None:
    base, store = site
    state = maintenance.switch_on(store, duration=5, message="Five seconds of work")
    time.sleep(1.2)  # the app's watch reads at most once a second
    problems: list[str] = []
    page = open_page(browser, f"{base}/page?from=test", problems)
    assert "Five seconds of work" in page.content()
    assert state.ends is not None
    tokyo = datetime.fromtimestamp(int(state.ends) + 1, UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    end = shown_end(page)
    assert "T" not in end  # formatted, not the ISO text
    assert f"{tokyo:%H:%M}" in end, end  # 9 hours ahead of UTC: the reader's own clock

    maintenance.switch_off(store)
    waited = wait_until_back(page, within=20)
    # Back at the first probe: the end (within 6 s) plus the pinned 3 s share.
    assert waited < 12
    assert page.url == f"{base}/page?from=test"
    assert problems == []
    page.context.close()


def test_the_page_returns_at_the_planned_end_without_off(
    browser: Browser, site: tuple[str, str]
) -> None:
    base, store = site
    maintenance.switch_on(store, duration=4)
    time.sleep(1.2)
    problems: list[str] = []
    page = open_page(browser, f"{base}/", problems)
    assert page.locator("h1").inner_text() == "We are carrying out planned maintenance"
    waited = wait_until_back(page, within=20)
    assert waited < 12
    assert maintenance.status(store) is None  # ended by itself; nobody switched it off
    assert problems == []
    page.context.close()
