"""Fixtures for the browser suite: one Chromium, one fake upstream, app servers by config.

Every server is a real process on a free loopback port, stopped by its PID at the end.
Apps with the same options are shared by the tests of a session; each test isolates
itself with its own upstream key (and so its own URL paths and incidents).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DEFAULT_OPTIONS,
    App,
    FakeStatuspage,
    Nginx,
    Tab,
    Upstream,
)
from tests.conftest import require

AppFactory = Callable[..., App]
TabFactory = Callable[..., Tab]


@pytest.fixture(scope="session")
def chromium() -> str:
    require(
        os.access(CHROMIUM, os.X_OK), "Chromium (/usr/bin/chromium)", "apt-get install chromium"
    )
    return CHROMIUM


class Driver:
    """Playwright's sync driver, stopped as soon as the browser tests are done.

    The sync API runs its asyncio loop on a greenlet of this thread, and while it is
    started asyncio sees that loop as running here: pytest-asyncio's tests in other
    folders could not run theirs. So the driver stops after the last test of this folder.
    """

    def __init__(self) -> None:
        self.manager: Any = None
        self.driver: Playwright | None = None

    def start(self) -> Playwright:
        if self.driver is None:
            self.manager = sync_playwright()
            self.driver = self.manager.__enter__()
        return self.driver

    def stop(self) -> None:
        if self.driver is not None:
            self.driver = None
            self.manager.__exit__(None, None, None)


DRIVER = Driver()
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    if nextitem is None or HERE not in Path(nextitem.path).resolve().parents:
        DRIVER.stop()


@pytest.fixture(scope="session")
def playwright(chromium: str) -> Iterator[Playwright]:
    yield DRIVER.start()
    DRIVER.stop()


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium: str) -> Browser:
    """One Chromium for the session (closed with the driver)."""
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def apps(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppFactory]:
    """``apps(kind="asgi", **options)``: a running app with DEFAULT_OPTIONS updated by options."""
    running: dict[str, App] = {}

    def factory(kind: str = "asgi", **options: Any) -> App:
        merged = {**DEFAULT_OPTIONS, **options}
        name = kind + json.dumps(merged, sort_keys=True)
        if name not in running:
            log = tmp_path_factory.mktemp(f"app-{kind}") / "log.jsonl"
            running[name] = App(kind, upstream, log, merged).start()
        return running[name]

    yield factory
    for app in running.values():
        app.stop()


@pytest.fixture
def app(apps: AppFactory) -> App:
    """The default ASGI app (Starlette under uvicorn)."""
    return apps()


@pytest.fixture
def tabs(browser: Browser) -> Iterator[TabFactory]:
    """``tabs(**context_options)``: a page in a new context (or ``same_context_as=tab``).

    At teardown, fails the test if any page logged a script error or a CSP violation.
    """
    made: list[Tab] = []

    def factory(**options: Any) -> Tab:
        tab = Tab(browser, **options)
        made.append(tab)
        return tab

    yield factory
    problems = [problem for tab in made for problem in tab.problems]
    for tab in reversed(made):
        tab.close()
    assert problems == [], "the page logged errors or CSP violations"


@pytest.fixture(scope="session")
def nginx() -> str:
    found = "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else shutil.which("nginx")
    require(found is not None, "nginx", "apt-get install nginx-light")
    assert found is not None
    return found


@pytest.fixture
def nginx_in_front(nginx: str, app: App, tmp_path: Path) -> Iterator[Nginx]:
    proxy = Nginx(nginx, app, tmp_path)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def statuspage() -> Iterator[FakeStatuspage]:
    server = FakeStatuspage()
    yield server
    server.close()
