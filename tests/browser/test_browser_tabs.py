"""Issue 11: the pages of one origin in one browser profile share one prober.

Every tab here is a page of one Playwright context (one profile: one localStorage, one
BroadcastChannel space) unless it says otherwise. What the server saw comes from the
app's log, as in test_browser_recovery: each page has its own URL (``?tab=n``), so a probe
names the page that sent it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.browser.conftest import AppFactory, TabFactory
from tests.browser.support import (
    VISIBILITY_SCRIPT,
    App,
    Tab,
    Upstream,
    eventually,
    first_outcome,
    incident_of,
    locale_strings,
    new_key,
)

pytestmark = pytest.mark.browser

EN = locale_strings("en")
TABS_KEY = "gracefail:tabs"
# After the first probe, every wait is drawn from [0, 1] s: many probes in a short window,
# so the counts compared below are large and their spread small.
TABS_RETRY = {"retry_after": 1, "base": 0.5, "cap": 1, "give_up_after": 120}
WINDOW = 15.0
# A page without the APIs the tabs share through, as in a private mode or an old browser.
NO_SHARING = """
delete window.BroadcastChannel;
Object.defineProperty(window, "localStorage", {
  configurable: true, get: function () { throw new DOMException("denied", "SecurityError"); }
});
"""
NO_CHANNEL = "delete window.BroadcastChannel;"


def page_of(probe: dict[str, Any]) -> str:
    """The ``tab=n`` of the page that sent a probe (its query is ``tab=n&_gf=...``)."""
    return str(probe["query"].split("&")[0])


def open_tabs(
    tabs: TabFactory, app: App, key: str, count: int, init: str | None = None
) -> tuple[list[Tab], list[str]]:
    """``count`` pages of one context on ``/key/page?tab=n``; the tabs and their incidents."""
    first = tabs()
    if init:
        first.context.add_init_script(init)
    opened = [first] + [tabs(same_context_as=first) for _ in range(count - 1)]
    incidents = []
    for n, tab in enumerate(opened):
        response = tab.goto(app.url(f"/{key}/page?tab={n}"))
        assert response.status == 502
        incidents.append(incident_of(response))
    return opened, incidents


def probes_between(app: App, key: str, since: float, until: float) -> list[dict[str, Any]]:
    return [p for p in app.probes(key) if since <= p["time"] < until]


def all_recover(opened: list[Tab], app: App, incidents: list[str]) -> None:
    """Every page shows the app's page, and each page view sent its own outcome."""
    for tab in opened:
        tab.wait_real_page(timeout=10)
    for incident in incidents:
        assert first_outcome(app, incident)["kind"] == "recovered"


def test_four_tabs_probe_like_one_and_recover_together(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(retry=TABS_RETRY)
    alone, together = new_key("one-tab"), new_key("four-tabs")
    upstream.set(alone, "down")
    upstream.set(together, "down")
    single, _ = open_tabs(tabs, app, alone, 1)
    four, incidents = open_tabs(tabs, app, together, 4)
    # The same window for both, once every page has been shown and probing has begun.
    eventually(lambda: app.probes(together), "the first probe of the four", page=four[0].page)
    since = time.time()
    four[0].wait(WINDOW)
    until = time.time()
    one_tab = probes_between(app, alone, since, until)
    four_tabs = probes_between(app, together, since, until)
    print(f"\nprobes in {until - since:.1f} s: one tab {len(one_tab)}, four tabs {len(four_tabs)}")
    assert one_tab, "the single tab probed"
    assert len(four_tabs) <= 1.5 * len(one_tab), (len(four_tabs), len(one_tab))

    # Every page says what the prober found, though only the prober asked.
    for tab in four:
        tab.wait_state("a failure told", lambda s: s["failures"] >= 1 and s["attempts"] >= 1)
        assert tab.text("#gf-live") == EN["js_still"]
    leaders = {page_of(p) for p in four_tabs}
    assert len(leaders) == 1, f"one page probed, not {sorted(leaders)}"

    upstream.set(together, "up")
    all_recover(four, app, incidents)
    upstream.set(alone, "up")
    single[0].wait_real_page()


def test_closing_the_leader_hands_the_probing_to_another_tab(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(retry=TABS_RETRY)
    key = new_key("leader")
    upstream.set(key, "down")
    opened, incidents = open_tabs(tabs, app, key, 3)
    eventually(lambda: len(app.probes(key)) >= 3, "probes", page=opened[0].page)
    shared = json.loads(opened[0].page.evaluate("(k) => localStorage.getItem(k)", TABS_KEY))
    ids = [tab.page.evaluate("() => gracefail.tab") for tab in opened]
    leader = ids.index(shared["tab"])
    assert page_of(app.probes(key)[-1]) == f"tab={leader}"

    closed_at = time.time()
    # The page only (Tab.close() of the first tab would close the whole context).
    opened[leader].page.close()
    survivors = [tab for n, tab in enumerate(opened) if n != leader]
    survivor_incidents = [incident for n, incident in enumerate(incidents) if n != leader]

    def taken_over() -> set[str] | None:
        after = {page_of(p) for p in app.probes(key) if p["time"] > closed_at + 0.1}
        return after or None

    after = eventually(taken_over, "a probe from another tab", page=survivors[0].page)
    assert f"tab={leader}" not in after
    # The leader's own outcome: it left before recovery.
    assert first_outcome(app, incidents[leader])["kind"] == "abandoned"
    upstream.set(key, "up")
    all_recover(survivors, app, survivor_incidents)


def test_a_hidden_leader_hands_the_probing_to_a_visible_tab(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(retry=TABS_RETRY)
    key = new_key("hidden-leader")
    upstream.set(key, "down")
    opened, _ = open_tabs(tabs, app, key, 3, VISIBILITY_SCRIPT)
    eventually(lambda: len(app.probes(key)) >= 3, "probes", page=opened[0].page)
    shared = json.loads(opened[0].page.evaluate("(k) => localStorage.getItem(k)", TABS_KEY))
    ids = [tab.page.evaluate("() => gracefail.tab") for tab in opened]
    leader = ids.index(shared["tab"])
    hidden_at = time.time()
    opened[leader].page.evaluate("() => __gfSetHidden(true)")

    def taken_over() -> set[str] | None:
        after = {page_of(p) for p in app.probes(key) if p["time"] > hidden_at + 0.5}
        return after or None

    after = eventually(taken_over, "a probe from a visible tab", page=opened[0].page)
    assert f"tab={leader}" not in after
    opened[leader].page.evaluate("() => __gfSetHidden(false)")
    upstream.set(key, "up")
    for tab in opened:
        tab.wait_real_page(timeout=10)


def test_a_reload_keeps_the_backoff(apps: AppFactory, upstream: Upstream, tabs: TabFactory) -> None:
    app = apps(retry=TABS_RETRY)
    key = new_key("reload")
    upstream.set(key, "down")
    (tab,), _ = open_tabs(tabs, app, key, 1)
    before = tab.wait_state("four probes", lambda s: s["attempts"] >= 4)["attempts"]
    tab.page.reload()
    reloaded = time.time()
    # The new page view goes on from the attempts made, not from the first, shortest wait.
    assert tab.wait_state("the shared attempts", lambda s: s["attempts"] >= before)
    first = eventually(
        lambda: [p for p in app.probes(key) if p["time"] > reloaded], "a probe", page=tab.page
    )[0]
    assert first["time"] - reloaded >= TABS_RETRY["retry_after"], "Retry-After still holds"
    upstream.set(key, "up")
    tab.wait_real_page()


@pytest.mark.parametrize(
    ("init", "shared"),
    [
        pytest.param(NO_SHARING, False, id="no-localStorage-no-BroadcastChannel"),
        pytest.param(NO_CHANNEL, True, id="no-BroadcastChannel"),
    ],
)
def test_without_the_shared_apis(
    init: str, shared: bool, apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(retry=TABS_RETRY)
    key = new_key("fallback")
    upstream.set(key, "down")
    opened, incidents = open_tabs(tabs, app, key, 3, init)
    since = time.time()
    opened[0].wait(6)
    probers = {page_of(p) for p in app.probes(key) if p["time"] >= since}
    if shared:
        # The lease in localStorage still keeps one prober.
        assert len(probers) == 1, probers
    else:
        # Today's behaviour: each page probes on its own.
        assert probers == {"tab=0", "tab=1", "tab=2"}
    upstream.set(key, "up")
    all_recover(opened, app, incidents)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('{"tab": "gone", "n": "7", "at": 1e15}', id="wrong-types"),
        pytest.param('{"tab": "gone", "n": 3, "at": 99999999999999}', id="turn-far-away"),
        pytest.param("[1, 2, 3]", id="not-an-object"),
    ],
)
def test_a_corrupt_shared_state_is_ignored_and_rebuilt(
    stored: str, apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    app = apps(retry=TABS_RETRY)
    key = new_key("corrupt")
    upstream.set(key, "down")
    first = tabs()
    first.context.add_init_script(
        f"if (!sessionStorage.getItem('seeded')) {{ sessionStorage.setItem('seeded', '1');"
        f" localStorage.setItem({json.dumps(TABS_KEY)}, {json.dumps(stored)}); }}"
    )
    first.goto(app.url(f"/{key}/page"))
    eventually(lambda: app.probes(key), "a probe", page=first.page)
    rebuilt = json.loads(first.page.evaluate("(k) => localStorage.getItem(k)", TABS_KEY))
    assert rebuilt["tab"] == first.page.evaluate("() => gracefail.tab")
    assert isinstance(rebuilt["n"], int)
    assert first.state()["attempts"] >= 1  # type: ignore[index]
    upstream.set(key, "up")
    first.wait_real_page()


def test_a_post_page_recovers_with_the_get_pages_prober(
    apps: AppFactory, upstream: Upstream, tabs: TabFactory
) -> None:
    key = new_key("mixed")
    app = apps(retry=TABS_RETRY, health_url=f"/{key}/health")
    upstream.set(key, "down")
    (getter,), (get_incident,) = open_tabs(tabs, app, key, 1)
    eventually(lambda: app.probes(key), "the GET page probes", page=getter.page)
    poster = tabs(same_context_as=getter)
    poster.goto(app.url(f"/{key}/form"))
    with poster.page.expect_navigation() as navigation:
        poster.page.click("#send")
    response = navigation.value
    assert response is not None
    assert response.status == 502
    post_incident = incident_of(response)
    poster.wait_state("a failure told", lambda s: s["failures"] >= 1)

    upstream.set(key, "up")
    getter.wait_real_page(timeout=10)
    poster.wait_state("service back", lambda s: s["back"], timeout=10)
    assert poster.text("#gf-live") == EN["js_service_back"]
    assert poster.page.is_visible("#gf-link")
    assert poster.page.url == app.url(f"/{key}/submit"), "a POST page never reloads"
    posts = [r for r in app.requests(key) if r["method"] == "POST"]
    assert len(posts) == 1
    assert first_outcome(app, get_incident)["kind"] == "recovered"
    assert first_outcome(app, post_incident)["kind"] == "recovered"
