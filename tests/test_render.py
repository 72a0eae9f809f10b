"""The page and the other replies: escaping, CSP, budget, locales, template overrides,
and what the page says (per cause, its tips, its links)."""

from __future__ import annotations

import base64
import hashlib
import html
import http.client
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gracefail import Brand, Config, UpstreamError
from gracefail.classify import Failure
from gracefail.config import LOCALES, LOGO_BUDGET
from gracefail.core import Engine, RequestView
from gracefail.gateway import CAUSES as GATEWAY_CAUSES
from gracefail.render import MAX_ECHOED_URL, PAGE_BUDGET, Renderer, ThemeError

SECRET = "render-secret-0123456789"
NAV = {
    "accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    "sec-fetch-mode": "navigate",
}
HOSTILE_PATH = "/\"'><script>alert(1)</script><img src=x onerror=alert(2)>\u2028"
HOSTILE_QUERY = 'q=</script><script>alert(3)</script>&x="><svg onload=alert(4)>'


class Structure(HTMLParser):
    """Collects tags with their attribute names, and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self._json = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(sorted(name for name, _ in attrs))))
        for name, value in attrs:
            if name in ("href", "src", "action", "formaction") and value is not None:
                self.urls.append(value)
        self._in = tag
        self._json = dict(attrs).get("type") == "application/json"

    def handle_data(self, data: str) -> None:
        if self._in == "script" and not self._json:
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def parse(text: str) -> Structure:
    parser = Structure()
    parser.feed(text)
    parser.close()
    return parser


def reply_for(gracefail: Engine, path: str = "/orders", query: str = "", **headers: str):  # type: ignore[no-untyped-def]
    view = RequestView("GET", path, query, {**NAV, **headers})
    return gracefail.respond(Failure(502, "connection"), view)


@pytest.fixture(scope="module")
def gracefail() -> Engine:
    return Engine(Config(secret=SECRET, recorders=[], status_page_url="https://status.example.com"))


def config_block(text: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="gf-config">(.*?)</script>', text, re.S)
    assert match, "the page carries its config in a JSON data block"
    data: dict[str, object] = json.loads(match.group(1))
    return data


def retry_link(text: str) -> str:
    """The manual retry link's href, unescaped: where the page echoes the URL."""
    match = re.search(r'<a class="btn" id="gf-link" href="([^"]*)">', text)
    assert match, "the page carries the manual retry link"
    return html.unescape(match.group(1))


def test_hostile_request_values_never_escape_their_context(gracefail: Engine) -> None:
    benign = reply_for(gracefail)
    hostile = reply_for(
        gracefail,
        path=HOSTILE_PATH,
        query=HOSTILE_QUERY,
        **{"x-request-id": "<b>x</b>", "accept-language": "<script>alert(5)</script>"},
    )
    text = hostile.body.decode()
    assert parse(text).tags == parse(benign.body.decode()).tags, "no injected tag or attribute"
    assert "<script>alert" not in text
    assert retry_link(text) == HOSTILE_PATH + "?" + HOSTILE_QUERY


def test_url_round_trips_through_the_retry_link(gracefail: Engine) -> None:
    text = reply_for(gracefail, path="/a</script>\u2028b", query="x=1&y=<2>").body.decode()
    assert retry_link(text) == "/a</script>\u2028b?x=1&y=<2>"


def test_the_url_is_written_once(gracefail: Engine) -> None:
    """Issue 12, defect 10: the config block carried an unused second copy of the URL."""
    marker = "/only-once-7f3a"
    text = reply_for(gracefail, path=marker, query="q=1").body.decode()
    assert text.count(marker) == 1
    assert "url" not in config_block(text), "the script retries location, not a copy"


def test_a_long_url_is_not_echoed_and_the_page_stays_small(gracefail: Engine) -> None:
    """Issue 12, defect 10: a 100 KB path made a 1 MB page (written twice, escaped)."""
    short = reply_for(gracefail).body
    for path in ("/" + "a" * 100_000, "/" + "<" * 100_000, "/" + "\u00e9" * 50_000):
        body = reply_for(gracefail, path=path, query="q=" + "b" * 10_000).body
        assert len(body) <= len(short), len(body)
        assert len(body) <= PAGE_BUDGET + MAX_ECHOED_URL
        assert retry_link(body.decode()) == "", "an empty href is the page's own URL"
    at_limit = "/" + "c" * (MAX_ECHOED_URL - 1)
    assert retry_link(reply_for(gracefail, path=at_limit).body.decode()) == at_limit
    escaped = "/" + "&" * (MAX_ECHOED_URL // 4)  # fits as text, not once escaped (&amp;)
    assert retry_link(reply_for(gracefail, path=escaped).body.decode()) == ""


def test_protocol_relative_paths_stay_on_this_origin(gracefail: Engine) -> None:
    text = reply_for(gracefail, path="//evil.example/x").body.decode()
    url = retry_link(text)
    assert not url.startswith("//")
    assert url.startswith("/")


def test_no_url_to_another_origin_except_the_status_page(gracefail: Engine) -> None:
    for reply in (reply_for(gracefail), reply_for(gracefail, path="/x", query="a=1")):
        for url in parse(reply.body.decode()).urls:
            assert url.startswith(("/", "#", "data:", "?")) or url in (
                "",
                "https://status.example.com",
            ), url


def test_csp_hashes_match_the_inlined_assets(gracefail: Engine) -> None:
    reply = reply_for(gracefail)
    csp = dict(reply.headers)["content-security-policy"]
    structure = parse(reply.body.decode())
    assert len(structure.scripts) == 1
    assert len(structure.styles) == 1

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert f"script-src {digest(structure.scripts[0])}" in csp
    assert f"style-src {digest(structure.styles[0])}" in csp
    assert "unsafe-inline" not in csp


def test_every_variant_fits_the_budget() -> None:
    # The largest logo Brand accepts: the page keeps that much room for one.
    prefix = "data:image/png;base64,"
    logo = prefix + "A" * ((LOGO_BUDGET - len(prefix)) // 4 * 4)
    config = Config(
        secret=SECRET,
        recorders=[],
        brand=Brand(name="A" * 80, logo=logo),
        status_page_url="https://status.example.com/a/long/path",
        status_api_url="https://status.example.com/api/v2/summary.json",
    )
    gracefail = Engine(config)
    # One cause for each thing the page can say happened.
    failures = [Failure(502, "connection"), Failure(502, "protocol"), Failure(504, "timeout")]
    for failure in failures:
        for locale in LOCALES:
            for method in ("GET", "POST"):
                # The longest request id that becomes the incident id.
                headers = {**NAV, "accept-language": locale, "x-request-id": "R" * 64}
                view = RequestView(method, "/" + "p" * 200, "q=" + "v" * 200, headers)
                body = gracefail.respond(failure, view).body
                assert len(body) <= PAGE_BUDGET, (failure, locale, method, len(body))
                assert f'lang="{locale}"' in body.decode()


def test_status_api_origin_allowed_for_connect() -> None:
    gracefail = Engine(
        Config(
            secret=SECRET,
            recorders=[],
            status_api_url="https://status.example.com/api/v2/summary.json",
        )
    )
    csp = dict(reply_for(gracefail).headers)["content-security-policy"]
    assert "connect-src 'self' https://status.example.com;" in csp + ";"


@pytest.mark.parametrize("locale", LOCALES)
def test_locale_chosen_from_accept_language(gracefail: Engine, locale: str) -> None:
    text = reply_for(gracefail, **{"accept-language": f"{locale};q=0.9, xx;q=0.1"}).body.decode()
    assert f'<html lang="{locale}"' in text
    assert gracefail.renderer.locales[locale]["explain_unreachable"] in unescape(text)


def test_every_locale_has_every_key() -> None:
    folder = Path(__import__("gracefail").__file__).parent / "locales"
    english = set(json.loads((folder / "en.json").read_text("utf-8")))
    for locale in LOCALES:
        keys = set(json.loads((folder / f"{locale}.json").read_text("utf-8")))
        assert keys == english, (locale, english ^ keys)


def test_user_template_overrides_by_file_name(tmp_path: Path) -> None:
    # A whole page of its own, without the recovery script: it need not carry its elements.
    (tmp_path / "page.html").write_text(
        '<!doctype html><html lang="{{ lang }}"><style>{{ css }}</style>'
        "<h1>Custom {{ status }}</h1><p>{{ incident }}</p></html>"
    )
    gracefail = Engine(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    reply = reply_for(gracefail)
    assert "<h1>Custom 502</h1>" in reply.body.decode()
    assert dict(reply.headers)["x-gracefail-incident"] in reply.body.decode()
    assert "script-src 'none'" in dict(reply.headers)["content-security-policy"]


def test_broken_user_template_falls_back_to_the_built_in_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "page.html").write_text("{{ no_such_variable.attr }} {% if %}")
    with caplog.at_level(logging.ERROR, logger="gracefail"):
        gracefail = Engine(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    assert "failed" in caplog.text
    reply = reply_for(gracefail)
    assert reply.status == 502
    assert "gf-config" in reply.body.decode()


def test_template_with_a_value_inside_a_script_fails_start_up(tmp_path: Path) -> None:
    # It renders, but its script's CSP hash would change with every request: the theme's
    # to fix, so start-up fails naming it rather than serving another page.
    (tmp_path / "page.html").write_text("<html><script>var id = '{{ incident }}';</script></html>")
    for strict in (False, True):
        with pytest.raises(ThemeError, match=r"per-request value.*inside a <script>"):
            Renderer(Config(secret=SECRET, recorders=[], template_dir=tmp_path), strict=strict)


def test_text_and_problem_never_echo_the_request(gracefail: Engine) -> None:
    for accept in ("*/*", "application/json"):
        view = RequestView("GET", HOSTILE_PATH, HOSTILE_QUERY, {"accept": accept})
        body = gracefail.respond(Failure(502, "connection"), view).body.decode()
        assert "alert" not in body


def test_a_renderer_fault_falls_back_to_the_minimal_page(gracefail: Engine) -> None:
    reply = gracefail.respond(Failure(503, "connection"), RequestView("GET", "/", "", NAV))
    assert reply.status == 502
    assert b"Temporarily unavailable" in reply.body


# -- what the page says (issue 18) --------------------------------------------------------------

STATUS_URL = "https://status.example.com"
ENGLISH = {
    "unreachable": "could not reach",
    "bad_answer": "got a bad answer",
    "timeout": "did not answer in time",
}


def unescape(text: str) -> str:
    return html.unescape(text)


class Words(HTMLParser):
    """What a reader meets: visible text, list items with their class, links with their text."""

    HIDDEN = frozenset(("script", "style", "noscript", "title"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.items: list[tuple[str, str]] = []  # (class, text)
        self.links: list[dict[str, str]] = []  # href, class, text, where (header/main/footer)
        self._stack: list[str] = []
        self._item: list[str] | None = None
        self._item_class = ""
        self._link: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag not in ("meta", "img", "br", "input"):
            self._stack.append(tag)
        if tag == "li":
            self._item, self._item_class = [], values.get("class", "")
        elif tag == "a":
            where = next((t for t in self._stack if t in ("header", "main", "footer")), "")
            self._link = {"href": values.get("href", ""), "class": values.get("class", "")}
            self._link.update(text="", where=where)
        elif tag == "img" and self._link is not None:
            self._link["text"] += values.get("alt", "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass
        if tag == "li" and self._item is not None:
            self.items.append((self._item_class, "".join(self._item).strip()))
            self._item = None
        elif tag == "a" and self._link is not None:
            self.links.append(self._link)
            self._link = None

    def handle_data(self, data: str) -> None:
        if self.HIDDEN & set(self._stack):
            return
        self.text.append(data)
        if self._item is not None:
            self._item.append(data)
        if self._link is not None:
            self._link["text"] += data


def words(body: bytes) -> Words:
    parser = Words()
    parser.feed(body.decode())
    parser.close()
    return parser


def replies(gracefail: Engine, failure: Failure, method: str = "GET") -> dict[str, str]:
    """The page's visible text, the problem+json detail and the plain text, for one failure."""
    out = {}
    for kind, accept in (("html", NAV["accept"]), ("json", "application/json"), ("text", "*/*")):
        headers = {"accept": accept, **({"sec-fetch-mode": "navigate"} if kind == "html" else {})}
        body = gracefail.respond(failure, RequestView(method, "/orders", "", headers)).body
        if kind == "html":
            out[kind] = " ".join(words(body).text)
        elif kind == "json":
            out[kind] = json.loads(body)["detail"]
        else:
            out[kind] = body.decode()
    return out


def upstream_503() -> BaseException:
    import httpx

    request = httpx.Request("GET", "http://payments.internal/charge")
    response = httpx.Response(503, request=request)
    return httpx.HTTPStatusError("503 Service Unavailable", request=request, response=response)


def refused_by_httpx() -> BaseException:
    import httpx

    return httpx.ConnectError("[Errno 111] Connection refused")


def read_timeout_by_httpx() -> BaseException:
    import httpx

    return httpx.ReadTimeout("timed out")


@pytest.mark.parametrize(
    ("make_failure", "status", "story"),
    [
        pytest.param(
            lambda e: e.classify(ConnectionRefusedError(111, "Connection refused")),
            502,
            "unreachable",
            id="502-refused",
        ),
        pytest.param(lambda e: e.classify(refused_by_httpx()), 502, "unreachable", id="502-httpx"),
        pytest.param(lambda e: e.classify(upstream_503()), 502, "bad_answer", id="502-bad-status"),
        pytest.param(
            lambda e: e.classify(http.client.BadStatusLine("ICY 200 OK")),
            502,
            "bad_answer",
            id="502-protocol",
        ),
        pytest.param(
            lambda e: e.classify(UpstreamError(status=502)), 502, "bad_answer", id="502-raised"
        ),
        pytest.param(lambda e: e.failure_for_status(502), 502, "bad_answer", id="502-app-own"),
        # The app process itself is down: gracefail serve and the exported pages.
        pytest.param(
            lambda e: Failure(502, GATEWAY_CAUSES[502]), 502, "unreachable", id="502-gateway"
        ),
        pytest.param(
            lambda e: Failure(502, GATEWAY_CAUSES[503]), 502, "unreachable", id="503-gateway"
        ),
        pytest.param(lambda e: Failure(502, "proxy"), 502, "unreachable", id="502-export"),
        pytest.param(lambda e: Failure(504, GATEWAY_CAUSES[504]), 504, "timeout", id="504-gateway"),
        pytest.param(lambda e: e.classify(TimeoutError()), 504, "timeout", id="504-timeout"),
        pytest.param(lambda e: e.classify(read_timeout_by_httpx()), 504, "timeout", id="504-httpx"),
        pytest.param(lambda e: e.classifier.app_timeout(), 504, "timeout", id="504-app-timeout"),
    ],
)
def test_the_page_says_what_happened_by_cause(
    gracefail: Engine, make_failure: Any, status: int, story: str
) -> None:
    failure = make_failure(gracefail)
    assert failure is not None
    assert failure.status == status
    for method in ("GET", "POST"):
        for kind, text in replies(gracefail, failure, method).items():
            assert ENGLISH[story] in text, (kind, method, text)
            others = [phrase for name, phrase in ENGLISH.items() if name != story]
            assert not any(phrase in text for phrase in others), (kind, method, text)
            assert "invalid answer" not in text


@pytest.mark.parametrize("locale", LOCALES)
def test_every_locale_tells_each_story_in_its_own_words(gracefail: Engine, locale: str) -> None:
    strings = gracefail.renderer.locales[locale]
    sentences = {story: strings[f"explain_{story}"] for story in ENGLISH}
    assert len(set(sentences.values())) == 3, sentences
    failures = {
        "unreachable": Failure(502, "connection"),
        "bad_answer": Failure(502, "upstream_status"),
        "timeout": Failure(504, "timeout"),
    }
    for story, failure in failures.items():
        view = RequestView("GET", "/", "", {**NAV, "accept-language": locale})
        text = " ".join(words(gracefail.respond(failure, view).body).text)
        assert sentences[story] in text, (locale, story)


def test_the_brand_in_the_header_links_home() -> None:
    logo = "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode()
    for brand in (Brand(name="Acme"), Brand(name="Acme", logo=logo)):
        engine = Engine(Config(secret=SECRET, recorders=[], brand=brand))
        for method in ("GET", "POST"):
            body = engine.respond(Failure(502, "connection"), RequestView(method, "/x", "", NAV))
            header = [link for link in words(body.body).links if link["where"] == "header"]
            assert [(link["href"], link["text"]) for link in header] == [("/", "Acme")], method


def test_the_status_page_is_linked_once(gracefail: Engine) -> None:
    for failure in (Failure(502, "connection"), Failure(504, "timeout")):
        for method in ("GET", "POST"):
            body = gracefail.respond(failure, RequestView(method, "/x", "", NAV)).body
            found = [link for link in words(body).links if link["href"] == STATUS_URL]
            assert len(found) == 1, (failure, method, found)
            # In the tips, where it is something to do; the script counts its clicks.
            assert found[0]["class"] == "gf-st"
            assert found[0]["where"] == "main"
            assert found[0]["text"] in [text for _, text in words(body).items]


def test_no_refresh_tip_beside_automatic_retry(gracefail: Engine) -> None:
    for locale in LOCALES:
        strings = gracefail.renderer.locales[locale]
        assert "tip_refresh" not in strings
        view = RequestView("GET", "/x", "", {**NAV, "accept-language": locale})
        page = words(gracefail.respond(Failure(502, "connection"), view).body)
        tips = [text for _, text in page.items]
        # Waiting, the status page, and (after retries failed) what to try if only you see it.
        assert tips == [
            strings["tip_wait"],
            strings["tip_status"].replace("{brand}", "This site"),
            strings["tip_only_you"].replace("{brand}", "This site"),
        ], locale
    english = " ".join(words(reply_for(gracefail).body).text).lower()
    assert "refresh" not in english


def test_after_a_post_the_tip_is_not_to_resubmit(gracefail: Engine) -> None:
    page = words(
        gracefail.respond(Failure(502, "connection"), RequestView("POST", "/x", "", NAV)).body
    )
    strings = gracefail.renderer.locales["en"]
    assert strings["tip_no_resubmit"] in [text for _, text in page.items]


def test_second_stage_tips_are_only_for_when_only_you_see_the_page(gracefail: Engine) -> None:
    page = words(reply_for(gracefail).body)
    second = [text for css, text in page.items if "t2" in css.split()]
    assert len(second) == 1
    assert second[0].startswith("If only you see this page while others can use This site:")
    for advice in ("cache", "another browser", "VPN"):
        assert advice in second[0]
    # The page still says it is not the user's fault; the tips no longer say otherwise.
    assert "nothing is wrong with your device or connection" in " ".join(page.text)
