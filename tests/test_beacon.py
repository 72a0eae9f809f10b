"""gracefail.beacon: what a page's beacon may say before it becomes a ClientEvent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gracefail import beacon
from gracefail.beacon import (
    CLOCK_SLACK_MS,
    MAX_BODY,
    BeaconError,
    bound_elapsed,
    check_origin,
    parse_beacon,
)
from gracefail.events import CLIENT_KINDS, ClientEvent
from gracefail.tokens import TokenSigner

SECRET = "test-secret-0123456789abcdef"
TTL = 3600
NOW = 1_700_000_000.0
SIGNER = TokenSigner(SECRET, TTL)
TOKEN = SIGNER.sign("inc-1", 504, now=NOW)
MAX_ATTEMPT = 100_000
MAX_ELAPSED_MS = 7 * 86_400_000


def fields(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "token": TOKEN,
        "kind": "recovered",
        "attempt": 3,
        "elapsed_ms": 12_345,
        "locale": "pt-BR",
    }
    data.update(changes)
    return data


def body(**changes: Any) -> bytes:
    return json.dumps(fields(**changes)).encode()


def parse(data: bytes, content_type: str = "text/plain;charset=UTF-8") -> ClientEvent:
    return parse_beacon(data, content_type, SIGNER, now=NOW + 60)


def refused(data: bytes, content_type: str = "text/plain;charset=UTF-8") -> BeaconError:
    with pytest.raises(BeaconError) as info:
        parse(data, content_type)
    return info.value


@pytest.mark.parametrize("kind", sorted(CLIENT_KINDS))
def test_every_kind_is_accepted(kind: str) -> None:
    event = parse(body(kind=kind))
    assert event == ClientEvent(
        time=NOW + 60,
        incident="inc-1",
        kind=kind,
        attempt=3,
        elapsed_ms=12_345,
        locale="pt-BR",
        status=504,
    )


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain;charset=UTF-8", id="send-beacon-string"),
        pytest.param("text/plain", id="text-plain"),
        pytest.param("Text/Plain; Charset=utf-8", id="case-and-space"),
        pytest.param("application/json", id="application-json"),
        pytest.param("application/json; charset=utf-8", id="application-json-charset"),
        pytest.param("", id="empty"),
    ],
)
def test_content_types_accepted(content_type: str) -> None:
    assert parse(body(), content_type).kind == "recovered"


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param("multipart/form-data; boundary=x", id="multipart"),
        pytest.param("text/html", id="html"),
        pytest.param("application/xml", id="xml"),
        pytest.param("image/png", id="png"),
        pytest.param("application/jsonx", id="json-lookalike"),
    ],
)
def test_content_types_refused(content_type: str) -> None:
    assert refused(body(), content_type).status == 415


def test_body_at_limit_is_accepted() -> None:
    data = body()
    padded = data[:-1] + b" " * (MAX_BODY - len(data)) + b"}"
    assert len(padded) == MAX_BODY
    assert parse(padded).kind == "recovered"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b" " * (MAX_BODY + 1), id="one-byte-over"),
        pytest.param(body()[:-1] + b" " * MAX_BODY + b"}", id="valid-json-too-large"),
        pytest.param(b"\xff" * 100_000, id="huge-garbage"),
    ],
)
def test_too_large(data: bytes) -> None:
    assert refused(data).status == 413


def test_size_is_checked_before_content_type() -> None:
    assert refused(b"x" * (MAX_BODY + 1), "text/html").status == 413


BAD_REQUEST = [
    # Not JSON at all.
    pytest.param(b"", id="empty"),
    pytest.param(b"{", id="truncated"),
    pytest.param(b"hello", id="words"),
    pytest.param(b"token=x&kind=shown", id="form-encoded"),
    pytest.param(b'{"token": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b"\xef\xbb\xbf" + body(), id="utf8-bom"),
    # JSON, but not an object.
    pytest.param(b"[]", id="array"),
    pytest.param(b'"shown"', id="string"),
    pytest.param(b"null", id="null"),
    pytest.param(b"42", id="number"),
    pytest.param(json.dumps([fields()]).encode(), id="object-in-array"),
    # Keys.
    *[
        pytest.param(
            json.dumps({k: v for k, v in fields().items() if k != key}).encode(),
            id=f"missing-{key}",
        )
        for key in ("token", "kind", "attempt", "elapsed_ms", "locale")
    ],
    pytest.param(body(extra=1), id="extra-key"),
    pytest.param(body(__proto__={}), id="proto-key"),
    pytest.param(b"{}", id="empty-object"),
    # kind.
    pytest.param(body(kind="bogus"), id="kind-unknown"),
    pytest.param(body(kind="SHOWN"), id="kind-upper"),
    pytest.param(body(kind="shown "), id="kind-trailing-space"),
    pytest.param(body(kind=""), id="kind-empty"),
    pytest.param(body(kind=None), id="kind-null"),
    pytest.param(body(kind=1), id="kind-number"),
    pytest.param(body(kind=["shown"]), id="kind-list"),
    pytest.param(body(kind={"shown": 1}), id="kind-object"),
    # attempt.
    pytest.param(body(attempt=-1), id="attempt-negative"),
    pytest.param(body(attempt=1.0), id="attempt-float-whole"),
    pytest.param(body(attempt=1.5), id="attempt-float"),
    pytest.param(body(attempt=True), id="attempt-bool"),
    pytest.param(body(attempt="1"), id="attempt-string"),
    pytest.param(body(attempt=None), id="attempt-null"),
    pytest.param(body(attempt=MAX_ATTEMPT + 1), id="attempt-too-big"),
    pytest.param(body(attempt=10**30), id="attempt-huge"),
    pytest.param(body().replace(b'"attempt": 3', b'"attempt": NaN'), id="attempt-nan"),
    pytest.param(body().replace(b'"attempt": 3', b'"attempt": Infinity'), id="attempt-inf"),
    # elapsed_ms.
    pytest.param(body(elapsed_ms=-1), id="elapsed-negative"),
    pytest.param(body(elapsed_ms=2.5), id="elapsed-float"),
    pytest.param(body(elapsed_ms=False), id="elapsed-bool"),
    pytest.param(body(elapsed_ms="100"), id="elapsed-string"),
    pytest.param(body(elapsed_ms=MAX_ELAPSED_MS + 1), id="elapsed-too-big"),
    pytest.param(body(elapsed_ms=10**30), id="elapsed-huge"),
    # locale.
    pytest.param(body(locale=""), id="locale-empty"),
    pytest.param(body(locale="x"), id="locale-one-letter"),
    pytest.param(body(locale="en_US"), id="locale-underscore"),
    pytest.param(body(locale="<script>"), id="locale-hostile"),
    pytest.param(body(locale="en\n"), id="locale-newline"),
    pytest.param(body(locale="en-" + "a" * 40), id="locale-long-subtag"),
    pytest.param(body(locale=5), id="locale-number"),
    pytest.param(body(locale=None), id="locale-null"),
    pytest.param(body(locale=["en"]), id="locale-list"),
]


@pytest.mark.parametrize("data", BAD_REQUEST)
def test_bad_request(data: bytes) -> None:
    error = refused(data)
    assert error.status == 400
    assert error.reason


@pytest.mark.parametrize(
    ("changes", "value"),
    [
        pytest.param({"attempt": 0}, 0, id="attempt-zero"),
        pytest.param({"attempt": MAX_ATTEMPT}, MAX_ATTEMPT, id="attempt-max"),
        pytest.param({"elapsed_ms": 0}, 0, id="elapsed-zero"),
        # Accepted, but no page view lasts longer than its token's age (60 s here).
        pytest.param({"elapsed_ms": MAX_ELAPSED_MS}, 60_000 + CLOCK_SLACK_MS, id="elapsed-max"),
    ],
)
def test_integer_bounds_accepted(changes: dict[str, int], value: int) -> None:
    event = parse(body(**changes))
    key = next(iter(changes))
    assert getattr(event, key) == value


@pytest.mark.parametrize(
    "locale", ["en", "pt-BR", "zh-Hans", "zh-Hans-CN", "es-419", "fil", "de-CH-1996"]
)
def test_locales_accepted(locale: str) -> None:
    assert parse(body(locale=locale)).locale == locale


FORBIDDEN = [
    pytest.param(
        TokenSigner("another-secret-0123456789", TTL).sign("inc-1", 504, now=NOW),
        id="other-secret",
    ),
    pytest.param(TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B"), id="mac-changed"),
    pytest.param(TOKEN.replace("~504~", "~502~"), id="status-changed"),
    pytest.param(TOKEN.replace("~inc-1~", "~inc-2~"), id="incident-changed"),
    pytest.param(SIGNER.sign("inc-1", 504, now=NOW - TTL - 120), id="expired"),
    pytest.param(SIGNER.sign("inc-1", 504, now=NOW + 86400), id="future-dated"),
    pytest.param("", id="empty"),
    pytest.param("garbage", id="garbage"),
]


@pytest.mark.parametrize("token", FORBIDDEN)
def test_forged_or_expired_token(token: str) -> None:
    assert refused(body(token=token)).status == 403


NESTED = [
    # Issue 12: 4 KB of brackets, no token needed, answered 500 (RecursionError) before.
    pytest.param(b"[" * 2000 + b"]" * 2000, id="arrays-2000-deep"),
    pytest.param(b'{"a":' * 600 + b"1" + b"}" * 600, id="objects-600-deep"),
    pytest.param(b"[" * 2040, id="unclosed"),
    pytest.param(body()[:-1] + b', "x": ' + b"[" * 900 + b"]" * 900 + b"}", id="inside-a-beacon"),
    pytest.param(body(kind=[[[[["shown"]]]]]), id="five-deep"),
]


@pytest.mark.parametrize("data", NESTED)
def test_deep_nesting_is_a_bad_request(data: bytes) -> None:
    assert len(data) <= MAX_BODY
    error = refused(data)
    assert error.status == 400
    assert "flat" in error.reason


@pytest.mark.parametrize("data", NESTED)
def test_nesting_is_refused_before_decoding(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("json.loads ran on a nested body")

    monkeypatch.setattr(beacon.json, "loads", never)
    assert refused(data).status == 400


def test_a_recursion_error_while_decoding_is_a_bad_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def deep(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

    monkeypatch.setattr(beacon.json, "loads", deep)
    assert refused(body()).status == 400


@pytest.mark.parametrize(
    ("elapsed", "issued", "now", "bounded"),
    [
        pytest.param(12_345, NOW, NOW + 60, 12_345, id="within-the-token-age"),
        pytest.param(7 * 86_400_000, NOW, NOW + 1, 1_000 + CLOCK_SLACK_MS, id="a-week-claimed"),
        pytest.param(90_000, NOW, NOW + 60.5, 60_500 + CLOCK_SLACK_MS, id="just-over"),
        pytest.param(30_000, NOW + 50, NOW, CLOCK_SLACK_MS, id="token-from-a-clock-ahead"),
        pytest.param(0, NOW, NOW, 0, id="zero"),
    ],
)
def test_durations_are_bounded_by_the_token_age(
    elapsed: int, issued: float, now: float, bounded: int
) -> None:
    assert bound_elapsed(elapsed, issued, now) == bounded


def test_a_week_claimed_on_a_token_one_second_old_is_cut_to_its_age() -> None:
    """Issue 12: elapsed_ms up to 7 days was taken from a token issued a second earlier."""
    token = SIGNER.sign("inc-1", 502, now=NOW)
    event = parse_beacon(body(token=token, elapsed_ms=MAX_ELAPSED_MS), "", SIGNER, now=NOW + 1)
    assert event.elapsed_ms == 1_000 + CLOCK_SLACK_MS


def test_token_must_be_a_string() -> None:
    error = refused(body(token=12345))
    assert error.status in (400, 403)


def test_event_time_defaults_to_now() -> None:
    token = SIGNER.sign("inc-1", 502)
    event = parse_beacon(body(token=token), "", SIGNER)
    assert event.status == 502
    assert event.time > NOW


def test_beacon_error_carries_status_and_reason() -> None:
    error = BeaconError(415, "nope")
    assert error.status == 415
    assert error.reason == "nope"
    assert str(error) == "nope"


# --------------------------------------------------------------------------- check_origin

ORIGIN_OK = [
    pytest.param({"origin": "https://shop.example", "host": "shop.example"}, "https", id="same"),
    pytest.param(
        {"origin": "http://127.0.0.1:8000", "host": "127.0.0.1:8000"}, "http", id="same-with-port"
    ),
    pytest.param(
        # TLS terminated by a proxy: the app sees http, the page was https.
        {"origin": "https://shop.example", "host": "shop.example"},
        "http",
        id="https-behind-proxy",
    ),
    pytest.param(
        {"origin": "HTTPS://Shop.Example", "host": "shop.example"}, "https", id="case-insensitive"
    ),
    pytest.param(
        {"sec-fetch-site": "same-origin", "origin": "https://shop.example", "host": "shop.example"},
        "https",
        id="sec-fetch-same-origin",
    ),
    pytest.param({"sec-fetch-site": "same-origin"}, "https", id="sec-fetch-only"),
    pytest.param({"host": "shop.example"}, "https", id="no-origin"),
    pytest.param({}, "http", id="no-headers"),
]


@pytest.mark.parametrize(("headers", "scheme"), ORIGIN_OK)
def test_origin_accepted(headers: dict[str, str], scheme: str) -> None:
    check_origin(headers, scheme)


ORIGIN_REFUSED = [
    pytest.param(
        {"sec-fetch-site": "cross-site", "origin": "https://evil.example", "host": "shop.example"},
        "https",
        id="sec-fetch-cross-site",
    ),
    pytest.param({"sec-fetch-site": "cross-site"}, "https", id="sec-fetch-cross-site-only"),
    pytest.param({"sec-fetch-site": "same-site"}, "https", id="sec-fetch-same-site"),
    pytest.param(
        # Sec-Fetch-Site is the browser's word; a matching Origin does not override it.
        {"sec-fetch-site": "cross-site", "origin": "https://shop.example", "host": "shop.example"},
        "https",
        id="sec-fetch-wins",
    ),
    pytest.param(
        {"origin": "https://evil.example", "host": "shop.example"}, "https", id="other-host"
    ),
    pytest.param(
        {"origin": "https://shop.example.evil.example", "host": "shop.example"},
        "https",
        id="suffix-host",
    ),
    pytest.param(
        {"origin": "https://shop.example:8443", "host": "shop.example"}, "https", id="other-port"
    ),
    pytest.param(
        {"origin": "http://shop.example", "host": "shop.example"}, "https", id="scheme-downgrade"
    ),
    pytest.param({"origin": "https://shop.example"}, "https", id="origin-without-host"),
]


@pytest.mark.parametrize(("headers", "scheme"), ORIGIN_REFUSED)
def test_origin_refused(headers: dict[str, str], scheme: str) -> None:
    with pytest.raises(BeaconError) as info:
        check_origin(headers, scheme)
    assert info.value.status == 403
