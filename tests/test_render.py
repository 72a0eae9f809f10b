"""The page and the other replies: escaping, CSP, budget, locales, template overrides."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gracefail import Brand, Config
from gracefail.config import LOCALES
from gracefail.core import Engine, RequestView
from gracefail.render import PAGE_BUDGET, Renderer

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
    from gracefail.classify import Failure

    view = RequestView("GET", path, query, {**NAV, **headers})
    return gracefail.respond(Failure(502, "connection"), view)


@pytest.fixture(scope="module")
def gracefail() -> Engine:
    return Engine(
        Config(secret=SECRET, recorders=[], status_page_url="https://status.example.com")
    )


def config_block(text: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="gf-config">(.*?)</script>', text, re.S)
    assert match, "the page carries its config in a JSON data block"
    data: dict[str, object] = json.loads(match.group(1))
    return data


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
    assert config_block(text)["url"] == HOSTILE_PATH + "?" + HOSTILE_QUERY


def test_url_round_trips_through_the_config_block(gracefail: Engine) -> None:
    text = reply_for(gracefail, path="/a</script>\u2028b", query="x=1&y=<2>").body.decode()
    assert config_block(text)["url"] == "/a</script>\u2028b?x=1&y=<2>"
    raw_block = text.split('id="gf-config">', 1)[1].split("</script>", 1)[0]
    assert "\u2028" not in raw_block, "U+2028 must be escaped inside the script block"


def test_protocol_relative_paths_stay_on_this_origin(gracefail: Engine) -> None:
    text = reply_for(gracefail, path="//evil.example/x").body.decode()
    url = config_block(text)["url"]
    assert isinstance(url, str)
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
    config = Config(
        secret=SECRET,
        recorders=[],
        brand=Brand(name="A" * 80),
        status_page_url="https://status.example.com/a/long/path",
        status_api_url="https://status.example.com/api/v2/summary.json",
    )
    gracefail = Engine(config)
    for status in (502, 504):
        for locale in LOCALES:
            for method in ("GET", "POST"):
                from gracefail.classify import Failure

                view = RequestView(
                    method, "/" + "p" * 200, "q=" + "v" * 200, {**NAV, "accept-language": locale}
                )
                body = gracefail.respond(Failure(status, "connection"), view).body
                assert len(body) <= PAGE_BUDGET, (status, locale, method, len(body))
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


def test_502_and_504_explain_differently(gracefail: Engine) -> None:
    renderer = gracefail.renderer
    page_502 = renderer.pages[502, "en", True].text.fill(
        dict.fromkeys(renderer.pages[502, "en", True].text.slots, "x")
    )
    page_504 = renderer.pages[504, "en", True].text.fill(
        dict.fromkeys(renderer.pages[504, "en", True].text.slots, "x")
    )
    assert renderer.locales["en"]["explain_502"] in page_502
    assert renderer.locales["en"]["explain_504"] in page_504
    assert renderer.locales["en"]["explain_502"] not in page_504


@pytest.mark.parametrize("locale", LOCALES)
def test_locale_chosen_from_accept_language(gracefail: Engine, locale: str) -> None:
    text = reply_for(gracefail, **{"accept-language": f"{locale};q=0.9, xx;q=0.1"}).body.decode()
    assert f'<html lang="{locale}"' in text
    assert gracefail.renderer.locales[locale]["explain_502"] in text.replace("&#39;", "'").replace(
        "&#34;", '"'
    )


def test_every_locale_has_every_key() -> None:
    folder = Path(__import__("gracefail").__file__).parent / "locales"
    english = set(json.loads((folder / "en.json").read_text("utf-8")))
    for locale in LOCALES:
        keys = set(json.loads((folder / f"{locale}.json").read_text("utf-8")))
        assert keys == english, (locale, english ^ keys)


def test_user_template_overrides_by_file_name(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        '<!doctype html><html lang="{{ lang }}"><style>{{ css }}</style>'
        "<h1>Custom {{ status }}</h1>"
        "<p>{{ incident }}</p><script>{{ js }}</script>"
        '<script type="application/json" id="gf-config">{{ config_json }}</script></html>'
    )
    gracefail = Engine(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    reply = reply_for(gracefail)
    assert "<h1>Custom 502</h1>" in reply.body.decode()
    assert dict(reply.headers)["x-gracefail-incident"] in reply.body.decode()


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


def test_template_with_a_value_inside_a_script_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "page.html").write_text("<html><script>var id = '{{ incident }}';</script></html>")
    with caplog.at_level(logging.ERROR, logger="gracefail"):
        gracefail = Engine(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    assert "gf-config" in reply_for(gracefail).body.decode()
    with pytest.raises(ValueError, match="per-request value"):
        Renderer(Config(secret=SECRET, recorders=[], template_dir=tmp_path), strict=True)


def test_text_and_problem_never_echo_the_request(gracefail: Engine) -> None:
    from gracefail.classify import Failure

    for accept in ("*/*", "application/json"):
        view = RequestView("GET", HOSTILE_PATH, HOSTILE_QUERY, {"accept": accept})
        body = gracefail.respond(Failure(502, "connection"), view).body.decode()
        assert "alert" not in body


def test_a_renderer_fault_falls_back_to_the_minimal_page(gracefail: Engine) -> None:
    from gracefail.classify import Failure

    reply = gracefail.respond(Failure(503, "connection"), RequestView("GET", "/", "", NAV))
    assert reply.status == 502
    assert b"Temporarily unavailable" in reply.body
