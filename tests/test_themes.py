"""Every ready-made theme in templates/, and the built-in page, passes the same checks in
every variant (502/504, GET/POST, every shipped locale): the elements the recovery script
drives, escaping, the 16 KB budget, no request to another URL, and a CSP that matches the
page's one style and script. A theme that breaks the script's contract fails start-up and
`gracefail check`, naming what it lacks."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gracefail import Brand, Config
from gracefail.classify import Failure
from gracefail.cli import main
from gracefail.config import LOCALES, LOGO_BUDGET
from gracefail.core import Engine, Reply, RequestView
from gracefail.render import PAGE_BUDGET, Renderer, ThemeError
from tests.conftest import ROOT
from tests.test_render import HOSTILE_PATH, HOSTILE_QUERY, parse, retry_link

THEMES = sorted(p.parent for p in (ROOT / "templates").glob("*/page.html"))
BUILT_IN = ROOT / "src" / "gracefail" / "templates"
# The built-in page (template_dir None) goes through the same checks as the themes.
PAGES: list[Path | None] = [None, *THEMES]
IDS = ["built-in", *(theme.name for theme in THEMES)]
# Every element the recovery script looks up: read from the script, so a theme cannot lag
# behind it (a missing one stops the script at its first use).
SCRIPT_IDS = sorted(
    set(
        re.findall(
            r'(?:byId|getElementById)\("(gf-[a-z-]+)"\)',
            (ROOT / "src" / "gracefail" / "assets" / "recover.js").read_text("utf-8"),
        )
    )
)
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
STATUS_PAGE = "https://status.example.com/a/long/path"
STATUS_API = "https://status.example.com/api/v2/summary.json"
SECRET = "theme-secret-0123456789"
FAILURES = [Failure(502, "connection"), Failure(502, "protocol"), Failure(504, "timeout")]


def largest_logo() -> str:
    prefix = "data:image/png;base64,"
    return prefix + "A" * ((LOGO_BUDGET - len(prefix)) // 4 * 4)


def engine(theme: Path | None, **options: object) -> Engine:
    settings: dict[str, object] = {
        "secret": SECRET,
        "recorders": [],
        "status_page_url": STATUS_PAGE,
        "status_api_url": STATUS_API,
        "brand": Brand(name="Acme"),
        **options,
    }
    return Engine(Config(template_dir=theme, **settings))  # type: ignore[arg-type]


def serve(
    gracefail: Engine,
    failure: Failure,
    method: str = "GET",
    locale: str = "en",
    path: str = "/orders",
    query: str = "",
    **headers: str,
) -> Reply:
    view = RequestView(method, path, query, {**NAV, "accept-language": locale, **headers})
    return gracefail.respond(failure, view)


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_there_are_the_four_themes() -> None:
    assert [theme.name for theme in THEMES] == ["centered", "corporate", "minimal", "saas"]
    assert {"gf-config", "gf-live", "gf-wait", "gf-count", "gf-retry", "gf-ls"} <= set(SCRIPT_IDS)


@pytest.mark.parametrize("theme", PAGES, ids=IDS)
def test_every_variant_renders_with_what_the_script_drives(theme: Path | None) -> None:
    gracefail = engine(theme)
    renderer = Renderer(gracefail.config, strict=True)  # a broken theme raises here
    assert len(renderer.pages) == 4 * len(LOCALES)
    assert dict(renderer.wording.missing) == {}, "the theme's own strings in every locale"
    for failure in FAILURES:
        for method in ("GET", "POST"):
            for locale in LOCALES:
                reply = serve(gracefail, failure, method, locale)
                text = reply.body.decode()
                for element in SCRIPT_IDS:
                    assert text.count(f'id="{element}"') == 1, (locale, method, element)
                assert re.search(r'id="gf-live" role="status"|role="status"[^>]*id="gf-live"', text)
                assert f'<html lang="{locale}">' in text
                # What happened, per cause, in the locale's words; the incident to quote.
                story = {"connection": "unreachable", "protocol": "bad_answer"}.get(
                    failure.cause, "timeout"
                )
                sentence = renderer.locales[locale][f"explain_{story}"]
                assert sentence in html.unescape(text), (locale, story)
                assert dict(reply.headers)["x-gracefail-incident"] in text
                assert 'href="/"' in text, "the brand links home"


@pytest.mark.parametrize("theme", PAGES, ids=IDS)
def test_every_variant_fits_the_budget(theme: Path | None) -> None:
    # The longest brand name and the largest logo Brand accepts, the longest request id
    # and a long URL: the page keeps room for all of them, in every locale.
    gracefail = engine(theme, brand=Brand(name="A" * 80, logo=largest_logo()))
    for failure in FAILURES:
        for method in ("GET", "POST"):
            for locale in LOCALES:
                reply = serve(
                    gracefail,
                    failure,
                    method,
                    locale,
                    path="/" + "p" * 200,
                    query="q=" + "v" * 200,
                    **{"x-request-id": "R" * 64},
                )
                assert len(reply.body) <= PAGE_BUDGET, (failure, method, locale, len(reply.body))


@pytest.mark.parametrize("theme", PAGES, ids=IDS)
def test_hostile_request_values_never_escape_their_context(theme: Path | None) -> None:
    gracefail = engine(theme)
    for method in ("GET", "POST"):
        benign = serve(gracefail, FAILURES[0], method).body.decode()
        hostile = serve(
            gracefail,
            FAILURES[0],
            method,
            path=HOSTILE_PATH,
            query=HOSTILE_QUERY,
            **{"x-request-id": "<b>x</b>", "accept-language": "<script>alert(5)</script>"},
        ).body.decode()
        assert parse(hostile).tags == parse(benign).tags, "no injected tag or attribute"
        assert "<script>alert" not in hostile
        if method == "GET":
            assert retry_link(hostile) == HOSTILE_PATH + "?" + HOSTILE_QUERY
        else:
            assert retry_link(hostile) == "/", "after a POST the link leads to the site"


@pytest.mark.parametrize("theme", PAGES, ids=IDS)
def test_no_request_to_another_url_and_the_csp_matches(theme: Path | None) -> None:
    gracefail = engine(theme, brand=Brand(name="Acme", logo=largest_logo()))
    for method in ("GET", "POST"):
        for locale in LOCALES:
            reply = serve(gracefail, FAILURES[0], method, locale)
            text = reply.body.decode()
            structure = parse(text)
            for url in structure.urls:
                # Links the user may follow: the site, the status page. Nothing is loaded.
                assert url.startswith(("/", "data:image/")) or url == STATUS_PAGE, url
            assert not re.search(r"<(link|iframe|object|embed|base|form)\b", text, re.I)
            assert "@import" not in text
            assert not re.search(r"url\((?!\s*['\"]?data:)", text)
            # One style, one script (and the JSON data block); no inline style or handler.
            assert len(structure.styles) == 1
            assert len(structure.scripts) == 1
            assert not re.search(r"\sstyle\s*=", text)
            assert not re.search(r"\son[a-z]+\s*=", text, re.I)
            csp = dict(reply.headers)["content-security-policy"]
            assert f"script-src {sha256(structure.scripts[0])};" in csp
            assert f"style-src {sha256(structure.styles[0])};" in csp
            assert "connect-src 'self' https://status.example.com;" in csp
            assert "unsafe-inline" not in csp


def test_the_saas_theme_puts_the_live_status_first() -> None:
    text = serve(engine(ROOT / "templates" / "saas"), FAILURES[0]).body.decode()
    assert text.index('id="gf-ls"') < text.index("<h1>") < text.index('id="gf-live"')
    assert 'class="btn gf-st"' in text, "the status page is the first button"
    assert text.count(f'href="{STATUS_PAGE}"') == 1
    without = serve(engine(ROOT / "templates" / "saas", status_page_url=None, status_api_url=None),
                    FAILURES[0]).body.decode()  # fmt: skip
    assert '<section class="status" hidden>' in without, "no status to show, no empty card"


def test_the_corporate_theme_has_an_inert_navigation_in_every_language() -> None:
    gracefail = engine(ROOT / "templates" / "corporate")
    for locale in LOCALES:
        text = serve(gracefail, FAILURES[0], locale=locale).body.decode()
        nav = re.search(r"<nav\b[^>]*>(.*?)</nav>", text, re.S)
        assert nav is not None
        assert "href" not in nav[1], "no link to a page that is down too"
        words = gracefail.renderer.locales[locale]
        assert [html.unescape(item) for item in re.findall(r"<a>(.*?)</a>", nav[1])] == [
            words["nav_products"],
            words["nav_pricing"],
            words["nav_support"],
        ]


# -- a theme that breaks the contract -------------------------------------------------------


def write_theme(folder: Path, page: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "page.html").write_text(page, encoding="utf-8")
    return folder


WITHOUT_LIVE_STATUS = """{% extends "gracefail/base.html" %}
{% block panel %}<section class="panel">
<p class="live" id="gf-live" role="status" aria-live="polite"></p>
<p class="row mu" id="gf-wait" hidden><span class="spin"></span><span id="gf-count"></span></p>
<div class="acts">
<button type="button" class="btn" id="gf-retry" hidden>{{ t.retry_now }}</button>
<button type="button" class="btn" id="gf-back" hidden>{{ t.go_back }}</button>
<a class="btn" id="gf-link" href="{{ retry_url }}">{{ t.try_again }}</a>
</div></section>
{% endblock %}
"""


def test_a_theme_that_drops_an_element_fails_start_up_naming_it(tmp_path: Path) -> None:
    theme = write_theme(tmp_path / "theme", WITHOUT_LIVE_STATUS)
    with pytest.raises(ThemeError, match=r'lacks the element it drives: id="gf-ls"\. Keep'):
        engine(theme)
    result = CliRunner().invoke(main, ["check", "--template-dir", str(theme)])
    assert result.exit_code == 1
    assert 'lacks the element it drives: id="gf-ls"' in result.output
    assert str(theme / "page.html") in result.output


def test_a_theme_with_an_element_twice_fails_start_up(tmp_path: Path) -> None:
    page = (
        '{% extends "gracefail/base.html" %}{% block footer %}<p id="gf-count"></p>{% endblock %}'
    )
    with pytest.raises(ThemeError, match='more than one element with id="gf-count"'):
        engine(write_theme(tmp_path / "theme", page))


def test_a_whole_page_without_the_script_needs_none_of_its_elements(tmp_path: Path) -> None:
    # Full replacement keeps working: a static page of one's own, which does not retry.
    page = "<!doctype html><title>{{ brand.name }}</title><p>Down {{ status }}</p>{{ incident }}"
    text = serve(engine(write_theme(tmp_path / "theme", page)), FAILURES[0]).body.decode()
    assert "<p>Down 502</p>" in text


def test_the_built_in_page_is_base_html_as_it_is() -> None:
    page = (BUILT_IN / "page.html").read_text("utf-8")
    assert (
        re.sub(r"\{#.*?#\}", "", page, flags=re.S).strip() == '{% extends "gracefail/base.html" %}'
    )
    base = re.sub(r"\{#.*?#\}", "", (BUILT_IN / "base.html").read_text("utf-8"), flags=re.S)
    blocks = re.findall(r"\{% block (\w+) %\}", base)
    assert blocks == [
        "title", "style", "head", "header", "brand", "main", "heading", "message", "panel",
        "tips", "footer",
    ]  # fmt: skip
    # The panel block holds every element the script drives: overriding it is the one
    # place a theme can lose one.
    panel = re.search(r"\{% block panel %\}(.*?)\{% endblock %\}", base, re.S)
    assert panel is not None
    assert {*re.findall(r'id="(gf-[a-z-]+)"', panel[1]), "gf-config"} == set(SCRIPT_IDS)
