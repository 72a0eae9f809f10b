"""The ready-made themes in Chromium: axe-core finds no serious violation in any locale,
after a failed POST, or on a phone in dark mode; the saas theme shows the live status first;
the corporate theme's navigation stays inert. (That each theme recovers by itself, with no
script error or CSP violation, is test_browser_page's test of every ready-made theme.)

``python -m tests.browser.test_browser_themes`` photographs each theme, desktop and mobile,
into docs/screenshots/theme-<name>-<desktop|mobile>.png.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from gracefail.config import LOCALES
from tests.browser.conftest import AppFactory, TabFactory
from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DEFAULT_OPTIONS,
    App,
    FakeStatuspage,
    Tab,
    Upstream,
    eventually,
    locale_strings,
    new_key,
)
from tests.browser.test_browser_page import ACCEPT_LANGUAGE, AXE, axe
from tests.conftest import ROOT, require

pytestmark = pytest.mark.browser

THEMES = sorted(p.parent for p in (ROOT / "templates").glob("*/page.html"))
# A small inlined logo, so the themes that show one (corporate) are seen with it.
LOGO = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="92" height="24" viewBox="0 0 92 24">'
        b'<rect width="24" height="24" rx="6" fill="#0f766e"/><path d="M6 17l6-11 6 11z" '
        b'fill="#fff"/><text x="30" y="18" font-family="sans-serif" font-size="17" '
        b'font-weight="700" fill="#134e4a">Acme</text></svg>'
    ).decode()
)
BRAND = {"name": "Acme", "color": "#0f766e", "logo": LOGO}


@pytest.fixture(scope="module")
def axe_source() -> str:
    require(AXE.is_file(), "axe-core", "npm install --prefix tests/browser/.node axe-core@4")
    return AXE.read_text("utf-8")


def themed(apps: AppFactory, theme: Path, statuspage: FakeStatuspage) -> App:
    return apps(template_dir=str(theme), status_api_url=statuspage.url, brand=BRAND)


@pytest.mark.parametrize("theme", THEMES, ids=[t.name for t in THEMES])
def test_no_serious_accessibility_violation_in_any_locale(
    theme: Path,
    apps: AppFactory,
    upstream: Upstream,
    tabs: TabFactory,
    statuspage: FakeStatuspage,
    axe_source: str,
) -> None:
    app = themed(apps, theme, statuspage)
    key = new_key(f"axe-{theme.name}")
    upstream.set(key, "down")
    found = {}
    first: Tab | None = None
    for locale in LOCALES:
        # axe is injected as an inline script, which the page's CSP rightly refuses.
        tab = tabs(
            same_context_as=first,
            headers={"Accept-Language": ACCEPT_LANGUAGE[locale]},
            bypass_csp=True,
        )
        first = first or tab
        assert tab.goto(app.url(f"/{key}/page?{locale}")).status == 502
        tab.wait_state("a failed probe", lambda s: s["failures"] >= 1)
        tab.page.wait_for_selector("#gf-ls:not([hidden])")  # the live status, with its colour
        assert tab.page.get_attribute("html", "lang") == locale
        found[locale] = axe(tab, axe_source)
    assert found == {locale: [] for locale in LOCALES}


@pytest.mark.parametrize("theme", THEMES, ids=[t.name for t in THEMES])
def test_no_serious_accessibility_violation_after_a_failed_post(
    theme: Path,
    apps: AppFactory,
    upstream: Upstream,
    tabs: TabFactory,
    statuspage: FakeStatuspage,
    axe_source: str,
) -> None:
    app = themed(apps, theme, statuspage)
    key = new_key(f"axepost-{theme.name}")
    upstream.set(key, "slow")
    tab = tabs(bypass_csp=True)
    tab.goto(app.url(f"/{key}/form"))
    with tab.page.expect_navigation() as navigation:
        tab.page.click("#send")
    assert navigation.value is not None
    assert navigation.value.status == 504
    assert tab.text("h1") == locale_strings("en")["heading_unsafe"]
    tab.page.evaluate("() => document.documentElement.classList.add('gf-more')")
    assert axe(tab, axe_source) == []


@pytest.mark.parametrize("theme", THEMES, ids=[t.name for t in THEMES])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_fits_a_phone_and_is_readable(
    theme: Path,
    scheme: str,
    apps: AppFactory,
    upstream: Upstream,
    tabs: TabFactory,
    statuspage: FakeStatuspage,
    axe_source: str,
) -> None:
    app = themed(apps, theme, statuspage)
    key = new_key(f"phone-{theme.name}-{scheme}")
    upstream.set(key, "down")
    tab = tabs(viewport={"width": 375, "height": 740}, color_scheme=scheme, bypass_csp=True)
    tab.goto(app.url(f"/{key}/page"), wait_until="load")
    tab.page.evaluate("() => document.documentElement.classList.add('gf-more')")
    tab.wait_state("a failed probe", lambda s: s["failures"] >= 1)
    width = tab.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"{width} px wide"
    assert axe(tab, axe_source, only=["color-contrast"]) == []


def test_the_saas_theme_shows_the_live_status_first(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory, statuspage: FakeStatuspage
) -> None:
    app = themed(apps, ROOT / "templates" / "saas", statuspage)
    key = new_key("saas-status")
    upstream.set(key, "down")
    tab = tabs()
    tab.goto(app.url(f"/{key}/page"))
    tab.page.wait_for_selector("#gf-ls:not([hidden])")
    assert tab.text("#gf-ls").startswith("Status: Partial System Outage")
    top = tab.page.evaluate(
        "() => [document.getElementById('gf-ls'), document.querySelector('h1')]"
        ".map(e => e.getBoundingClientRect().top)"
    )
    assert top[0] < top[1], "the live status is above the heading"
    assert tab.page.locator("a.gf-st").count() == 1
    upstream.set(key, "up")
    tab.wait_real_page()


def test_the_corporate_navigation_stays_inert(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory, statuspage: FakeStatuspage
) -> None:
    app = themed(apps, ROOT / "templates" / "corporate", statuspage)
    key = new_key("corporate-nav")
    upstream.set(key, "down")
    tab = tabs()
    url = app.url(f"/{key}/page")
    tab.goto(url)
    # The keyboard goes from the brand to the page's own controls, past the navigation.
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("() => document.activeElement.getAttribute('href')") == "/"
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("() => !!document.activeElement.closest('nav')") is False
    tab.page.locator("nav a").first.click()
    tab.wait(0.3)
    assert tab.page.url == url, "a navigation item leads nowhere while the site is down"
    assert len(app.navigations(key)) == 1, "one navigation: the page's own"


# -- screenshots ----------------------------------------------------------------------------

OUT = ROOT / "docs" / "screenshots"
VIEWPORTS = {
    "desktop": ({"width": 1280, "height": 800}, 1),
    "mobile": ({"width": 375, "height": 740}, 2),
}
# First probe after 1 to 3 s, then waits of up to 4 s, 8 s...: long enough to photograph.
RETRY = {"retry_after": 1, "base": 2, "cap": 60, "give_up_after": 600}
SETTLED = """() => {
  var s = window.gracefail.state;
  return s.failures >= 1 && !s.busy && s.nextAt - Date.now() > 1200;
}"""


def shoot(out: Path) -> list[Path]:
    """theme-<name>-<desktop|mobile>.png for every theme, after its first failed probe."""
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    statuspage, upstream = FakeStatuspage(), Upstream()
    running: list[App] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for theme in THEMES:
                    options: dict[str, Any] = {
                        **DEFAULT_OPTIONS,
                        "retry": RETRY,
                        "status_api_url": statuspage.url,
                        "template_dir": str(theme),
                        "brand": BRAND,
                    }
                    app = App("asgi", upstream, Path(tmp) / f"{theme.name}.jsonl", options)
                    running.append(app.start())
                    for name, (viewport, scale) in VIEWPORTS.items():
                        key = f"shot-{theme.name}-{name}"
                        upstream.set(key, "down")
                        tab = Tab(
                            browser,
                            viewport=viewport,
                            device_scale_factor=scale,
                            reduced_motion="reduce",
                            extra_http_headers={
                                "Accept-Language": "en-US,en;q=0.9",
                                "X-Request-ID": "7f3a9c2e5b1d4a68",
                            },
                        )
                        tab.goto(app.url(f"/{key}/orders/1042"))
                        tab.page.wait_for_selector("#gf-ls:not([hidden])")
                        eventually(lambda t=tab: t.page.evaluate(SETTLED), "settled", 30, tab.page)
                        path = out / f"theme-{theme.name}-{name}.png"
                        tab.page.screenshot(path=str(path), full_page=True, animations="disabled")
                        if tab.problems:
                            sys.exit(f"{path.name}: {tab.problems}")
                        tab.close()
                        upstream.set(key, "up")
                        written.append(path)
                browser.close()
        finally:
            for app in running:
                app.stop()
            upstream.stop()
            statuspage.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Photograph the themes in templates/.")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    for path in shoot(parser.parse_args().out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
