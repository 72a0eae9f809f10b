"""Issue 4, scenarios 12-17: the page itself, in a real Chromium against real servers.

Without JavaScript, which origins it talks to, accessibility (axe-core from the npm
registry), small screens and colour schemes, every shipped locale, and live status.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from gracefail.config import LOCALES
from tests.browser.conftest import AppFactory, TabFactory
from tests.browser.support import (
    BEACON_PATH,
    SLOW_SECONDS,
    SUMMARY,
    App,
    FakeStatuspage,
    Tab,
    Upstream,
    eventually,
    first_outcome,
    incident_of,
    locale_strings,
    new_key,
)
from tests.conftest import ROOT, require

pytestmark = pytest.mark.browser

EN = locale_strings("en")
AXE = ROOT / "tests" / "browser" / ".node" / "node_modules" / "axe-core" / "axe.min.js"
ACCEPT_LANGUAGE = {
    "en": "en-US,en;q=0.9",
    "es": "es-ES,es;q=0.9",
    "fr": "fr-FR,fr;q=0.9",
    "de": "de-DE,de;q=0.9",
    "pt-BR": "pt-BR,pt;q=0.9",
    "ja": "ja-JP,ja;q=0.9",
    "zh-Hans": "zh-CN,zh;q=0.9",
}
NOSCRIPT_REFRESH = 30  # render.NOSCRIPT_REFRESH


def test_every_shipped_locale_has_an_accept_language() -> None:
    assert set(ACCEPT_LANGUAGE) == set(LOCALES)


def open_locales(
    app: App,
    key: str,
    tabs: TabFactory,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> dict[str, Tab]:
    """The 502 page in every shipped locale: one tab each, in one browser context."""
    opened: dict[str, Tab] = {}
    for locale in LOCALES:
        tab = tabs(
            same_context_as=next(iter(opened.values()), None),
            headers={"Accept-Language": ACCEPT_LANGUAGE[locale], **(headers or {})},
            **context,
        )
        assert tab.goto(app.url(f"/{key}/page?{locale}")).status == 502
        opened[locale] = tab
    return opened


# -- 12. without JavaScript -----------------------------------------------------------------


def test_without_javascript_the_link_works_and_the_page_refreshes_slowly(
    app: App, upstream: Upstream, tabs: TabFactory
) -> None:
    key = new_key("nojs")
    upstream.set(key, "down")
    refresher, clicker = tabs(java_script_enabled=False), tabs(java_script_enabled=False)

    response = refresher.goto(app.url(f"/{key}/page?via=refresh"))
    assert response.status == 502
    incidents = [incident_of(response)]
    served = app.navigations(key)[0]["time"]
    refresh = refresher.page.locator("noscript meta[http-equiv=refresh]")
    assert refresh.get_attribute("content") == str(NOSCRIPT_REFRESH)
    assert refresher.page.is_visible("li.t2"), "all the tips show at once"

    response = clicker.goto(app.url(f"/{key}/page?via=link"))
    assert response.status == 502
    incidents.append(incident_of(response))
    link = clicker.page.locator("#gf-link")
    assert link.is_visible()
    assert link.get_attribute("href") == f"/{key}/page?via=link"
    assert clicker.page.is_hidden("#gf-retry"), "the script's button needs the script"
    with clicker.page.expect_navigation() as again:
        link.click()
    assert again.value is not None
    assert again.value.status == 502
    upstream.set(key, "up")
    with clicker.page.expect_navigation():
        clicker.page.click("#gf-link")
    clicker.wait_real_page()

    # The <noscript> refresh reloads the page by itself, slowly, and lands on the real page.
    refresher.wait_real_page(timeout=NOSCRIPT_REFRESH + 20)
    reloads = [r for r in app.navigations(key) if r["query"] == "via=refresh"]
    assert len(reloads) == 2
    assert reloads[1]["time"] - served >= NOSCRIPT_REFRESH
    # A failure served, but no page "shown": without the script, nothing reports.
    assert [app.beacons(incident) for incident in incidents] == [[], []]


# -- 13. nothing but its own origin; no console errors or CSP violations ------------------


def test_talks_only_to_its_own_origin(app: App, upstream: Upstream, tabs: TabFactory) -> None:
    key = new_key("origin")
    upstream.set(key, "down")
    tab = tabs(record_requests=True)
    response = tab.goto(app.url(f"/{key}/page"))
    csp = response.headers["content-security-policy"]
    assert "connect-src 'self';" in csp
    assert "default-src 'none'" in csp
    eventually(lambda: len(app.probes(key)) >= 2, "two probes", page=tab.page)
    tab.page.click("#gf-retry")
    eventually(lambda: len(app.probes(key)) >= 3, "the manual probe", page=tab.page)
    upstream.set(key, "up")
    tab.wait_real_page()

    others = [r.url for r in tab.requests if not r.url.startswith(app.base + "/")]
    assert others == []
    # Two documents (the error page, then the real one) and the script's own requests:
    # probes of the page's URL and beacons. No CSS, font, image or script file.
    documents = [r.url for r in tab.requests if r.resource_type == "document"]
    assert documents == [app.url(f"/{key}/page")] * 2
    scripted = [r for r in tab.requests if r.resource_type != "document"]
    assert {r.resource_type for r in scripted} <= {"fetch", "ping"}
    assert {r.url.split("?")[0] for r in scripted} == {
        app.url(f"/{key}/page"),
        app.url(BEACON_PATH),
    }
    assert tab.problems == []


# -- 14. accessibility ------------------------------------------------------------------


@pytest.fixture(scope="session")
def axe_source() -> str:
    require(
        AXE.is_file(),
        "axe-core",
        "npm install --prefix tests/browser/.node axe-core@4 (make test does it)",
    )
    return AXE.read_text("utf-8")


def axe(tab: Tab, source: str, only: list[str] | None = None) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    tab.page.add_script_tag(content=source)
    options: dict[str, Any] = {"resultTypes": ["violations"]}
    if only:
        options["runOnly"] = {"type": "rule", "values": only}
    result: dict[str, Any] = tab.page.evaluate("(options) => axe.run(document, options)", options)
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:120] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_no_serious_accessibility_violation_in_any_locale(
    app: App, upstream: Upstream, tabs: TabFactory, axe_source: str
) -> None:
    key = new_key("axe")
    upstream.set(key, "down")
    # axe is injected as an inline script, which the page's CSP rightly refuses.
    opened = open_locales(app, key, tabs, bypass_csp=True)
    found = {}
    for locale, tab in opened.items():
        tab.wait_state("a failed probe", lambda s: s["failures"] >= 1)
        found[locale] = axe(tab, axe_source)
    assert found == {locale: [] for locale in LOCALES}


def test_keyboard_reaches_and_uses_the_retry_button(
    app: App, upstream: Upstream, tabs: TabFactory
) -> None:
    key = new_key("keyboard")
    upstream.set(key, "down")
    tab = tabs()
    incident = incident_of(tab.goto(app.url(f"/{key}/page")))
    focused = []
    for _ in range(6):
        tab.page.keyboard.press("Tab")
        focused.append(
            tab.page.evaluate("() => document.activeElement.id || document.activeElement.tagName")
        )
        if focused[-1] == "gf-retry":
            break
    assert focused[-1] == "gf-retry", focused
    outline = tab.page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "focus is visible"
    tab.page.keyboard.press("Enter")
    eventually(lambda: "manual_retry" in dict(app.kinds(incident)), "the manual retry")
    eventually(lambda: app.probes(key), "its probe", page=tab.page)


def test_no_serious_accessibility_violation_after_a_failed_post(
    app: App, upstream: Upstream, tabs: TabFactory, axe_source: str
) -> None:
    key = new_key("axepost")
    upstream.set(key, "slow")
    tab = tabs(bypass_csp=True)
    tab.goto(app.url(f"/{key}/form"))
    with tab.page.expect_navigation() as navigation:
        tab.page.click("#send")
    assert navigation.value is not None
    assert navigation.value.status == 504
    tab.page.evaluate("() => document.documentElement.classList.add('gf-more')")
    assert axe(tab, axe_source) == []
    upstream.set(key, "up")


def test_live_region_announces_changes_not_ticks(
    app: App, upstream: Upstream, tabs: TabFactory
) -> None:
    key = new_key("live")
    upstream.set(key, "down")
    tab = tabs()
    tab.context.add_init_script(
        """
        window.__gfSeen = {live: [], count: []};
        document.addEventListener("DOMContentLoaded", function () {
          [["live", "gf-live"], ["count", "gf-count"]].forEach(function (pair) {
            var el = document.getElementById(pair[1]);
            if (!el) { return; }
            new MutationObserver(function () { window.__gfSeen[pair[0]].push(el.textContent); })
              .observe(el, {childList: true, characterData: true, subtree: true});
          });
        });
        """
    )
    tab.goto(app.url(f"/{key}/page"))
    live = tab.page.locator("#gf-live")
    assert live.get_attribute("role") == "status"
    assert live.get_attribute("aria-live") == "polite"
    assert tab.page.locator("#gf-live #gf-count").count() == 0, "the countdown is not announced"
    tab.wait_state("three failed probes", lambda s: s["failures"] >= 3)
    seen = tab.page.evaluate("() => window.__gfSeen")
    # Several probes failed and the countdown ticked; the live region spoke once.
    assert seen["live"] == [EN["js_still"]]
    assert len(seen["count"]) > 3
    assert tab.page.is_visible("li.t2"), "the second-stage tips appear after three failures"

    tab.context.set_offline(True)
    tab.wait_state("offline", lambda s: s["offline"])
    tab.context.set_offline(False)
    upstream.set(key, "up")
    tab.wait_real_page()


def test_reduced_motion_stops_the_spinner(app: App, upstream: Upstream, tabs: TabFactory) -> None:
    key = new_key("motion")
    upstream.set(key, "down")
    animations = {}
    for motion in ("no-preference", "reduce"):
        tab = tabs(reduced_motion=motion)
        tab.goto(app.url(f"/{key}/page?{motion}"))
        tab.page.wait_for_selector(".spin")
        animations[motion] = tab.page.evaluate(
            "() => getComputedStyle(document.querySelector('.spin')).animationName"
        )
    assert animations == {"no-preference": "gfspin", "reduce": "none"}


# -- 15. small screens, dark and light ----------------------------------------------------

LONG_ID = "R" + "x7" * 31 + "Q"  # 64 characters: the longest X-Request-ID reused as incident


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_fits_375px_and_is_readable(
    scheme: str, app: App, upstream: Upstream, tabs: TabFactory, axe_source: str
) -> None:
    key = new_key(f"mobile-{scheme}")
    upstream.set(key, "down")
    opened = open_locales(
        app,
        key,
        tabs,
        {"X-Request-ID": LONG_ID},
        viewport={"width": 375, "height": 740},
        color_scheme=scheme,
        bypass_csp=True,
    )
    backgrounds = set()
    for locale, tab in opened.items():
        assert tab.text("footer code") == LONG_ID
        # Everything the page can show at once: all tips, the live region, the countdown.
        tab.page.evaluate("() => document.documentElement.classList.add('gf-more')")
        tab.wait_state("a failed probe", lambda s: s["failures"] >= 1)
        width = tab.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, f"{locale}: {width} px wide"
        backgrounds.add(tab.page.evaluate("() => getComputedStyle(document.body).backgroundColor"))
        assert axe(tab, axe_source, only=["color-contrast"]) == [], locale
    expected = "rgb(244, 245, 247)" if scheme == "light" else "rgb(18, 20, 24)"
    assert backgrounds == {expected}


# -- 16. every shipped locale ------------------------------------------------------------


def test_every_locale_renders_in_its_language(
    app: App, upstream: Upstream, tabs: TabFactory
) -> None:
    key = new_key("locale")
    upstream.set(key, "down")
    for locale, tab in open_locales(app, key, tabs).items():
        t = locale_strings(locale)
        page = tab.page
        assert page.get_attribute("html", "lang") == locale
        assert page.title() == f"{t['title_502']} · Acme"
        assert tab.text("h1") == t["heading"].replace("{brand}", "Acme")
        assert (
            tab.text("p.code") == f"{t['error_code'].replace('{code}', '502')} · {t['title_502']}"
        )
        assert t["explain_bad_answer"].replace("{brand}", "Acme") in tab.text("main")
        assert tab.text("h2") == t["tips_heading"]
        assert tab.text("#gf-retry") == t["retry_now"]
        tab.wait_state("a failed probe", lambda s: s["failures"] >= 1)
        assert tab.text("#gf-live") == t["js_still"]
        next_check = re.escape(t["js_next"]).replace(re.escape("{s}"), r"\d+")
        assert re.fullmatch(f"{next_check}|{re.escape(t['js_checking'])}", tab.text("#gf-count"))
        if locale != "en":
            assert tab.text("h1") != EN["heading"]


# -- 17. live status from a Statuspage summary.json -------------------------------------


def test_live_status_shows_and_its_failures_change_nothing(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory, statuspage: FakeStatuspage
) -> None:
    app = apps(status_api_url=statuspage.url)
    status_origin = statuspage.url.rsplit("/api/", 1)[0]

    statuspage.set("ok")
    key = new_key("status")
    upstream.set(key, "down")
    tab = tabs(record_requests=True)
    response = tab.goto(app.url(f"/{key}/page"))
    assert f"connect-src 'self' {status_origin};" in response.headers["content-security-policy"]
    tab.page.wait_for_selector("#gf-ls:not([hidden])")
    assert tab.page.get_attribute("#gf-ls", "class") == "ls i-major"
    affected = [c["name"] for c in SUMMARY["components"] if c["status"] != "operational"]
    assert tab.text("#gf-ls") == (
        f"Status: {SUMMARY['status']['description']} · Affected: {', '.join(affected)}"
    )
    assert {r.url.split("?")[0] for r in tab.requests if not r.url.startswith(app.base)} == {
        statuspage.url
    }
    upstream.set(key, "up")
    tab.wait_real_page()

    for mode in ("down", "slow"):
        statuspage.set(mode)
        key = new_key(f"status-{mode}")
        upstream.set(key, "down")
        tab = tabs()
        hits = len(statuspage.hits)
        incident = incident_of(tab.goto(app.url(f"/{key}/page")))
        if mode == "slow":
            eventually(lambda h=hits: len(statuspage.hits) > h, "the status request")
        eventually(lambda k=key: app.probes(k), "the first probe", page=tab.page)
        assert tab.page.is_hidden("#gf-ls")
        upstream.set(key, "up")
        tab.wait_real_page()
        assert first_outcome(app, incident)["kind"] == "recovered"
        if mode == "slow":
            # Probed and recovered while the status answer was still on its way.
            assert time.time() - statuspage.hits[hits] < SLOW_SECONDS
    statuspage.set("ok")


# -- 18. what the page says (issue 18) ----------------------------------------------------


def test_a_refused_connection_says_the_service_could_not_be_reached(
    app: App, tabs: TabFactory
) -> None:
    key = new_key("refused")  # the app's call to the upstream is refused (tests/browser/apps.py)
    tab = tabs()
    response = tab.goto(app.url(f"/{key}/page"))
    assert response.status == 502
    incident = incident_of(response)
    main = tab.text("main")
    assert EN["explain_unreachable"] in main
    assert EN["explain_bad_answer"] not in main
    causes = eventually(
        lambda: [e["cause"] for e in app.server_events(incident)], "the server event"
    )
    assert causes == ["connection"]

    # The tips: wait and the status page at once; no "refresh" beside the automatic retry.
    assert tab.page.is_hidden("li.t2")
    assert "refresh" not in main.lower()
    assert tab.page.locator("a.gf-st").count() == 1, "the status page is linked once"
    # After retries have not helped, what to try if only this user sees the page.
    tab.wait_state("three failed probes", lambda s: s["failures"] >= 3)
    assert tab.page.is_visible("li.t2")
    assert tab.text("li.t2") == EN["tip_only_you"].replace("{brand}", "Acme")


def test_the_brand_in_the_header_leads_home(app: App, upstream: Upstream, tabs: TabFactory) -> None:
    key = new_key("home")
    upstream.set(key, "down")
    tab = tabs()
    tab.goto(app.url(f"/{key}/page"))
    brand = tab.page.locator("header a")
    assert brand.inner_text() == "Acme"
    # First on the keyboard's way, as on the site's own pages.
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("() => document.activeElement.getAttribute('href')") == "/"
    with tab.page.expect_navigation():
        brand.click()
    assert tab.page.url == app.url("/")
    upstream.set(key, "up")


THEMES = sorted(p.parent for p in (ROOT / "templates").glob("*/page.html"))


@pytest.mark.parametrize("theme", THEMES, ids=[t.name for t in THEMES])
def test_every_ready_made_theme_runs_the_recovery_script(
    theme: Any, apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(template_dir=str(theme))
    key = new_key(f"theme-{theme.name}")
    upstream.set(key, "down")
    tab = tabs()  # fails the test on any script error or CSP violation
    assert tab.goto(app.url(f"/{key}/page")).status == 502
    assert EN["explain_bad_answer"] in tab.text("main")
    tab.wait_state("a failed probe", lambda s: s["failures"] >= 1 and s["nextAt"] > 0)
    assert tab.text("#gf-live") == EN["js_still"]
    assert tab.page.is_visible("#gf-count")
    upstream.set(key, "up")
    tab.wait_real_page()
