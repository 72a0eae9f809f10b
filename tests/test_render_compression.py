"""Encoded bodies: every reply, gzip- and brotli-encoded without compressing per request,
decodes byte for byte to the body as it is; and the variants are rendered at first use."""

from __future__ import annotations

import gzip
import logging
import random
import zlib
from pathlib import Path

import brotli
import pytest

from gracefail import Config
from gracefail import render as render_module
from gracefail.classify import Failure
from gracefail.config import LOCALES
from gracefail.core import Engine, RequestView
from gracefail.negotiate import accepted_encodings
from gracefail.render import (
    MAX_ECHOED_URL,
    VALUE_SLOTS,
    Prepared,
    Renderer,
    _crc_tables,
    _debruijn_pairs,
    _stored,
)

SECRET = "compression-secret-0123456789"
URL, INCIDENT, TOKEN, DETAIL = VALUE_SLOTS
CODINGS = (("br",), ("gzip",))
# One failure for each thing a reply can say happened.
FAILURES = (Failure(502, "connection"), Failure(502, "protocol"), Failure(504, "timeout"))
HOSTILE_URL = "/\"'><script>alert(1)</script>?q=\u2028&x=<svg onload=alert(2)>é日本"


def decode(body: bytes, coding: str | None) -> bytes:
    if coding == "gzip":
        assert body[:3] == b"\x1f\x8b\x08", "a gzip member"
        return gzip.decompress(body)
    if coding == "br":
        return bytes(brotli.decompress(body))
    assert coding is None
    return body


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    config = Config(
        secret=SECRET,
        recorders=[],
        debug=True,
        status_page_url="https://status.example.com",
        messages={"/checkout/*": {"heading": "Payments are slow", "explain_timeout": "Slow."}},
    )
    return Renderer(config, strict=True)


@pytest.mark.parametrize("kind", ["html", "json", "text"])
def test_every_variant_decodes_to_the_body(renderer: Renderer, kind: str) -> None:
    requests = [
        # url, incident, token: a browser's, an export's (no token), a hostile and long URL.
        ("/orders/42?tab=items", "a1B2c3D4e5F6g7H8", "tok." + "x" * 60),
        ("/", "proxy", ""),
        (HOSTILE_URL * 20, "R" * 64, "t" * 200),
    ]
    for failure in FAILURES:
        for locale in LOCALES:
            for safe in (True, False):
                for url, incident, token in requests:
                    args = (kind, failure, locale, safe, incident, token, url)
                    body, content_type, csp, _ = renderer.encoded_body(*args)
                    assert body == renderer.body(*args)[0]
                    for accepted in CODINGS:
                        encoded, encoded_type, encoded_csp, coding = renderer.encoded_body(
                            *args, accepted=accepted
                        )
                        assert (encoded_type, encoded_csp) == (content_type, csp)
                        if kind == "html":
                            assert coding == accepted[0], (failure, locale, safe)
                        if kind == "html" and url == requests[0][0]:
                            assert len(encoded) < len(body) / 2
                        assert decode(encoded, coding) == body, (coding, failure, locale, safe)


def test_route_variants_are_encoded_too(renderer: Renderer) -> None:
    failure = Failure(504, "timeout")
    args = ("html", failure, "fr", True, "i" * 16, "t" * 40, "/checkout/pay?x=1")
    body, _, _, _ = renderer.encoded_body(*args)
    assert b"Payments are slow" in body
    assert b"Slow." in body
    for accepted in CODINGS:
        encoded, _, _, coding = renderer.encoded_body(*args, accepted=accepted)
        assert coding == accepted[0]
        assert decode(encoded, coding) == body


def test_the_retry_link_echoes_up_to_the_longest_url(renderer: Renderer) -> None:
    # Just under the limit the URL is echoed (escaped); just over, not at all.
    for length, echoed in ((MAX_ECHOED_URL, True), (MAX_ECHOED_URL + 1, False)):
        url = "/" + "é" * (length - 1)
        args = ("html", FAILURES[0], "ja", True, "i" * 16, "t" * 40, url)
        body, _, _, _ = renderer.encoded_body(*args)
        assert (url.encode() in body) is echoed
        for accepted in CODINGS:
            encoded, _, _, coding = renderer.encoded_body(*args, accepted=accepted)
            assert decode(encoded, coding) == body


def test_preference_order_and_fallbacks(
    renderer: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("html", FAILURES[0], "en", True, "i" * 16, "t" * 40, "/")
    body = renderer.body(*args)[0]
    _, _, _, coding = renderer.encoded_body(*args, accepted=("gzip", "br"))
    assert coding == "gzip"
    _, _, _, coding = renderer.encoded_body(*args, accepted=("deflate",))
    assert coding is None
    # Without the brotli package, a client that takes gzip too gets gzip, else the body.
    monkeypatch.setattr(render_module, "_brotli", None)
    prepared = Prepared(body.decode())
    encoded, coding = prepared.encode(prepared_values(), ("br", "gzip"))
    assert coding == "gzip"
    assert gzip.decompress(encoded) == prepared.fill(prepared_values())
    assert prepared.encode(prepared_values(), ("br",)) == (prepared.fill(prepared_values()), None)


def prepared_values(
    url: bytes = b"/x", incident: bytes = b"inc", token: bytes = b"tok"
) -> tuple[bytes, ...]:
    return (url, incident, token, b"")


LAYOUTS = [
    pytest.param(f"{URL}" + "a" * 3000 + f"{INCIDENT}", id="starts-and-ends-with-values"),
    pytest.param("b" * 2000 + f"{URL}{INCIDENT}{TOKEN}" + "c" * 500, id="adjacent-values"),
    pytest.param("d" * 2000 + f"{URL}-{INCIDENT}" + "e" * 70 + f"{TOKEN}x", id="short-stretches"),
    pytest.param("f" * 5000, id="no-values"),
    pytest.param("ab", id="tiny"),
    pytest.param("", id="empty"),
    pytest.param(
        "g" * 1500 + f"{DETAIL}" + "h" * 1500 + "\ue000other\ue001" + "i" * 100, id="foreign-mark"
    ),
    pytest.param(
        "<p>" + f"{INCIDENT}</p>" + "日本語のテキスト" * 400, id="value-in-first-kilobyte"
    ),
]


@pytest.mark.parametrize("text", LAYOUTS)
def test_any_layout_decodes(text: str) -> None:
    prepared = Prepared(text)
    generator = random.Random(7)
    samples = [
        (b"", b"", b"", b""),
        prepared_values(),
        tuple(generator.randbytes(generator.randrange(0, 3000)) for _ in VALUE_SLOTS),
    ]
    for values in samples:
        expected = prepared.fill(values)
        for accepted in (("br",), ("gzip",), ("br", "gzip")):
            body, coding = prepared.encode(values, accepted)
            assert decode(body, coding) == expected, (accepted, coding)


def test_brotli_needs_the_window_before_the_first_value() -> None:
    # A value within the first kilobyte would shift what later references point at: such a
    # body (a theme's) has no brotli form, and gzip serves a client that takes both.
    early = Prepared(f"<p>{INCIDENT}</p>" + "x" * 4000)
    assert early.encode(prepared_values(), ("br",))[1] is None
    assert early.encode(prepared_values(), ("br", "gzip"))[1] == "gzip"
    late = Prepared("y" * 1100 + f"<p>{INCIDENT}</p>" + "x" * 4000)
    assert late.encode(prepared_values(), ("br",))[1] == "br"


def test_too_small_to_gain_is_sent_as_it_is() -> None:
    prepared = Prepared(f"{INCIDENT}\n")
    assert prepared.encode(prepared_values(), ("br", "gzip")) == (b"inc\n", None)


def test_values_longer_than_a_stored_block() -> None:
    # Deflate's stored blocks hold 65,535 bytes and brotli's uncompressed meta-blocks (as
    # written here) 65,536: longer values are split over several.
    prepared = Prepared("z" * 2000 + f"{DETAIL}" + "w" * 2000 + f"{TOKEN}" + "v" * 300)
    for size in (65_535, 65_536, 65_537, 200_000):
        values = (b"", b"", (bytes(range(256)) * (size // 256 + 1))[:size], b"d" * size)
        for accepted in CODINGS:
            body, coding = prepared.encode(values, accepted)
            assert coding == accepted[0]
            assert decode(body, coding) == prepared.fill(values)


def test_stored_blocks_split_at_65535() -> None:
    data = bytes(range(256)) * 600  # 153,600 bytes: three blocks
    framed = b"".join(_stored(data))
    # As the tail of a deflate stream: a stored block's header (BTYPE 00) comes first here.
    stream = b"\x00" + framed + b"\x03\x00"
    assert zlib.decompress(stream, -15) == data
    assert framed[:4] == bytes.fromhex("ffff0000"), "LEN 65535, NLEN 0"
    assert framed[4 + 65_535] == 0, "the next block's header"
    assert len(framed) == len(data) + 4 + 2 * 5


def test_crc_tables_shift_a_running_crc() -> None:
    generator = random.Random(3)
    for size in (1, 2, 255, 4096):
        data = generator.randbytes(size)
        table = _crc_tables(size)
        for crc in (0, 1, 0xFFFFFFFF, generator.getrandbits(32)):
            shifted = (
                table[crc & 255]
                ^ table[256 | crc >> 8 & 255]
                ^ table[512 | crc >> 16 & 255]
                ^ table[768 | crc >> 24]
                ^ zlib.crc32(data)
            )
            assert shifted == zlib.crc32(data, crc)


def test_filler_has_every_pair_once() -> None:
    alphabet = bytes(range(43))
    filler = _debruijn_pairs(alphabet)
    pairs = [filler[i : i + 2] for i in range(len(filler) - 1)]
    assert len(pairs) == len(set(pairs)) == 43 * 43


def test_the_gzip_header_and_trailer() -> None:
    prepared = Prepared("a" * 2000 + f"{URL}" + "b" * 2000)
    values = (b"/path", b"", b"", b"")
    body, coding = prepared.encode(values, ("gzip",))
    assert coding == "gzip"
    # ID1 ID2 CM=8 FLG=0 MTIME=0 XFL=2 OS=255; then CRC-32 and ISIZE of the whole body.
    assert body[:10] == bytes.fromhex("1f8b08000000000002ff")
    expected = prepared.fill(values)
    assert body[-8:] == zlib.crc32(expected).to_bytes(4, "little") + len(expected).to_bytes(
        4, "little"
    )


# -- through the engine --------------------------------------------------------------------


def test_a_browser_gets_the_page_in_brotli_through_the_engine() -> None:
    gracefail = Engine(Config(secret=SECRET, recorders=[]))
    headers = {
        "accept": "text/html",
        "sec-fetch-mode": "navigate",
        "accept-encoding": "gzip, deflate, br, zstd",
        "accept-language": "ja",
    }
    reply = gracefail.respond(FAILURES[0], RequestView("GET", "/orders", "", headers))
    sent = dict(reply.headers)
    page = decode(reply.body, sent.get("content-encoding"))
    assert sent["content-length"] == str(len(reply.body))
    # The body as it is, for the same incident and token, is what the reply decodes to.
    incident = sent["x-gracefail-incident"]
    token = page.split(b'"token":"', 1)[1].split(b'"', 1)[0].decode()
    plain = gracefail.renderer.body("html", FAILURES[0], "ja", True, incident, token, "/orders")
    assert page == plain[0]
    accepted = accepted_encodings(headers["accept-encoding"])
    encoded, _, _, coding = gracefail.renderer.encoded_body(
        "html", FAILURES[0], "ja", True, incident, token, "/orders", accepted=accepted
    )
    assert coding == "br"
    assert decode(encoded, coding) == page


# -- start-up: the variants are rendered at first use ---------------------------------------


def test_the_built_in_page_renders_nothing_at_start_up() -> None:
    renderer = Renderer(Config(secret=SECRET, recorders=[]))
    assert dict(renderer.default.pages.built) == {}
    assert len(renderer.pages) == 4 * len(LOCALES)
    body, _, csp = renderer.body("html", FAILURES[0], "de", False, "i" * 16, "t", "/")
    assert b'lang="de"' in body
    assert csp
    assert list(renderer.default.pages.built) == [(502, "de", False)]


def test_strict_renders_everything_at_start_up() -> None:
    renderer = Renderer(Config(secret=SECRET, recorders=[]), strict=True)
    assert len(renderer.default.pages.built) == 4 * len(LOCALES)
    assert len(renderer.default.problems.built) == 4 * len(LOCALES)


def test_a_theme_is_checked_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        '{% extends "gracefail/base.html" %}{% block heading %}<h1>Ours</h1>{% endblock %}'
    )
    renderer = Renderer(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    assert list(renderer.default.pages.built) == [(502, "en", True)]


def test_a_theme_that_fails_for_one_variant_falls_back_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Renders at start-up (502, English, GET), fails for Japanese: past start-up that variant
    # is the built-in page, logged, never an error reply.
    (tmp_path / "page.html").write_text(
        '{% extends "gracefail/base.html" %}'
        "{% block heading %}<h1>{{ t.no_such_key if lang == 'ja' else 'Ours' }}</h1>{% endblock %}"
    )
    renderer = Renderer(Config(secret=SECRET, recorders=[], template_dir=tmp_path))
    english = renderer.body("html", FAILURES[0], "en", True, "i", "t", "/")[0]
    assert b"<h1>Ours</h1>" in english
    with caplog.at_level(logging.ERROR, logger="gracefail"):
        japanese = renderer.body("html", FAILURES[0], "ja", True, "i", "t", "/")[0]
    assert b'lang="ja"' in japanese
    assert b"<h1>Ours</h1>" not in japanese
    assert "failed for the 502/ja/GET page" in caplog.text
    with pytest.raises(Exception, match="no_such_key"):
        Renderer(Config(secret=SECRET, recorders=[], template_dir=tmp_path), strict=True)


def test_warm_prepares_the_default_locale_off_the_request_path() -> None:
    renderer = Renderer(Config(secret=SECRET, recorders=[], default_locale="fr"))
    renderer.warm()
    # Both statuses and methods of the French page, in every cause, brotli and gzip ready.
    assert sorted(renderer.default.pages.built) == [
        (502, "fr", False),
        (502, "fr", True),
        (504, "fr", False),
        (504, "fr", True),
    ]
    assert len(renderer.default.replies) == 6
    for prepared in renderer.default.replies.values():
        assert prepared._br_ready
        assert prepared._gzip_ready
