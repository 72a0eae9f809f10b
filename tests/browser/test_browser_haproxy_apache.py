"""HAProxy and Apache httpd in front of an app process that is down, in Chromium: the page
(from `gracefail serve`, or the exported one), the app started, the page recovering to the
app's own, and, where `gracefail serve` answered, the outage and its recovery in the report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.browser.conftest import TabFactory
from tests.browser.proxies import Backends
from tests.browser.support import Tab, eventually
from tests.integrations import test_apache, test_haproxy

pytestmark = pytest.mark.browser


class Stack(Protocol):
    base: str
    backends: Backends

    def stop(self) -> None: ...


@pytest.fixture(scope="module")
def readable() -> Iterator[Path]:
    with test_apache.readable_folder() as folder:
        yield folder


def start(proxy: str, tmp: Path, readable: Path, *, gateway: bool) -> Stack:
    if proxy == "haproxy":
        shipped = test_haproxy.GATEWAY_CFG if gateway else test_haproxy.STATIC_CFG
        haproxy = test_haproxy.Stack(tmp, gateway=gateway, shipped=shipped)
        if gateway:
            haproxy.from_gateway()  # a health check has taken the app server out
        return haproxy
    shipped = test_apache.GATEWAY_CONF if gateway else test_apache.STATIC_CONF
    return test_apache.Stack(tmp, readable, gateway=gateway, shipped=shipped)


def recovers(tab: Tab, stack: Stack) -> None:
    stack.backends.start_app()
    eventually(
        lambda: tab.page.inner_text("body").strip() == "hello",
        what="the page recovered to the app's own",
        timeout=60,
        page=tab.page,
    )


@pytest.mark.parametrize("proxy", ["haproxy", "apache"])
def test_the_gateways_page_recovers_and_the_report_shows_it(
    proxy: str, tmp_path: Path, readable: Path, tabs: TabFactory
) -> None:
    stack = start(proxy, tmp_path, readable, gateway=True)
    try:
        tab = tabs()
        response = tab.goto(f"{stack.base}/ok")
        assert response.status == 503  # the status HAProxy and Apache give a down app
        assert response.headers["x-gracefail-incident"]
        assert tab.page.locator("#gf-config").count() == 1
        # The "shown" beacon reaches the gateway while the app is down.
        eventually(
            lambda: stack.backends.report()["pages_shown"] == 1,
            what="shown beacon recorded",
            page=tab.page,
        )
        recovers(tab, stack)
        report = eventually(
            lambda: (r := stack.backends.report())["recovered"] == 1 and r,
            what="recovered beacon",
            page=tab.page,
        )
    finally:
        stack.stop()
    assert report["by_source"]["gateway"] >= 1
    assert report["by_source"]["app"] == 0
    assert report["per_source"]["gateway"]["recovered"] == 1
    assert report["time_to_recovery_s"]["p50"] is not None


@pytest.mark.parametrize("proxy", ["haproxy", "apache"])
def test_the_exported_page_recovers_when_the_app_returns(
    proxy: str, tmp_path: Path, readable: Path, tabs: TabFactory
) -> None:
    stack = start(proxy, tmp_path, readable, gateway=False)
    try:
        tab = tabs()
        response = tab.goto(f"{stack.base}/ok")
        assert response.status == 503
        assert "x-gracefail-incident" not in response.headers
        assert tab.page.locator("#gf-config").count() == 1
        recovers(tab, stack)
    finally:
        stack.stop()
