"""Issue 4, scenarios 1-11: how the page recovers, in a real Chromium against real servers.

Each test owns an upstream key: its URLs are ``/<key>/...`` and the fake upstream answers
them as the test says (up, down or slow). What the server saw comes from the app's log
(every request on arrival, every beacon body, every event gracefail recorded).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Playwright

from gracefail import RetryPolicy
from tests.browser.conftest import AppFactory, TabFactory
from tests.browser.support import (
    CHROMIUM_ARGS,
    DEFAULT_OPTIONS,
    FAST_RETRY,
    GIVE_UP_RETRY,
    STATUS_PAGE,
    UNSAFE_KEY,
    VISIBILITY_SCRIPT,
    App,
    Nginx,
    Tab,
    Upstream,
    eventually,
    first_outcome,
    incident_of,
    locale_strings,
    new_key,
    until_equal,
)

pytestmark = pytest.mark.browser

EN = locale_strings("en")
QUEUE = "gracefail:queue"
# Long enough to see that nothing is sent: more than the longest wait between probes.
QUIET = FAST_RETRY["cap"] + 1.0


def queued(tab: Tab) -> list[str]:
    value: list[str] = tab.page.evaluate(
        "(q) => JSON.parse(sessionStorage.getItem(q) || '[]')", QUEUE
    )
    return value


# -- 1. recovery by itself -----------------------------------------------------------------

ROUTE_LABELS = {
    "asgi": "/{key}/{rest:path}",
    "flask": "/<key>/<path:rest>",
    "django": "/<str:key>/<path:rest>",
}


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("asgi", id="starlette-uvicorn"),
        pytest.param("flask", id="flask-gunicorn"),
        pytest.param("django", id="django-gunicorn"),
    ],
)
def test_get_page_recovers_by_itself(
    kind: str, apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(kind)
    key = new_key("recover")
    # With a fragment: the server never sees it, the browser must keep it.
    url = app.url(f"/{key}/orders?id=3#details")
    upstream.set(key, "down")
    tab = tabs()

    started = time.time()
    response = tab.goto(url)
    assert response.status == 502
    assert response.headers["cache-control"] == "no-store"
    incident = incident_of(response)
    # The upstream answered 503: a bad answer, not an unreachable service.
    assert EN["explain_bad_answer"] in tab.text("main")
    history = tab.page.evaluate("() => history.length")

    eventually(lambda: len(app.probes(key)) >= 2, "two failed probes", page=tab.page)
    upstream.set(key, "up")
    assert tab.wait_real_page() == f"/{key}/orders"

    # The browser landed on the URL it asked for, in the same history entry.
    assert tab.page.url == url
    assert "_gf=" not in tab.page.url
    assert tab.page.evaluate("() => history.length") == history

    probes = app.probes(key)
    n = len(probes)
    assert all("_gf=" in p["query"] and p["query"].startswith("id=3&") for p in probes)
    assert len({p["query"] for p in probes}) == n, "every probe has its own cache-buster"
    outcome = first_outcome(app, incident)
    assert outcome["kind"] == "recovered"
    expected = [("shown", 0), *[("retry", i) for i in range(1, n + 1)], ("recovered", n)]
    until_equal(lambda: sorted(app.kinds(incident)), sorted(expected), "the beacons")

    # The page's clock (navigation start to location.replace) against the real one:
    # from just before the navigation to the arrival of the navigation it replaced itself with.
    landed = [r for r in app.navigations(key) if r["time"] > probes[-1]["time"]]
    assert len(landed) == 1
    real_ms = (landed[0]["time"] - started) * 1000
    assert abs(outcome["elapsed_ms"] - real_ms) <= 0.2 * real_ms, (outcome, real_ms)

    # One failure for the user's request; the failed probes are counted as probes.
    served = app.server_events(incident)
    assert [(e["status"], e["probe"], e["route"]) for e in served] == [
        (502, False, ROUTE_LABELS[kind])
    ]


# -- 2. a timeout upstream: the 504 page ------------------------------------------------


def test_timeout_upstream_shows_the_504_page(
    app: App, upstream: Upstream, tabs: TabFactory
) -> None:
    key = new_key("timeout")
    upstream.set(key, "slow")
    tab = tabs()
    try:
        response = tab.goto(app.url(f"/{key}/report"))
        assert response.status == 504
        assert tab.text("p.code") == f"Error 504 · {EN['title_504']}"
        assert tab.page.title() == f"{EN['title_504']} · Acme"
        assert EN["explain_timeout"] in tab.text("main")
        assert EN["explain_bad_answer"] not in tab.text("main")
        assert EN["explain_unreachable"] not in tab.text("main")
        incident = incident_of(response)
        until_equal(lambda: [e["status"] for e in app.server_events(incident)], [504], "a 504")
    finally:
        upstream.set(key, "up")
    tab.wait_real_page()


# -- 3. Retry-After ---------------------------------------------------------------------


def test_no_probe_before_retry_after(app: App, upstream: Upstream, tabs: TabFactory) -> None:
    key = new_key("after")
    upstream.set(key, "down")
    tab = tabs()
    response = tab.goto(app.url(f"/{key}/page"))
    retry_after = int(response.headers["retry-after"])
    assert retry_after == FAST_RETRY["retry_after"]

    # The script's schedule is the Python one (the page draws the first wait from here).
    policy = RetryPolicy(**FAST_RETRY)
    bounds = tab.page.evaluate("() => [0, 1, 2, 3, 4, 10].map(n => gracefail.delayBounds(n))")
    assert bounds == [list(policy.delay_bounds(n)) for n in (0, 1, 2, 3, 4, 10)]

    first = eventually(lambda: app.probes(key), "the first probe", page=tab.page)[0]
    (served,) = app.navigations(key)
    assert first["time"] - served["time"] >= retry_after


# -- 4. jitter: thirty pages that failed together ---------------------------------------

HERD = 30
HERD_RETRY = {"retry_after": 1, "base": 2, "cap": 4, "give_up_after": 60}
# When each page sent its probes, by its own clock (for the failure message).
SENT_PROBES = """
window.__gfSent = [];
var gfFetch = window.fetch;
window.fetch = function (url) {
  if (String(url).indexOf("_gf=") >= 0) { window.__gfSent.push(Date.now()); }
  return gfFetch.apply(this, arguments);
};
"""


def test_pages_that_failed_together_do_not_probe_together(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(retry=HERD_RETRY)
    key = new_key("herd")
    upstream.set(key, "down")
    # Thirty users, each in a browser profile of their own: the tabs of one profile share
    # one prober (test_browser_tabs.py), so they would not show the herd.
    herd = [tabs() for _ in range(HERD)]
    for tab in herd:
        tab.context.add_init_script(SENT_PROBES)
    # Every page navigates at the same wall-clock instant.
    at = (time.time() + 1.5) * 1000
    for n, tab in enumerate(herd):
        tab.page.evaluate(
            "([url, at]) => setTimeout(() => { location.href = url; }, at - Date.now())",
            [app.url(f"/{key}/page?n={n}"), at],
        )

    def first_probes() -> dict[str, float] | None:
        firsts: dict[str, float] = {}
        for probe in app.probes(key):
            page = probe["query"].split("&")[0]
            firsts.setdefault(page, probe["time"])
        return firsts if len(firsts) == HERD else None

    firsts = eventually(
        first_probes, f"a first probe from each of the {HERD} pages", 30, herd[0].page
    )
    served = {r["query"]: r["time"] for r in app.navigations(key)}
    assert len(served) == HERD

    sent = {f"n={n}": tab.page.evaluate("() => window.__gfSent") for n, tab in enumerate(herd)}
    table = "\n".join(
        f"{page:>5}  served {served[page] - at / 1000:6.3f}  probe sent "
        f"{(sent[page] or [0])[0] / 1000 - at / 1000:6.3f}  arrived {probed - at / 1000:6.3f}"
        for page, probed in sorted(firsts.items(), key=lambda item: item[1])
    )

    # Retry-After holds for each, and the first probes spread over the window
    # [retry_after, retry_after + base] instead of arriving together: they span at least
    # half of it and land in many different 100 ms slots (uniform draws fill about 16 of 20;
    # a machine busy with other work can still bunch some of them up on arrival).
    for page, probed in firsts.items():
        assert probed - served[page] >= HERD_RETRY["retry_after"], table
    times = sorted(firsts.values())
    span = times[-1] - times[0]
    assert span >= HERD_RETRY["base"] / 2, f"first probes within {span:.3f} s\n{table}"
    slots = {int((t - times[0]) * 10) for t in times}
    assert len(slots) >= 5, f"first probes in only {len(slots)} slots of 100 ms\n{table}"


# -- 5. a caching proxy in front -----------------------------------------------------------


def test_a_caching_proxy_never_serves_a_stale_error_or_probe(
    app: App, upstream: Upstream, nginx_in_front: Nginx, tabs: TabFactory
) -> None:
    proxy = nginx_in_front
    # The proxy does cache what it is allowed to: a 200, and the app's own bare 502.
    for path, status in (("/away", 200), ("/raw502", 502)):
        first = httpx.get(proxy.base + path, timeout=5)
        again = httpx.get(proxy.base + path, timeout=5)
        assert (first.status_code, again.status_code) == (status, status)
        assert (first.headers["x-cache-status"], again.headers["x-cache-status"]) == (
            "MISS",
            "HIT",
        )

    key = new_key("cache")
    upstream.set(key, "down")
    tab = tabs()
    answers: list[tuple[str, int, str | None]] = []
    tab.page.on(
        "response",
        lambda r: answers.append((r.url, r.status, r.headers.get("x-cache-status"))),
    )
    url = f"{proxy.base}/{key}/catalog"
    for _ in range(2):
        response = tab.goto(url)
        assert response.status == 502
        assert response.headers["x-cache-status"] == "MISS"
    assert len(app.navigations(key)) == 2, "the second error page came from the app"

    eventually(lambda: len(app.probes(key)) >= 2, "two probes through the proxy", page=tab.page)
    upstream.set(key, "up")
    tab.wait_real_page()
    assert tab.page.url == url

    # fetch(..., {cache: "no-store"}) bypasses the browser's cache and says so upstream.
    for probe in app.probes(key):
        assert probe["headers"].get("cache-control") == "no-cache", probe
        assert probe["headers"].get("pragma") == "no-cache", probe
    probes = [(u, s, c) for u, s, c in answers if "_gf=" in u]
    assert len(probes) == len(app.probes(key)), "every probe reached the app"
    assert all(c == "MISS" for _, _, c in probes), probes
    assert len({u for u, _, _ in probes}) == len(probes)
    assert probes[-1][1] == 200
    assert [s for _, s, _ in probes[:-1]] == [502] * (len(probes) - 1)
    # The page the browser landed on is the app's fresh answer, not a cached error.
    pages = [(s, c) for u, s, c in answers if u == url]
    assert pages == [(502, "MISS"), (502, "MISS"), (200, "MISS")]
    # And a new visit now gets the recovered page, never the error page.
    assert tab.goto(url).status == 200


# -- 6. hidden tab, offline ----------------------------------------------------------------


def test_hidden_tab_pauses_and_offline_stops_probing(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps()
    key = new_key("hidden")
    upstream.set(key, "down")
    tab = tabs()
    tab.context.add_init_script(VISIBILITY_SCRIPT)
    tab.goto(app.url(f"/{key}/page"))
    eventually(lambda: app.probes(key), "the first probe", page=tab.page)

    tab.page.evaluate("() => __gfSetHidden(true)")
    tab.wait_state("paused", lambda s: s["paused"] and not s["busy"] and s["nextAt"] == 0)
    before = len(app.probes(key))
    tab.wait(QUIET)
    assert len(app.probes(key)) == before, "a hidden tab probed"

    # Visible again: the next probe is due within a second, not after the backoff.
    due = tab.page.evaluate(
        "() => { __gfSetHidden(false); return gracefail.state.nextAt - Date.now(); }"
    )
    assert 0 < due <= 1000
    eventually(lambda: len(app.probes(key)) > before, "a probe once visible", page=tab.page)

    tab.context.set_offline(True)
    tab.wait_state("offline", lambda s: s["offline"] and not s["busy"] and s["nextAt"] == 0)
    assert tab.text("#gf-live") == EN["js_offline"]
    attempts = tab.state()["attempts"]  # type: ignore[index]
    before = len(app.probes(key))
    tab.wait(QUIET)
    assert len(app.probes(key)) == before, "an offline page probed"
    assert tab.state()["attempts"] == attempts  # type: ignore[index]

    # Back online, it checks at once: the upstream is up by now, so that check recovers.
    upstream.set(key, "up")
    tab.context.set_offline(False)
    tab.wait_real_page()
    assert len(app.probes(key)) == before + 1


# -- 7. a failed POST is never resubmitted ----------------------------------------------


def test_post_is_never_resubmitted(app: App, upstream: Upstream, tabs: TabFactory) -> None:
    key = UNSAFE_KEY  # the default app's health_url is /unsafe/health
    upstream.set(key, "down")
    tab = tabs()
    since = time.time()
    tab.goto(app.url(f"/{key}/form"))
    with tab.page.expect_navigation() as navigation:
        tab.page.click("#send")
    response = navigation.value
    assert response is not None
    assert response.status == 502
    incident = incident_of(response)

    # Other tests' unsafe pages probe /unsafe/health too: count only this test's requests.
    def posts() -> list[dict[str, Any]]:
        return [r for r in app.requests(key) if r["method"] == "POST" and r["time"] >= since]

    def probes() -> list[dict[str, Any]]:
        return [r for r in app.probes(key) if r["time"] >= since]

    assert EN["heading_unsafe"] == tab.text("h1")
    assert tab.text("p.note") == EN["next_unsafe"].replace("{brand}", "Acme")
    assert tab.text("#gf-retry") == EN["check_now"]
    eventually(lambda: len(probes()) >= 2, "two health probes", page=tab.page)
    assert {p["path"] for p in probes()} == {f"/{key}/health"}
    assert all(p["method"] == "GET" for p in probes())

    upstream.set(key, "up")
    tab.wait_state("service back", lambda s: s["back"])
    assert tab.text("#gf-live") == EN["js_service_back"]
    assert tab.page.is_visible("#gf-back")
    assert tab.page.is_visible("#gf-link")
    assert tab.page.get_attribute("#gf-link", "href") == "/", "the site, not the health endpoint"
    assert tab.page.is_hidden("#gf-retry")
    assert tab.page.url == app.url(f"/{key}/submit"), "the page stays; it does not reload"
    assert first_outcome(app, incident)["kind"] == "recovered"

    with tab.page.expect_navigation():
        tab.page.click("#gf-back")
    assert tab.page.title() == "Form"
    tab.wait(QUIET)
    assert len(posts()) == 1, "the server received the POST more than once"
    assert "abandoned" not in dict(app.kinds(incident)), "one outcome per page view"


# -- 8. back / forward -------------------------------------------------------------------


def test_back_and_forward_never_show_a_stale_error_page(
    app: App, upstream: Upstream, tabs: TabFactory
) -> None:
    tab = tabs()
    # Left before recovery: coming back after it, the browser asks again: the real page.
    key = new_key("back")
    upstream.set(key, "down")
    url = app.url(f"/{key}/page")
    incident = incident_of(tab.goto(url))
    tab.goto(app.url("/away"))
    upstream.set(key, "up")
    tab.page.go_back()
    assert tab.page.locator("#real").count() == 1
    assert tab.page.url == url
    assert len(app.navigations(key)) == 2
    assert first_outcome(app, incident)["kind"] == "abandoned"

    # Recovered, left, came back: the real page again (it replaced the error page in
    # history), never the error page.
    key = new_key("forth")
    upstream.set(key, "down")
    url = app.url(f"/{key}/page")
    tab.goto(url)
    eventually(lambda: app.probes(key), "a probe", page=tab.page)
    upstream.set(key, "up")
    tab.wait_real_page()
    tab.goto(app.url("/away"))
    tab.page.go_back()
    assert tab.page.url == url
    assert tab.page.locator("#real").count() == 1
    tab.page.go_forward()
    assert tab.page.title() == "Away"
    tab.page.go_back()
    assert tab.page.locator("#real").count() == 1


def test_back_forward_cache_never_keeps_the_error_page(
    app: App, upstream: Upstream, playwright: Playwright, chromium: str
) -> None:
    """Playwright turns the back/forward cache off; here it is on, as in a user's browser."""
    browser = playwright.chromium.launch(
        executable_path=chromium,
        args=CHROMIUM_ARGS,
        ignore_default_args=["--disable-back-forward-cache"],
    )
    try:
        tab = Tab(browser)
        cdp = tab.context.new_cdp_session(tab.page)
        cdp.send("Page.enable")
        refused: list[str] = []
        cdp.on(
            "Page.backForwardCacheNotUsed",
            lambda e: refused.extend(x["reason"] for x in e["notRestoredExplanations"]),
        )
        key = new_key("bfcache")
        upstream.set(key, "down")
        url = app.url(f"/{key}/page")
        tab.goto(url)
        tab.goto(app.url("/away"))
        upstream.set(key, "up")
        tab.page.go_back()
        tab.wait_real_page()
        # Chromium names one reason or both, depending on which check it reached first.
        assert {"HTTPStatusNotOK", "MainResourceHasCacheControlNoStore"} & set(refused), refused
        assert len(app.navigations(key)) == 2, "going back asked the app again"
        assert tab.problems == []
        tab.close()
    finally:
        browser.close()


def test_restored_from_a_back_forward_cache_it_probes_again(
    app: App, upstream: Upstream, tabs: TabFactory
) -> None:
    """Browsers that do keep the page (Chromium never does, see above) fire pagehide and
    pageshow with ``persisted``; the test fires them as such a browser would."""
    key = new_key("restored")
    upstream.set(key, "down")
    tab = tabs()
    incident = incident_of(tab.goto(app.url(f"/{key}/page")))
    eventually(lambda: app.probes(key), "a probe", page=tab.page)
    tab.page.evaluate("() => dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}))")
    assert first_outcome(app, incident)["kind"] == "abandoned"
    probes = len(app.probes(key))
    upstream.set(key, "up")
    tab.page.evaluate("() => dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
    tab.wait_real_page()
    assert len(app.probes(key)) == probes + 1, "it probed at once"
    tab.wait(QUIET)
    assert [k for k, _ in app.kinds(incident) if k in ("recovered", "gave_up", "abandoned")] == [
        "abandoned"
    ], "one outcome per page view"


# -- 9. giving up ------------------------------------------------------------------------


def test_gives_up_after_give_up_after(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(retry=GIVE_UP_RETRY)
    key = new_key("giveup")
    upstream.set(key, "down")
    tab = tabs()
    response = tab.goto(app.url(f"/{key}/page"))
    incident = incident_of(response)
    state = tab.wait_state(
        "giving up", lambda s: s["gaveUp"], timeout=GIVE_UP_RETRY["give_up_after"] + 10
    )
    assert state["outcome"] == "gave_up"
    assert first_outcome(app, incident)["kind"] == "gave_up"
    gave_up_ms = next(e for e in app.client_events(incident) if e["kind"] == "gave_up")[
        "elapsed_ms"
    ]
    assert gave_up_ms >= GIVE_UP_RETRY["give_up_after"] * 1000

    assert tab.text("#gf-live") == EN["js_gave_up"]
    assert tab.page.is_hidden("#gf-wait")
    assert tab.page.is_visible("#gf-retry")
    assert tab.page.is_enabled("#gf-retry")
    assert tab.page.locator("a.gf-st").count() == 1, "one status link"
    assert tab.page.get_attribute("li a.gf-st", "href") == STATUS_PAGE
    assert tab.page.is_visible("li a.gf-st")
    assert tab.page.is_visible("li.t2"), "the second-stage tips are shown"
    probes = len(app.probes(key))
    tab.wait(QUIET)
    assert len(app.probes(key)) == probes, "probed after giving up"

    # The manual retry still works; closing the tab adds no second outcome.
    tab.page.click("#gf-retry")
    eventually(lambda: len(app.probes(key)) > probes, "the manual probe", page=tab.page)
    eventually(lambda: "manual_retry" in dict(app.kinds(incident)), "manual_retry")
    tab.page.close()
    time.sleep(QUIET)
    kinds = [k for k, _ in app.kinds(incident)]
    assert kinds.count("gave_up") == 1
    assert "abandoned" not in kinds
    assert "recovered" not in kinds


def test_a_paused_page_does_not_give_up_behind_the_users_back(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    """Hidden or offline when give_up_after passes: nothing is sent; back, it checks once."""
    give_up_after = 3
    app = apps(retry={**FAST_RETRY, "give_up_after": give_up_after})
    key = new_key("pausedgiveup")
    upstream.set(key, "down")
    hidden, offline = tabs(), tabs()
    hidden.context.add_init_script(VISIBILITY_SCRIPT)
    incidents = {}
    started = time.time()
    for name, tab in (("hidden", hidden), ("offline", offline)):
        incidents[name] = incident_of(tab.goto(app.url(f"/{key}/page?{name}")))
    eventually(lambda: len({p["query"][:6] for p in app.probes(key)}) == 2, "a probe from each")
    hidden.page.evaluate("() => __gfSetHidden(true)")
    offline.context.set_offline(True)
    hidden.wait_state("paused", lambda s: s["paused"] and not s["busy"])
    offline.wait_state("offline", lambda s: s["offline"] and not s["busy"])
    probes = len(app.probes(key))

    # Past give_up_after (and then some): still paused, no outcome, nothing sent.
    hidden.wait(max(0.0, started + give_up_after + QUIET - time.time()))
    for tab in (hidden, offline):
        state = tab.state()
        assert state is not None
        assert not state["gaveUp"]
        assert state["outcome"] is None
    assert len(app.probes(key)) == probes
    for incident in incidents.values():
        assert "gave_up" not in dict(app.kinds(incident))
    assert offline.text("#gf-live") == EN["js_offline"]

    # Back: one more check, and as it fails, the page gives up and says so.
    hidden.page.evaluate("() => __gfSetHidden(false)")
    offline.context.set_offline(False)
    for tab in (hidden, offline):
        tab.wait_state("gave up", lambda s: s["gaveUp"])
        assert tab.text("#gf-live") == EN["js_gave_up"]
    assert len(app.probes(key)) == probes + 2
    for incident in incidents.values():
        eventually(lambda i=incident: "gave_up" in dict(app.kinds(i)), "gave_up beacons")


# -- 10. abandoning ---------------------------------------------------------------------


def test_leaving_before_recovery_sends_abandoned(
    app: App, upstream: Upstream, tabs: TabFactory
) -> None:
    key = new_key("abandon")
    upstream.set(key, "down")
    tab = tabs()
    before = time.time()
    response = tab.goto(app.url(f"/{key}/page"))
    incident = incident_of(response)
    probe = eventually(lambda: app.probes(key), "a probe", page=tab.page)[0]
    (served,) = app.navigations(key)
    tab.goto(app.url("/away"))
    left = time.time()
    outcome = first_outcome(app, incident)
    assert outcome["kind"] == "abandoned"
    # Time on page, by the page's clock: longer than from its request to its probe,
    # shorter than from before the test opened it to after it had left.
    on_page = outcome["elapsed_ms"] / 1000
    assert probe["time"] - served["time"] <= on_page <= left - before
    assert outcome["attempt"] >= 1
    tab.wait(QUIET)
    assert [k for k, _ in app.kinds(incident)].count("abandoned") == 1


# -- 11. the app server itself goes away ------------------------------------------------


def test_beacons_wait_while_the_server_is_down(
    upstream: Upstream, tabs: TabFactory, tmp_path: Path
) -> None:
    app = App("asgi", upstream, tmp_path / "log.jsonl", dict(DEFAULT_OPTIONS)).start()
    try:
        key = new_key("serverdown")
        upstream.set(key, "down")
        tab = tabs()
        url = app.url(f"/{key}/page")
        response = tab.goto(url)
        incident = incident_of(response)
        eventually(lambda: app.probes(key), "a probe", page=tab.page)
        eventually(lambda: ("retry", 1) in app.kinds(incident), "the first retry beacon")

        app.stop()
        stopped = time.time()
        waiting = eventually(
            lambda: len(queued(tab)) >= 2 and queued(tab), "queued beacons", page=tab.page
        )
        assert all(b and '"kind":"retry"' in b for b in waiting)

        upstream.set(key, "up")
        app.start()
        tab.wait_real_page()
        assert tab.page.url == url
        assert queued(tab) == [], "the queue was emptied"
        outcome = first_outcome(app, incident)
        assert outcome["kind"] == "recovered"
        n = outcome["attempt"]

        # Every beacon arrived exactly once (as sent, before gracefail's duplicate check),
        # and those sent while the server was down arrived after its restart.
        expected = [("shown", 0), *[("retry", i) for i in range(1, n + 1)], ("recovered", n)]
        until_equal(
            lambda: sorted((b["kind"], b["attempt"]) for b in app.beacons(incident)),
            sorted(expected),
            "every beacon once",
        )
        assert sorted(app.kinds(incident)) == sorted(expected)
        before = {
            (e["kind"], e["attempt"]) for e in app.client_events(incident) if e["time"] < stopped
        }
        after = {
            (e["kind"], e["attempt"]) for e in app.client_events(incident) if e["time"] > stopped
        }
        assert before | after == set(expected)
        assert {("retry", n), ("recovered", n)} <= after
        assert {json.loads(b)["attempt"] for b in waiting} <= {a for k, a in after if k == "retry"}
    finally:
        app.stop()
