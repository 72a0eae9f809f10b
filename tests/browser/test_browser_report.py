"""The report with outage episodes, spikes and the period comparison, in a real Chromium:
the self-contained HTML page, and the Django admin view served by a real Django server
with a staff user logged in through the admin's login form. Both are photographed;
``python -m tests.browser.test_browser_report`` writes the pictures to docs/
(docs/report.png and docs/report-django-admin.png).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import generate, load_report
from tests.adapters.test_django_admin import make_project, setup_database
from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, Tab
from tests.conftest import ROOT, free_port, start_server, stop

pytestmark = pytest.mark.browser

DOCS = ROOT / "docs"
SINCE = "2024-05-01T00:00:00Z"
UNTIL = "2024-05-02T00:00:00Z"
QUERY = f"since={SINCE}&until={UNTIL}&compare=previous"
DESKTOP = {"width": 1280, "height": 900}
DAY = datetime(2024, 5, 1, tzinfo=UTC).timestamp()


class History:
    """A day of outages (and the day before, for the baseline and the comparison)."""

    def __init__(self, seed: int = 14):
        self.random = random.Random(seed)
        self.events: list[Event] = []
        self.count = 0

    def outage(
        self, start_h: float, minutes: float, failures: int, *, source: str = "app",
        status: int = 502, cause: str = "connection", routes: tuple[str, ...] = ("/checkout",),
        shown: float = 0.8, recovered: float = 0.8, abandoned: float = 0.15,
    ) -> None:  # fmt: skip
        """``failures`` spread over ``minutes`` from ``start_h`` hours into the day; of the
        pages shown, ``recovered`` recover in the outage's remaining time, ``abandoned``
        are left, the rest give up."""
        start = DAY + start_h * 3600
        end = start + minutes * 60
        for n in range(failures):
            self.count += 1
            at = start + (end - start) * n / max(failures - 1, 1)
            incident = f"i{self.count}"
            route = self.random.choice(routes)
            self.events.append(ServerEvent(at, incident, status, cause, "GET", route, "html",
                                           app_ms=8.0, source=source))  # fmt: skip
            if self.random.random() > shown:
                continue
            self.events.append(ClientEvent(at + 0.4, incident, "shown", 0, 300, "en"))
            roll = self.random.random()
            if roll < recovered:
                wait = max(2.0, end - at + self.random.uniform(1, 20))
                kind = "recovered"
            elif roll < recovered + abandoned:
                wait, kind = self.random.uniform(10, 90), "abandoned"
            else:
                wait, kind = 600.0, "gave_up"
            self.events.append(ClientEvent(at + wait + 1, incident, kind, 3,
                                           int(wait * 1000) + 300, "en"))  # fmt: skip


def showcase() -> list[Event]:
    history = History()
    # Both days: a stray failure or three in some hours, too few to be a spike.
    for day in (-24, 0):
        for hour in history.random.sample(range(24), 9):
            minute = history.random.uniform(0, 55)
            history.outage(day + hour + minute / 60, 1, history.random.randint(1, 3),
                           routes=("/search", "/items/{id}"), shown=0.7)  # fmt: skip
    # The day before: two small blips (the comparison's previous window, the baseline).
    history.outage(-20.5, 3, 6, routes=("/search",), cause="timeout", status=504)
    history.outage(-7.2, 2, 4, routes=("/checkout",))
    # The day: a payments timeout at night, a blip, the afternoon's long outage (the app's
    # upstream fails, then the app process itself: the gateway answers), a restart at night.
    history.outage(3.2, 15, 40, status=504, cause="timeout", routes=("/checkout", "/cart"),
                   recovered=0.75, abandoned=0.18)  # fmt: skip
    history.outage(9.7, 4, 6, routes=("/search",), recovered=1.0)
    history.outage(14.1, 8, 60, routes=("/checkout", "/items/{id}", "/cart"))
    history.outage(14.25, 28, 140, source="gateway", routes=("/checkout", "/items/{id}", "/"),
                   recovered=0.65, abandoned=0.25)  # fmt: skip
    history.outage(14.72, 6, 30, routes=("/items/{id}",), recovered=0.9, abandoned=0.1)
    history.outage(20.5, 6, 25, source="gateway", routes=("/", "/checkout"), recovered=0.9)
    return history.events


def make_store(path: Path) -> Path:
    recorder = SQLiteRecorder(path)
    recorder.record(showcase())
    recorder.close()
    return path


def shoot_html(browser: Browser, store: Path, out: Path, full_page: bool = True) -> Tab:
    """Open the HTML report (a file) in a new tab and photograph it."""
    page_file = out.parent / "report.html"
    page_file.write_text(generate(str(store), fmt="html", since=SINCE, until=UNTIL,
                                  compare="previous"))  # fmt: skip
    tab = Tab(browser, viewport=DESKTOP, record_requests=True)
    tab.goto(page_file.as_uri())
    tab.page.screenshot(path=str(out), full_page=full_page, animations="disabled")
    return tab


class DjangoServer:
    """The admin project of tests/adapters/test_django_admin.py under ``runserver``."""

    def __init__(self, folder: Path, store: Path):
        self.env = make_project(folder, store)
        setup_database(self.env)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] = start_server(
            [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}",
             "--noreload", "--insecure"],
            self.port, env=self.env, cwd=folder,
        )  # fmt: skip

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        stop(self.proc)


def log_in(page: Page, server: DjangoServer, user: str, password: str, then: str) -> None:
    page.goto(server.url(f"/admin/login/?next={then}"))
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("input[type=submit]")


def shoot_admin(browser: Browser, server: DjangoServer, out: Path, full_page: bool = True) -> Tab:
    tab = Tab(browser, viewport=DESKTOP)
    log_in(tab.page, server, "staff", "staff-pass-123", "/admin/")
    tab.page.click("text=Report")
    tab.page.wait_for_selector(".gfr h1")
    tab.goto(server.url(f"/admin/gracefail/report/?{QUERY}"))
    # The admin's navigation sidebar folded away, as a reader of a wide report would.
    if tab.page.locator("#toggle-nav-sidebar").count():
        tab.page.click("#toggle-nav-sidebar")
    tab.page.screenshot(path=str(out), full_page=full_page, animations="disabled")
    return tab


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("report") / "events.sqlite3")


@pytest.fixture(scope="module")
def django_server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoServer]:
    pytest.importorskip("django")
    server = DjangoServer(tmp_path_factory.mktemp("adminsite"), store)
    yield server
    server.stop()


def test_the_html_report_in_chromium(browser: Browser, store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    tab = shoot_html(browser, store, out, full_page=False)  # main() takes the whole page
    try:
        page = tab.page
        assert [r.url for r in tab.requests] == [(tmp_path / "report.html").as_uri()]
        assert tab.problems == []
        timeline = page.locator(
            'svg[aria-label="Outage episodes over the window, coloured by source"]'
        )
        episodes = load_report(store, since=SINCE, until=UNTIL).episodes
        sources = [e.source for e in episodes]
        assert sources.count("mixed") == 1, "the afternoon: the app's failures, then the gateway's"
        # One bar per episode, in its source's colour; the mixed one in both.
        assert timeline.locator('rect[fill="#2563eb"]').count() == sources.count("app") + 1
        assert timeline.locator('rect[fill="#d97706"]').count() == sources.count("gateway") + 1
        assert page.locator("table.small tbody tr").count() == len(episodes)
        # The four outages are spikes (red, with a marker); the stray failures are not.
        chart = page.locator('svg[aria-label="Failures per hour"]')
        assert chart.locator('path[fill="var(--bad)"]').count() == 4
        assert page.get_by_text("Compared with the previous window").count() == 1
        box = timeline.bounding_box()
        assert box is not None
        assert box["width"] > 900
    finally:
        tab.close()
    assert out.stat().st_size > 50_000


def test_the_django_admin_view_in_chromium(
    browser: Browser, django_server: DjangoServer, tmp_path: Path
) -> None:
    out = tmp_path / "report-django-admin.png"
    tab = shoot_admin(browser, django_server, out, full_page=False)
    try:
        page = tab.page
        assert page.locator("#site-name").count() == 1, "the admin's own header"
        assert page.locator(".gfr h1").inner_text() == "gracefail report"
        assert page.locator(".gfr table.small tbody tr").count() >= 4
        # The admin's styles and the report's do not fight: the report keeps its background.
        background = page.eval_on_selector(".gfr", "e => getComputedStyle(e).backgroundColor")
        assert background == "rgb(249, 250, 251)"
        assert tab.problems == []
    finally:
        tab.close()
    assert out.stat().st_size > 50_000


def test_the_admin_refuses_a_user_who_is_not_staff(
    browser: Browser, django_server: DjangoServer
) -> None:
    tab = Tab(browser, viewport=DESKTOP)
    try:
        report = f"/admin/gracefail/report/?{QUERY}"
        # The admin's login form turns away an account that is not staff ...
        log_in(tab.page, django_server, "member", "member-pass-123", report)
        assert "/admin/login/" in tab.page.url
        assert "for a staff account" in tab.page.locator(".errornote").inner_text()
        assert tab.page.locator(".gfr").count() == 0
        # ... and the report sends who is not logged in to it.
        tab.goto(django_server.url(report))
        assert tab.page.url.startswith(django_server.url("/admin/login/?next=/admin/gracefail/"))
        assert tab.page.locator(".gfr").count() == 0
    finally:
        tab.close()


def main() -> None:
    """Write docs/report.png and docs/report-django-admin.png."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, default=DOCS, help=f"folder (default {DOCS})")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # A path the pictures can show (the report names the store it read).
        shop = Path(tempfile.gettempdir()) / "acme-shop"
        shutil.rmtree(shop, ignore_errors=True)
        shop.mkdir()
        store = make_store(shop / "gracefail.sqlite3")
        work = Path(tmp) / "html"
        work.mkdir()
        shoot_html(browser, store, work / "report.png").close()
        (work / "report.png").replace(args.out / "report.png")
        server = DjangoServer(Path(tmp) / "adminsite", store)
        try:
            shoot_admin(browser, server, args.out / "report-django-admin.png").close()
        finally:
            server.stop()
            shutil.rmtree(shop, ignore_errors=True)
        browser.close()
    for name in ("report.png", "report-django-admin.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()
