"""gracefail.negotiate: which reply a client gets, in which language and content coding.

Header sets are what real clients send (copied from browsers' and tools' requests).
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from gracefail import Config, negotiate
from gracefail.config import LOCALES
from gracefail.core import Engine, RequestView
from gracefail.negotiate import (
    MAX_LANGUAGE,
    accepted_encoding,
    accepted_encodings,
    language_key,
    negotiate_kind,
    negotiate_locale,
    parse_accept,
)

CHROME_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)
SAFARI_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

KINDS = [
    # Browsers navigating.
    pytest.param(
        {
            "accept": CHROME_ACCEPT,
            "sec-fetch-mode": "navigate",
            "sec-fetch-dest": "document",
            "sec-fetch-site": "none",
            "sec-fetch-user": "?1",
            "upgrade-insecure-requests": "1",
        },
        "html",
        id="chrome-navigation",
    ),
    pytest.param(
        {"accept": FIREFOX_ACCEPT, "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"},
        "html",
        id="firefox-navigation",
    ),
    pytest.param({"accept": SAFARI_ACCEPT}, "html", id="safari-without-sec-fetch"),
    pytest.param({"accept": FIREFOX_ACCEPT}, "html", id="firefox-accept-only"),
    pytest.param(
        {"accept": CHROME_ACCEPT, "sec-fetch-mode": "navigate", "sec-fetch-dest": "iframe"},
        "html",
        id="chrome-iframe-navigation",
    ),
    pytest.param(
        # A navigation is a navigation, whatever it claims to accept.
        {"accept": "*/*", "sec-fetch-mode": "navigate"},
        "html",
        id="navigate-with-wildcard-accept",
    ),
    pytest.param({"accept": "text/html"}, "html", id="text-html-only"),
    # Command-line tools and bare clients: no preference -> text.
    pytest.param({"accept": "*/*", "user-agent": "curl/8.5.0"}, "text", id="curl"),
    pytest.param({"accept": "*/*", "user-agent": "Wget/1.21.3"}, "text", id="wget"),
    pytest.param({}, "text", id="no-accept"),
    pytest.param({"accept": ""}, "text", id="empty-accept"),
    pytest.param({"accept": "   "}, "text", id="blank-accept"),
    pytest.param({"accept": "text/plain"}, "text", id="text-plain"),
    pytest.param(
        {"accept": "text/plain, application/json;q=0.9"}, "text", id="text-plain-preferred"
    ),
    pytest.param({"accept": "text/*"}, "text", id="text-star-prefers-no-html"),
    pytest.param({"accept": "application/xml"}, "text", id="nothing-we-offer"),
    pytest.param({"accept": "image/png"}, "text", id="image-only"),
    # API clients -> json.
    pytest.param({"accept": "application/json"}, "json", id="application-json"),
    pytest.param({"accept": "application/problem+json"}, "json", id="problem-json"),
    pytest.param({"accept": "Application/JSON"}, "json", id="media-type-case"),
    pytest.param({"accept": "application/json, text/plain, */*"}, "json", id="axios-default"),
    pytest.param(
        {"accept": "application/json, */*;q=0.5", "user-agent": "HTTPie/3.2.2"},
        "json",
        id="httpie",
    ),
    pytest.param(
        {"accept": "*/*", "sec-fetch-mode": "cors", "sec-fetch-dest": "empty"},
        "json",
        id="fetch-from-page-cors",
    ),
    pytest.param(
        {"accept": "*/*", "sec-fetch-mode": "same-origin", "sec-fetch-dest": "empty"},
        "json",
        id="fetch-from-page-same-origin",
    ),
    pytest.param({"sec-fetch-mode": "cors"}, "json", id="fetch-without-accept"),
    pytest.param(
        {"accept": "*/*", "x-requested-with": "XMLHttpRequest"}, "json", id="x-requested-with"
    ),
    pytest.param(
        {"accept": "*/*", "x-requested-with": "xmlhttprequest"},
        "json",
        id="x-requested-with-lower-case",
    ),
    pytest.param(
        {
            "accept": "application/json, text/javascript, */*; q=0.01",
            "x-requested-with": "XMLHttpRequest",
        },
        "json",
        id="jquery-getjson",
    ),
    pytest.param(
        # A script that asks for HTML but also takes anything gets the machine format.
        {"accept": "text/html, */*; q=0.01", "x-requested-with": "XMLHttpRequest"},
        "json",
        id="jquery-html-with-wildcard",
    ),
    pytest.param(
        {"accept": "text/html", "sec-fetch-mode": "cors"}, "html", id="script-asking-only-html"
    ),
    # q-values.
    pytest.param({"accept": "text/html;q=0.1, application/json"}, "json", id="q-prefers-json"),
    pytest.param({"accept": "application/json;q=0.5, text/html"}, "html", id="q-prefers-html"),
    pytest.param(
        {"accept": "text/html;q=0.5, application/json;q=0.5"}, "html", id="q-tie-first-wins"
    ),
    pytest.param(
        {"accept": "application/json;q=0.5, text/html;q=0.5"}, "json", id="q-tie-first-wins-json"
    ),
    pytest.param(
        {"accept": "text/html;q=abc, application/json;q=0.5"}, "json", id="malformed-q-ignored"
    ),
    pytest.param({"accept": "text/html;q=5"}, "text", id="out-of-range-q"),
    pytest.param({"accept": "text/html;q=-1, application/json"}, "json", id="negative-q"),
    pytest.param({"accept": "text/html;q=0, */*"}, "text", id="q0-excludes-html"),
    pytest.param({"accept": "application/json;q=0, text/html"}, "html", id="q0-excludes-json"),
    pytest.param(
        {"accept": "text/html;q=0, application/json;q=0, */*"}, "text", id="q0-excludes-both"
    ),
    pytest.param({"accept": "*/*;q=0"}, "text", id="q0-wildcard"),
    pytest.param({"accept": ",,,;;;,"}, "text", id="garbage-accept"),
    pytest.param({"accept": "text/html;;;q=1;;"}, "html", id="stray-semicolons"),
]


@pytest.mark.parametrize(("headers", "kind"), KINDS)
def test_negotiate_kind(headers: dict[str, str], kind: str) -> None:
    assert negotiate_kind(headers) == kind


def test_huge_accept_header_is_cheap_and_safe() -> None:
    headers = {"accept": "application/x-foo;q=0.1, " * 10_000 + "text/html"}
    assert negotiate_kind(headers) in ("html", "json", "text")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        pytest.param("text/html", [("text/html", 1.0, 0)], id="single"),
        pytest.param(
            "text/html;q=0.5, */*", [("text/html", 0.5, 0), ("*/*", 1.0, 1)], id="two-with-q"
        ),
        pytest.param("text/html;q=x", [("text/html", 0.0, 0)], id="bad-q-is-zero"),
        pytest.param(" , ,", [], id="empty-parts"),
        pytest.param("TEXT/HTML ; Q=0.3", [("text/html", 0.3, 0)], id="case-and-spaces"),
    ],
)
def test_parse_accept(value: str, parsed: list[tuple[str, float, int]]) -> None:
    assert parse_accept(value) == parsed


LOCALE_CASES = [
    # Exact and by language.
    pytest.param("fr", "fr", id="exact"),
    pytest.param("de-DE,de;q=0.9,en;q=0.8", "de", id="browser-german"),
    pytest.param("en-US,en;q=0.9", "en", id="chrome-us-english"),
    pytest.param("es-419,es;q=0.9", "es", id="latin-american-spanish"),
    pytest.param("pt-BR", "pt-BR", id="pt-br-exact"),
    pytest.param("pt-PT", "pt-BR", id="pt-pt-to-pt-br"),
    pytest.param("pt", "pt-BR", id="pt-to-pt-br"),
    pytest.param("ja-JP", "ja", id="ja-region"),
    # Chinese: only Simplified-script tags map to zh-Hans.
    pytest.param("zh-CN", "zh-Hans", id="zh-cn"),
    pytest.param("zh", "zh-Hans", id="zh-bare"),
    pytest.param("zh-Hans", "zh-Hans", id="zh-hans-exact"),
    pytest.param("zh-Hans-CN", "zh-Hans", id="zh-hans-cn"),
    pytest.param("zh-SG", "zh-Hans", id="zh-sg"),
    pytest.param("zh-TW", "en", id="zh-tw-falls-to-default"),
    pytest.param("zh-TW, fr;q=0.8", "fr", id="zh-tw-falls-to-next"),
    pytest.param("zh-Hant, ja;q=0.5", "ja", id="zh-hant-falls-to-next"),
    pytest.param("zh-HK", "en", id="zh-hk-falls-to-default"),
    # Ordering.
    pytest.param("fr;q=0.5, de", "de", id="q-order"),
    pytest.param("de, fr", "de", id="equal-q-first-wins"),
    pytest.param("fr, de", "fr", id="equal-q-first-wins-other"),
    pytest.param("xx, it, fr;q=0.1", "fr", id="unknown-then-lower-q"),
    pytest.param("fr;q=0, de;q=0.1", "de", id="q0-excluded"),
    pytest.param("*", "en", id="star-is-default"),
    pytest.param("de, *;q=0.5", "de", id="star-after-real"),
    # Case-insensitive.
    pytest.param("FR-ca", "fr", id="upper-language"),
    pytest.param("PT-br", "pt-BR", id="upper-pt-br"),
    pytest.param("ZH-cn", "zh-Hans", id="upper-zh-cn"),
    pytest.param("zh-hans", "zh-Hans", id="lower-zh-hans"),
    pytest.param("JA", "ja", id="upper-ja"),
    # Nothing usable.
    pytest.param("", "en", id="empty"),
    pytest.param(None, "en", id="none"),
    pytest.param("garbage!!", "en", id="garbage"),
    pytest.param(";;;,,,", "en", id="punctuation"),
    pytest.param("xx-YY", "en", id="unknown-language"),
    pytest.param("fr;q=abc", "en", id="malformed-q"),
    pytest.param("fr;q=0", "en", id="only-q0"),
    pytest.param("<script>alert(1)</script>", "en", id="hostile"),
]


@pytest.mark.parametrize(("header", "locale"), LOCALE_CASES)
def test_negotiate_locale(header: str | None, locale: str) -> None:
    assert negotiate_locale(header, LOCALES, "en") == locale


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("xx", id="unknown"),
        pytest.param("zh-TW", id="zh-tw"),
    ],
)
def test_negotiate_locale_uses_the_given_default(header: str | None) -> None:
    assert negotiate_locale(header, LOCALES, "de") == "de"


def test_negotiate_locale_always_answers_an_available_locale() -> None:
    for header in ("en", "pt-PT", "zh-CN", "fr-CA", "es-MX", "de-AT", "ja-JP"):
        assert negotiate_locale(header, LOCALES, "en") in LOCALES


def test_huge_accept_language_is_safe() -> None:
    assert negotiate_locale("xx;q=0.9, " * 10_000, LOCALES, "en") == "en"


@pytest.mark.parametrize(("header", "locale"), LOCALE_CASES)
def test_negotiation_reads_only_the_language_key(header: str | None, locale: str) -> None:
    """What the engine caches on: equal keys must negotiate alike."""
    assert negotiate_locale(language_key(header), LOCALES, "en") == locale


def test_language_key_is_bounded_lowercase_and_without_spaces() -> None:
    assert language_key(" De-DE , de;q=0.9,\ten ; q=0.8 ") == "de-de,de;q=0.9,en;q=0.8"
    assert language_key(None) == language_key("") == ""
    long = "fr-CA, " + "xx;q=0.1, " * 100_000
    key = language_key(long)
    assert len(key) <= MAX_LANGUAGE
    assert key.startswith("fr-ca,")
    assert key.endswith("xx;q=0.1"), "cut after a whole item"
    assert negotiate_locale(long, LOCALES, "en") == "fr"
    assert language_key("x" * 100_000) == "", "one item longer than the bound is not read"


def test_huge_accept_is_read_only_in_part() -> None:
    assert len(parse_accept("a," * 500_000)) <= 32
    assert parse_accept("text/html;q=0.5, " + "a" * 1_000_000) == [("text/html", 0.5, 0)]


def test_distinct_huge_accept_languages_are_not_kept() -> None:
    """Issue 12: 300 failing requests with distinct 1 MB Accept-Language values left the
    process 302 MB larger: the engine kept every raw value as a cache key."""
    engine = Engine(Config(secret="test-secret-0123456789abcdef", recorders=[]), testing=True)
    failure = engine.failure_for_status(502)

    def reply(language: str) -> None:
        view = RequestView(
            "GET", "/p", headers={"accept": "text/html", "accept-language": language}
        )
        assert engine.respond(failure, view).status == 502

    reply("fr")  # warm up what every reply allocates once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(300):
            reply(f"x{n:04d}-" + "y" * 100_000)  # 300 distinct 100 KB values: 30 MB in all
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    engine.close()
    assert kept < 2_000_000, f"{kept} bytes kept after 300 distinct 100 KB headers"


# -- Accept-Encoding ---------------------------------------------------------------------

ENCODINGS = [
    # What clients send.
    pytest.param("gzip, deflate, br, zstd", ("br", "gzip"), id="chrome-firefox"),
    pytest.param("gzip, deflate, br", ("br", "gzip"), id="safari"),
    pytest.param("gzip, deflate", ("gzip",), id="python-requests"),
    pytest.param("deflate, gzip, br, zstd", ("br", "gzip"), id="curl-compressed"),
    pytest.param("identity", (), id="identity-only"),
    pytest.param(None, (), id="no-header"),
    pytest.param("", (), id="empty-header"),
    # q-values: the higher first; brotli first on a tie.
    pytest.param("gzip;q=1.0, br;q=0.5", ("gzip", "br"), id="gzip-preferred"),
    pytest.param("br;q=0.5, gzip;q=0.5", ("br", "gzip"), id="tie-brotli-first"),
    pytest.param("gzip;q=0, br", ("br",), id="gzip-refused"),
    pytest.param("br;q=0, gzip;q=0", (), id="both-refused"),
    pytest.param("GZIP;Q=0.8", ("gzip",), id="case-insensitive"),
    pytest.param("x-gzip", ("gzip",), id="x-gzip-alias"),
    pytest.param("zstd, deflate", (), id="only-others"),
    # The wildcard stands for the codings not named.
    pytest.param("*", ("br", "gzip"), id="wildcard"),
    pytest.param("*;q=0", (), id="wildcard-refused"),
    pytest.param("br;q=0, *", ("gzip",), id="wildcard-but-brotli"),
    pytest.param("gzip;q=0.2, *;q=0.9", ("br", "gzip"), id="wildcard-above-gzip"),
    # identity preferred over every coding it takes.
    pytest.param("gzip;q=0.5, identity", (), id="identity-preferred"),
    pytest.param("gzip, identity;q=0.5", ("gzip",), id="identity-second"),
    pytest.param("gzip, identity;q=0", ("gzip",), id="identity-refused"),
    # Malformed: the body as it is.
    pytest.param("gzip;q=x", (), id="bad-q-is-zero"),
    pytest.param("gzip;q=2", (), id="q-out-of-range-is-zero"),
    pytest.param("g zip, br", (), id="not-a-token"),
    pytest.param("br\x00, gzip", (), id="control-character"),
    pytest.param(",,,", (), id="only-commas"),
]


@pytest.mark.parametrize(("header", "codings"), ENCODINGS)
def test_accepted_encodings(header: str | None, codings: tuple[str, ...]) -> None:
    assert accepted_encodings(header) == codings
    assert accepted_encoding(header) == (codings[0] if codings else None)
    assert accepted_encodings(header) == codings, "the same from the cache"


def test_accepted_encodings_cache_is_bounded() -> None:
    for number in range(1000):
        accepted_encodings(f"gzip;q=0.{number:03d}")
    assert 0 < len(negotiate._encodings) <= 256


def test_huge_accept_encoding_is_read_only_in_part() -> None:
    # A long header is read only within its first 1,024 characters: the coding beyond is
    # not seen, and the cache keys stay short.
    header = "zstd, " * 400 + "gzip"
    assert accepted_encodings(header) == ()
    assert accepted_encodings("gzip, " + "zstd, " * 400) == ("gzip",)
    assert max(map(len, negotiate._encodings)) <= 1025
