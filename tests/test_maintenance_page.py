"""The maintenance page is the branded page: base.html, page.css, the brand and the theme,
in the reader's language (chosen from Accept-Language as the failure page's is), valid,
self-contained and within the page budget; and, in a real Chromium behind a real uvicorn,
accessible (axe-core) in every locale and colour scheme."""

from __future__ import annotations

import base64
import calendar
import hashlib
import html
import json
import logging
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gracefail import Brand, Config
from gracefail.config import LOCALES, LOGO_BUDGET
from gracefail.maintenance import MAX_MESSAGE, Maintenance, MaintenanceWatch
from gracefail.maintenance_page import MaintenanceGate
from gracefail.negotiate import negotiate_locale
from gracefail.render import MAX_ECHOED_URL, PAGE_BUDGET, Renderer
from tests.conftest import ROOT

SECRET = "maintenance-page-secret-0123456789"
THEMES = ROOT / "templates"
LOCALE_DIR = ROOT / "src" / "gracefail" / "locales"
ACCEPT_LANGUAGE = {
    "en": "en-US,en;q=0.9",
    "es": "es-ES,es;q=0.9",
    "fr": "fr-FR,fr;q=0.9",
    "de": "de-DE,de;q=0.9",
    "pt-BR": "pt-BR,pt;q=0.9",
    "ja": "ja-JP,ja;q=0.9",
    "zh-Hans": "zh-CN,zh;q=0.9",
}
OPTIONAL_END = frozenset(("li", "p", "option", "dt", "dd"))
VOID = frozenset(("meta", "link", "img", "br", "input", "hr", "source", "wbr"))
NOW = 1_900_000_000.0


def strings(locale: str) -> dict[str, str]:
    found: dict[str, str] = json.loads((LOCALE_DIR / f"{locale}.json").read_text("utf-8"))
    return found


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


class Checked(HTMLParser):
    """A page's structure: every element closed in order (void ones aside), ids once each,
    its scripts and styles, the URLs it names and the text a reader sees."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.doctype = ""
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self.data_blocks: list[str] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._json = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.tags.append((tag, values))
        if "id" in values:
            self.ids.append(values["id"])
        self.urls += [values[name] for name in ("href", "src", "action") if name in values]
        if any(name.startswith("on") for name in values) or "style" in values:
            self.errors.append(f"<{tag}> has an inline handler or style")
        if tag not in VOID:
            self.stack.append(tag)
        self._json = values.get("type") == "application/json"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        # Elements whose end tag HTML lets a theme leave out (the corporate theme's <li>).
        while self.stack and self.stack[-1] != tag and self.stack[-1] in OPTIONAL_END:
            self.stack.pop()
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        where = self.stack[-1] if self.stack else ""
        if where == "script":
            (self.data_blocks if self._json else self.scripts).append(data)
        elif where == "style":
            self.styles.append(data)
        elif where not in ("title", "noscript"):
            self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


def check(body: bytes, csp: str) -> Checked:
    """The page parsed, and what every page must be: valid, self-contained, hashed."""
    page = Checked()
    page.feed(body.decode())
    page.close()
    assert page.doctype.lower() == "doctype html"
    assert page.errors == []
    assert page.stack == [], "every element is closed"
    assert len(page.ids) == len(set(page.ids)), page.ids
    assert len(page.scripts) == 1
    assert len(page.styles) == 1
    assert f"script-src {sha256(page.scripts[0])};" in csp
    assert f"style-src {sha256(page.styles[0])};" in csp
    assert "unsafe-inline" not in csp
    assert "connect-src 'self';" in csp
    # Nothing loaded from anywhere while it shows: links only (and data: images).
    loaded = [value for tag, attrs in page.tags for key, value in attrs.items()
              if key == "src" and not value.startswith("data:")]  # fmt: skip
    assert loaded == []
    assert len(body) <= PAGE_BUDGET
    return page


def settings_of(page: Checked) -> dict[str, Any]:
    [block] = page.data_blocks
    found: dict[str, Any] = json.loads(block)
    return found


def gate_for(config: Config) -> MaintenanceGate:
    return MaintenanceGate(config, watch=MaintenanceWatch("unused.sqlite3"))


def state(message: str = "Moving to new servers", ends: float | None = NOW + 600) -> Maintenance:
    return Maintenance(started=NOW - 60, ends=ends, message=message, set_by="test")


def page_of(
    gate: MaintenanceGate,
    now_state: Maintenance | None = None,
    *,
    language: str | None = None,
    safe: bool = True,
    url: str = "/orders?id=7",
    incident: str = "inc-1",
) -> tuple[bytes, Checked]:
    body, content_type = gate.body(
        "html", now_state or state(), incident=incident, safe=safe, url=url,
        retry_after=640, now=NOW, accept_language=language,
    )  # fmt: skip
    assert content_type == "text/html; charset=utf-8"
    return body, check(body, gate.csp)


@pytest.fixture(scope="module")
def gate() -> MaintenanceGate:
    return gate_for(
        Config(
            secret=SECRET,
            recorders=[],
            brand=Brand(name="Acme", color="#0f766e"),
            status_page_url="https://status.acme.example",
        )
    )


# -- every locale -------------------------------------------------------------------------


def test_every_shipped_locale_has_an_accept_language() -> None:
    assert set(ACCEPT_LANGUAGE) == set(LOCALES)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_locale_renders_the_branded_page(gate: MaintenanceGate, locale: str) -> None:
    words = {key: text.replace("{brand}", "Acme") for key, text in strings(locale).items()}
    body, page = page_of(gate, language=ACCEPT_LANGUAGE[locale])
    text = body.decode()
    assert f'<html lang="{locale}">' in text
    assert f"<title>{html.escape(words['maintenance_title'])} · Acme</title>" in text
    seen = page.visible
    for key in ("maintenance_heading", "maintenance_explain", "maintenance_back_at",
                "maintenance_next_safe", "reference", "tip_status", "try_again"):  # fmt: skip
        assert " ".join(words[key].split()) in seen, (locale, key)
    assert "Moving to new servers" in seen
    # The failure page's frame: the brand in the header, linking home; page.css with the
    # brand's colour; the status page linked; the incident in the footer.
    assert ("a", {"class": "brand", "href": "/"}) in page.tags
    assert page.styles[0].startswith(":root{--gf-accent:#0f766e}")
    assert "https://status.acme.example" in page.urls
    assert "<code>inc-1</code>" in text
    # The end as ISO for the script, UTC text without it.
    assert '<time id="gf-end" datetime="2030-03-17T17:56:40Z">2030-03-17 17:56:40 UTC</time>' in (
        text
    )
    settings = settings_of(page)
    assert settings["locale"] == locale
    assert settings["ends"] == "2030-03-17T17:56:40Z"
    assert settings["retryAfter"] == 640
    assert settings["late"] == words["maintenance_late"]
    assert settings["backUnsafe"] == words["maintenance_back_unsafe"]


@pytest.mark.parametrize("locale", LOCALES)
def test_every_locale_says_what_a_post_page_says(gate: MaintenanceGate, locale: str) -> None:
    words = {key: text.replace("{brand}", "Acme") for key, text in strings(locale).items()}
    _, page = page_of(gate, language=ACCEPT_LANGUAGE[locale], safe=False)
    assert words["maintenance_next_unsafe"] in page.visible
    assert words["maintenance_next_safe"] not in page.visible
    # The link leads to the site, never back into the form's target.
    assert ("a", {"class": "btn", "id": "gf-link", "href": "/"}) in page.tags
    assert words["go_site"] in page.visible
    assert settings_of(page)["safe"] is False


def test_without_an_end_or_a_message(gate: MaintenanceGate) -> None:
    body, page = page_of(gate, state(message="", ends=None), language="fr")
    assert "gf-end" not in page.ids
    assert strings("fr")["maintenance_back_soon"] in page.visible
    assert 'class="note"' not in body.decode()
    assert settings_of(page)["ends"] is None


# -- the language ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("de-CH,de;q=0.9,en;q=0.5", "de"),
        ("pt", "pt-BR"),
        ("PT-br", "pt-BR"),
        ("zh-CN", "zh-Hans"),
        ("zh-TW", "en"),  # Traditional script: no shipped locale, the default
        ("fr;q=0.1, ja;q=0.8", "ja"),
        ("xx, yy;q=0.5", "en"),
        ("es;q=0, fr", "fr"),
        ("", "en"),
        (None, "en"),
        ("*", "en"),
    ],
)
def test_the_locale_is_chosen_from_accept_language(
    gate: MaintenanceGate, header: str | None, locale: str
) -> None:
    _, page = page_of(gate, language=header)
    assert settings_of(page)["locale"] == locale
    # The failure page's choice, by the same negotiation over the same locales.
    renderer_names = Renderer(Config(secret=SECRET, recorders=[])).locale_names
    assert negotiate_locale(header, renderer_names, "en") == locale


def test_the_default_locale_applies_when_nothing_matches() -> None:
    gate = gate_for(Config(secret=SECRET, recorders=[], default_locale="de"))
    for header in (None, "xx"):
        _, page = page_of(gate, language=header)
        assert settings_of(page)["locale"] == "de"
    _, english = page_of(gate, language="en")
    assert settings_of(english)["locale"] == "en"


def test_a_huge_accept_language_changes_nothing_and_caches_a_bounded_key(
    gate: MaintenanceGate,
) -> None:
    header = "de," + ",".join(f"x{i};q=0.{i % 9 + 1}" for i in range(20_000))
    _, page = page_of(gate, language=header)
    assert settings_of(page)["locale"] == "de"
    assert max(len(key) for key in gate._locales) <= 2000


def test_each_variant_is_rendered_once_and_reused(gate: MaintenanceGate) -> None:
    first = gate.page("ja", True, True, True)
    page_of(gate, language="ja-JP")
    assert gate.page("ja", True, True, True) is first
    one, _ = page_of(gate, language="ja", incident="INCIDENT-A")
    two, _ = page_of(gate, language="ja", incident="INCIDENT-B")
    assert one.replace(b"INCIDENT-A", b"INCIDENT-B") == two, "only the per-request values differ"


# -- per-request values ----------------------------------------------------------------------


def test_hostile_message_and_url_stay_in_their_place(gate: MaintenanceGate) -> None:
    hostile = '</p><script>alert(1)</script><img src=x onerror=alert(2)>"\u2028'
    url = '/a"><script>alert(3)</script>?q=</script><svg onload=alert(4)>'
    body, page = page_of(gate, state(message=hostile), url=url)
    text = body.decode()
    assert "<script>alert" not in text
    assert "<img src=x" not in text
    assert hostile.strip() in page.visible
    assert ("a", {"class": "btn", "id": "gf-link", "href": url}) in page.tags
    assert settings_of(page)["ends"] == "2030-03-17T17:56:40Z"


def test_a_url_too_long_to_echo_is_not_echoed(gate: MaintenanceGate) -> None:
    url = "/" + "p" * (MAX_ECHOED_URL + 10)
    body, page = page_of(gate, url=url)
    assert ("a", {"class": "btn", "id": "gf-link", "href": ""}) in page.tags
    assert b"p" * MAX_ECHOED_URL not in body


def test_the_largest_page_fits_the_budget_in_every_locale(caplog: pytest.LogCaptureFixture) -> None:
    prefix = "data:image/png;base64,"
    logo = prefix + "A" * ((LOGO_BUDGET - len(prefix)) // 4 * 4)
    config = Config(
        secret=SECRET,
        recorders=[],
        brand=Brand(name="A" * 80, logo=logo),
        status_page_url="https://status.example.com/a/long/path",
    )
    gate = gate_for(config)
    message = '"' * MAX_MESSAGE  # the most bytes a message can take escaped
    url = "/" + "&" * (MAX_ECHOED_URL // 5 - 1)
    with caplog.at_level(logging.WARNING, logger="gracefail"):
        for locale in LOCALES:
            for safe in (True, False):
                body, page = page_of(
                    gate, state(message=message), language=locale, safe=safe, url=url,
                    incident="R" * 64,
                )  # fmt: skip
                assert len(body) <= PAGE_BUDGET, (locale, safe, len(body))
                assert ("img", {"class": "logo", "alt": "A" * 80, "src": logo}) in page.tags
    assert not [r for r in caplog.records if "budget" in r.getMessage()]


def test_json_and_text_keep_their_fields_whatever_the_language(gate: MaintenanceGate) -> None:
    kwargs: dict[str, Any] = {"incident": "inc", "safe": True, "url": "/x", "retry_after": 640}
    english, kind = gate.body("json", state(), now=NOW, **kwargs)
    german, _ = gate.body("json", state(), now=NOW, accept_language="de", **kwargs)
    assert kind == "application/problem+json"
    assert english == german
    problem = json.loads(english)
    assert problem["status"] == 503
    assert problem["maintenance"] is True
    assert problem["ends"] == "2030-03-17T17:56:40Z"
    assert problem["retry_after"] == 640
    assert problem["detail"] == "Moving to new servers"
    text, kind = gate.body("text", state(), now=NOW, accept_language="ja", **kwargs)
    assert kind.startswith("text/plain")
    assert text.decode().splitlines() == [
        "503 Service Unavailable: planned maintenance.",
        "Moving to new servers",
        "Expected back: 2030-03-17T17:56:40Z (UTC).",
        "Retry after 640 seconds. Reference: inc",
        "Status: https://status.acme.example",
    ]


# -- themes --------------------------------------------------------------------------------


def test_a_theme_that_extends_base_html_dresses_the_maintenance_page_too() -> None:
    gate = gate_for(
        Config(secret=SECRET, recorders=[], template_dir=THEMES / "corporate", brand=Brand("Co"))
    )
    _, page = page_of(gate, language="de")
    corporate = json.loads((THEMES / "corporate" / "locales" / "de.json").read_text("utf-8"))
    assert ("header", {"class": "bar"}) in page.tags
    assert corporate["nav_products"] in page.visible  # the theme's own words, in German
    assert ".bar{background:var(--gf-accent)}" in page.styles[0]
    assert strings("de")["maintenance_heading"] in page.visible


def test_a_theme_whose_page_is_a_whole_page_gets_the_built_in_layout() -> None:
    gate = gate_for(Config(secret=SECRET, recorders=[], template_dir=THEMES / "centered"))
    body, page = page_of(gate, language="es")
    assert strings("es")["maintenance_heading"] in page.visible
    assert 'class="big"' not in body.decode()
    assert "gf-end" in page.ids


def test_a_themes_own_maintenance_html_is_used(tmp_path: Path) -> None:
    (tmp_path / "maintenance.html").write_text(
        '{% extends "gracefail/base.html" %}{% block main %}<h1>{{ t.maintenance_heading }}'
        '</h1><p>Back at <time id="gf-end" datetime="{{ ends }}">{{ ends_utc }}</time></p>'
        '<p id="gf-live" role="status">{{ message }}</p>{% endblock %}',
        encoding="utf-8",
    )
    gate = gate_for(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    body, page = page_of(gate, language="fr")
    assert f"<h1>{html.escape(strings('fr')['maintenance_heading'])}</h1>" in body.decode()
    assert "Back at 2030-03-17 17:56:40 UTC" in page.visible


def test_a_broken_theme_falls_back_to_the_built_in_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "maintenance.html").write_text("<p>{{ no_such_value }}</p>", encoding="utf-8")
    gate = gate_for(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    with caplog.at_level(logging.ERROR, logger="gracefail"):
        _, page = page_of(gate, language="de")
    assert strings("de")["maintenance_heading"] in page.visible
    assert "serving the built-in one instead" in caplog.text


def test_a_theme_putting_a_request_value_in_its_script_falls_back(tmp_path: Path) -> None:
    (tmp_path / "maintenance.html").write_text(
        '{% extends "gracefail/maintenance.html" %}'
        "{% block head %}<script>var incident = '{{ incident }}';</script>{% endblock %}",
        encoding="utf-8",
    )
    gate = gate_for(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    _, page = page_of(gate, language="en")  # check(): one script, hashed
    assert "var incident" not in page.scripts[0]


def test_a_language_a_theme_adds_is_chosen_with_english_for_what_it_lacks(tmp_path: Path) -> None:
    (tmp_path / "locales").mkdir()
    (tmp_path / "locales" / "nl.json").write_text(
        json.dumps({"maintenance_heading": "We voeren gepland onderhoud uit"}), encoding="utf-8"
    )
    gate = gate_for(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    body, page = page_of(gate, language="nl-NL,nl;q=0.9")
    assert '<html lang="nl">' in body.decode()
    assert "We voeren gepland onderhoud uit" in page.visible
    assert strings("en")["maintenance_back_at"] in page.visible


# -- in Chromium -----------------------------------------------------------------------------

AXE = ROOT / "tests" / "browser" / ".node" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The maintenance app under uvicorn with maintenance on for an hour."""
    pytest.importorskip("uvicorn")
    from gracefail import maintenance
    from tests.apps.common import free_port
    from tests.conftest import start_server, stop

    store = str(tmp_path_factory.mktemp("maintenance-page") / "events.sqlite3")
    maintenance.switch_on(store, duration=3600, message="Moving to new servers", set_by="test")
    port = free_port()
    proc = start_server(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.apps.maintenance_app:app",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        port,
        env={"GRACEFAIL_DB": store},
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.browser
@pytest.mark.server
def test_in_chromium_every_locale_is_accessible_and_shows_the_end_locally(site: str) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.support import CHROMIUM, CHROMIUM_ARGS
    from tests.conftest import require

    require(Path(CHROMIUM).exists(), "Chromium (/usr/bin/chromium)", "apt-get install chromium")
    require(AXE.is_file(), "axe-core", "npm install --prefix tests/browser/.node axe-core@4")
    axe_source = AXE.read_text("utf-8")
    found: dict[str, Any] = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for locale, header in ACCEPT_LANGUAGE.items():
                for scheme in ("light", "dark") if locale == "en" else ("light",):
                    found[f"{locale}/{scheme}"] = _visit(
                        browser, f"{site}/page?from=test", header, scheme, axe_source
                    )
            found["en/POST"] = _visit(
                browser, f"{site}/page", ACCEPT_LANGUAGE["en"], "light", axe_source, post=True
            )
        finally:
            browser.close()
    for name, result in found.items():
        locale = name.split("/")[0]
        assert result["lang"] == locale, name
        assert result["problems"] == [], name
        assert result["violations"] == [], name
        if not name.endswith("POST"):
            # Formatted in the reader's time zone (Asia/Tokyo), not the ISO text.
            assert "T" not in result["end"]
            assert result["end"] != result["iso"]
            assert any(clock in result["end"] for clock in result["tokyo"]), (name, result)
            assert result["day"] in result["end"], (name, result)


def _visit(
    browser: Any, url: str, header: str, scheme: str, axe_source: str, *, post: bool = False
) -> dict[str, Any]:
    locale = header.split(",")[0]
    # The page as served (its CSP enforced): script errors and CSP violations are problems.
    context = browser.new_context(
        timezone_id="Asia/Tokyo", locale=locale, color_scheme=scheme,
        extra_http_headers={"Accept-Language": header},
    )  # fmt: skip
    problems: list[str] = []
    page = context.new_page()
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    _open(page, url, post)
    result: dict[str, Any] = {
        "problems": problems,
        "lang": page.locator("html").get_attribute("lang"),
    }
    if not post:
        iso = page.locator("#gf-end").get_attribute("datetime") or ""
        result["iso"] = iso
        result["end"] = page.locator("#gf-end").inner_text()
        tokyo = time.gmtime(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")) + 9 * 3600)
        # The hour and minute on a 24 or 12-hour clock, as the locale writes it.
        result["tokyo"] = {f"{tokyo.tm_hour}:{tokyo.tm_min:02d}",
                           f"{tokyo.tm_hour % 12 or 12}:{tokyo.tm_min:02d}"}  # fmt: skip
        result["day"] = str(tokyo.tm_mday)
    context.close()
    # axe needs its own inline script, which the page's CSP rightly refuses: bypassed here.
    context = browser.new_context(
        locale=locale, color_scheme=scheme, bypass_csp=True,
        extra_http_headers={"Accept-Language": header},
    )  # fmt: skip
    page = context.new_page()
    _open(page, url, post)
    page.add_script_tag(content=axe_source)
    report = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    result["violations"] = [
        {"id": v["id"], "nodes": [n["html"][:120] for n in v["nodes"]]}
        for v in report["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    context.close()
    return result


def _open(page: Any, url: str, post: bool) -> None:
    if not post:
        response = page.goto(url)
        assert response is not None
        assert response.status == 503
        return
    # A form on another page posts to the site: the navigation that lands on the page.
    page.set_content(f'<form method="post" action="{url}"><button id="go">Send</button></form>')
    with page.expect_navigation():
        page.click("#go")
    page.wait_for_load_state()
