"""Gateway mode behind the real Caddy: Chromium on the page `gracefail serve` answered for
Caddy's handle_errors, the app started, the page recovering to the app's own, and the
outage and its recovery in the report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import TabFactory
from tests.browser.proxies import Backends, Caddy
from tests.browser.support import Tab, eventually

pytestmark = pytest.mark.browser


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Backends, Caddy]]:
    backends = Backends(tmp_path)
    try:
        caddy = Caddy(tmp_path, backends)
    except BaseException:
        backends.stop()
        raise
    yield backends, caddy
    caddy.stop()
    backends.stop()


def test_page_recovers_behind_caddy_and_the_report_shows_it(
    stack: tuple[Backends, Caddy], tabs: TabFactory
) -> None:
    backends, caddy = stack
    tab: Tab = tabs()
    response = tab.goto(f"{caddy.base}/ok")
    assert response.status == 502
    assert response.headers["x-gracefail-incident"]
    assert tab.page.locator("#gf-config").count() == 1
    # The "shown" beacon goes through Caddy's beacon route to the gateway.
    eventually(
        lambda: backends.report()["pages_shown"] == 1, what="shown beacon recorded", page=tab.page
    )
    backends.start_app()
    eventually(
        lambda: tab.page.inner_text("body").strip() == "hello",
        what="the page recovered to the app's own",
        timeout=60,
        page=tab.page,
    )
    report = eventually(
        lambda: (r := backends.report())["recovered"] == 1 and r,
        what="recovered beacon",
        page=tab.page,
    )
    assert report["by_source"]["gateway"] >= 1
    assert report["by_source"]["app"] == 0
    assert report["per_source"]["gateway"]["recovered"] == 1, report
    assert report["time_to_recovery_s"]["p50"] is not None
