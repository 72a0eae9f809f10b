"""gracefail.tokens: incident ids and the signed tokens that let beacons be trusted."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest

from gracefail.tokens import (
    VIEW_SEPARATOR,
    VIEW_SUFFIX,
    TokenError,
    TokenSigner,
    incident_from_request_id,
    new_incident,
    page_view,
    split_view,
)

SECRET = "test-secret-0123456789abcdef"
TTL = 3600
NOW = 1_700_000_000.0
INCIDENT_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET, TTL)


@pytest.mark.parametrize(
    ("incident", "status"),
    [
        pytest.param("inc-1", 502, id="502"),
        pytest.param("inc-1", 504, id="504"),
        pytest.param("a" * 64, 502, id="longest-incident"),
        pytest.param("req.42_x-Y", 504, id="request-id-alphabet"),
        pytest.param(new_incident(), 502, id="fresh-incident"),
    ],
)
def test_round_trip(signer: TokenSigner, incident: str, status: int) -> None:
    token = signer.sign(incident, status, now=NOW)
    claims = signer.verify(token, now=NOW + 10)
    assert claims.incident == incident
    assert claims.status == status
    assert claims.issued == int(NOW)


def test_fractional_now_is_truncated(signer: TokenSigner) -> None:
    claims = signer.verify(signer.sign("inc", 502, now=NOW + 0.9), now=NOW + 1)
    assert claims.issued == int(NOW)


def test_token_is_url_and_header_safe(signer: TokenSigner) -> None:
    token = signer.sign("inc-1", 502, now=NOW)
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", token)
    assert len(token) < 120


def test_str_and_bytes_secret_are_the_same_key() -> None:
    token = TokenSigner(SECRET, TTL).sign("inc", 502, now=NOW)
    assert TokenSigner(SECRET.encode(), TTL).verify(token, now=NOW).incident == "inc"


def test_valid_until_ttl(signer: TokenSigner) -> None:
    token = signer.sign("inc", 502, now=NOW)
    assert signer.verify(token, now=NOW + TTL).incident == "inc"
    with pytest.raises(TokenError):
        signer.verify(token, now=NOW + TTL + 1)


def test_small_clock_skew_is_tolerated(signer: TokenSigner) -> None:
    # Another worker's clock may be a little ahead.
    token = signer.sign("inc", 502, now=NOW + 5)
    assert signer.verify(token, now=NOW).incident == "inc"


def _parts(token: str) -> list[str]:
    parts = token.split("~")
    assert len(parts) == 4
    return parts


def _flip(text: str, index: int = -1) -> str:
    char = text[index]
    new = "B" if char != "B" else "C"
    if index == -1:
        return text[:-1] + new
    return text[:index] + new + text[index + 1 :]


def _with_part(index: int, change: Callable[[str], str]) -> Callable[[str], str]:
    def tamper(token: str) -> str:
        parts = _parts(token)
        parts[index] = change(parts[index])
        return "~".join(parts)

    return tamper


TAMPERED = [
    pytest.param(_with_part(0, lambda p: format(int(p, 16) + 1, "x")), id="issued-later"),
    pytest.param(_with_part(0, lambda p: format(int(p, 16) - 100, "x")), id="issued-earlier"),
    pytest.param(_with_part(1, lambda p: p + "x"), id="incident-longer"),
    pytest.param(_with_part(1, lambda p: "other"), id="incident-swapped"),
    pytest.param(_with_part(2, lambda p: "504" if p == "502" else "502"), id="status-swapped"),
    pytest.param(_with_part(2, lambda p: "500"), id="status-500"),
    pytest.param(_with_part(3, _flip), id="mac-last-char"),
    pytest.param(_with_part(3, lambda p: _flip(p, 0)), id="mac-first-char"),
    pytest.param(_with_part(3, lambda p: p[:-1]), id="mac-truncated"),
    pytest.param(_with_part(3, lambda p: p + "A"), id="mac-extended"),
    pytest.param(_with_part(3, lambda p: "A" * len(p)), id="mac-zeroed"),
    pytest.param(lambda t: t + "~", id="trailing-separator"),
    pytest.param(lambda t: " " + t, id="leading-space"),
    pytest.param(lambda t: t + "\n", id="trailing-newline"),
    pytest.param(lambda t: t.replace("~", "."), id="separators-replaced"),
    pytest.param(lambda t: t.upper(), id="upper-cased"),
    pytest.param(lambda t: "~".join(_parts(t)[:3]), id="mac-dropped"),
]


@pytest.mark.parametrize("tamper", TAMPERED)
def test_tampered_tokens_are_refused(signer: TokenSigner, tamper: Callable[[str], str]) -> None:
    token = signer.sign("inc-1", 502, now=NOW)
    forged = tamper(token)
    assert forged != token
    with pytest.raises(TokenError):
        signer.verify(forged, now=NOW + 1)


def test_another_secret_is_refused(signer: TokenSigner) -> None:
    token = TokenSigner("another-secret-0123456789", TTL).sign("inc-1", 502, now=NOW)
    with pytest.raises(TokenError):
        signer.verify(token, now=NOW)


@pytest.mark.parametrize(
    ("signed_at", "verified_at"),
    [
        pytest.param(NOW, NOW + TTL + 1, id="expired-by-a-second"),
        pytest.param(NOW, NOW + 30 * 86400, id="expired-long-ago"),
        pytest.param(NOW + 3600, NOW, id="future-dated-hour"),
        pytest.param(NOW + 86400 * 365, NOW, id="future-dated-year"),
        pytest.param(0, NOW, id="epoch"),
    ],
)
def test_expired_or_future_tokens_are_refused(
    signer: TokenSigner, signed_at: float, verified_at: float
) -> None:
    token = signer.sign("inc-1", 502, now=signed_at)
    with pytest.raises(TokenError):
        signer.verify(token, now=verified_at)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="none"),
        pytest.param(123, id="int"),
        pytest.param(12.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param(b"65530f00~inc~502~AAAAAAAAAAAAAAAAAAAAAA", id="bytes"),
        pytest.param(["inc"], id="list"),
        pytest.param({"token": "x"}, id="dict"),
        pytest.param("", id="empty"),
        pytest.param("~~~", id="only-separators"),
        pytest.param("not a token", id="words"),
        pytest.param("a" * 1_000_000, id="huge-string"),
        pytest.param("1~" + "a" * 65 + "~502~" + "A" * 22, id="incident-too-long"),
        pytest.param("1~<script>~502~" + "A" * 22, id="incident-hostile"),
        pytest.param("1" * 13 + "~inc~502~" + "A" * 22, id="issued-too-long"),
    ],
)
def test_wrong_types_and_shapes_are_refused(signer: TokenSigner, token: object) -> None:
    with pytest.raises(TokenError):
        signer.verify(token, now=NOW)


def test_token_error_is_a_value_error() -> None:
    assert issubclass(TokenError, ValueError)


# --------------------------------------------------------------------------- incident ids


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("abc", id="short"),
        pytest.param("req-123_4.5", id="alphabet"),
        pytest.param("a" * 64, id="64-chars"),
        pytest.param("3f2504e0-4f89-11d3-9a0c-0305e82c3301", id="uuid"),
        pytest.param("1-67891233-abcdef012345678912345678", id="trace-like"),
        pytest.param("x", id="one-char"),
    ],
)
def test_safe_request_id_is_reused(value: str) -> None:
    assert incident_from_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("<script>alert(1)</script>", id="script"),
        pytest.param("a" * 65, id="65-chars"),
        pytest.param("a b", id="space"),
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
        pytest.param("abc\n", id="trailing-newline"),
        pytest.param("abc\r\nSet-Cookie: x=1", id="header-injection"),
        pytest.param("a~b", id="token-separator"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("a/b", id="slash"),
        pytest.param("a;b", id="semicolon"),
        pytest.param('a"b', id="quote"),
        pytest.param("Root=1-abc", id="equals"),
    ],
)
def test_hostile_request_id_is_replaced(value: str | None) -> None:
    incident = incident_from_request_id(value)
    assert incident != value
    assert INCIDENT_RE.fullmatch(incident)


def test_new_incidents_are_unique_and_safe() -> None:
    ids = {new_incident() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(INCIDENT_RE.fullmatch(i) for i in ids)
    fresh = {incident_from_request_id(None) for _ in range(500)}
    assert len(fresh) == 500


def test_reused_and_fresh_ids_can_be_signed(signer: TokenSigner) -> None:
    for value in ("a" * 64, None, "<bad>"):
        incident = incident_from_request_id(value)
        assert signer.verify(signer.sign(incident, 504, now=NOW), now=NOW).incident == incident


# --------------------------------------------------------------------------- no secret


def test_no_secret_warns_and_still_works(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gracefail"):
        signer = TokenSigner(None, TTL)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "gracefail"
    assert "secret" in warnings[0].getMessage()
    token = signer.sign("inc", 502, now=NOW)
    assert signer.verify(token, now=NOW).incident == "inc"


def test_no_secret_keys_are_random_per_signer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gracefail"):
        first, second = TokenSigner(None, TTL), TokenSigner(None, TTL)
    with pytest.raises(TokenError):
        second.verify(first.sign("inc", 502, now=NOW), now=NOW)


def test_a_secret_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="gracefail"):
        TokenSigner(SECRET, TTL)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- page views


def test_a_request_id_is_shown_but_its_page_view_key_is_the_servers() -> None:
    """Issue 12: a client-chosen X-Request-ID was the key of the page view's beacons, so
    anyone could get a token for someone else's incident and spend its budget."""
    incident, key = page_view("req-123")
    again, other = page_view("req-123")
    assert incident == again == "req-123", "still the id people and logs correlate on"
    assert key != "req-123"
    assert key != other, "two page views of one request id never share a key"
    assert key.startswith("req-123" + VIEW_SEPARATOR)
    assert len(key) == len("req-123") + 1 + VIEW_SUFFIX
    assert split_view(key) == split_view(other) == "req-123"


@pytest.mark.parametrize("request_id", [None, "", "<script>", "a" * 65, "a~b", "a:b"])
def test_without_a_usable_request_id_the_key_is_the_fresh_incident(
    request_id: str | None,
) -> None:
    incident, key = page_view(request_id)
    assert incident == key
    assert INCIDENT_RE.fullmatch(incident)
    assert split_view(key) == incident


@pytest.mark.parametrize(
    "request_id", ["r", "a" * 64, "abc.0123456789abcdef", "3f2504e0-4f89-11d3-9a0c-0305e82c3301"]
)
def test_page_view_keys_are_signed_and_split(signer: TokenSigner, request_id: str) -> None:
    incident, key = page_view(request_id)
    token = signer.sign(key, 502, now=NOW)
    assert re.fullmatch(r"[A-Za-z0-9._~:-]+", token)
    assert token.count("~") == 3
    claims = signer.verify(token, now=NOW)
    assert claims.incident == key
    assert split_view(claims.incident) == incident == request_id


def test_a_bare_token_cannot_be_stretched_to_a_page_view_key(signer: TokenSigner) -> None:
    token = signer.sign("req-1", 502, now=NOW)
    issued, incident, status, mac = token.split("~")
    forged = f"{issued}~{incident}:{'A' * VIEW_SUFFIX}~{status}~{mac}"
    with pytest.raises(TokenError, match="signature"):
        signer.verify(forged, now=NOW)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("1~inc:" + "A" * 15 + "~502~" + "A" * 22, id="suffix-too-short"),
        pytest.param("1~inc:" + "A" * 17 + "~502~" + "A" * 22, id="suffix-too-long"),
        pytest.param("1~inc:" + "A." * 8 + "~502~" + "A" * 22, id="suffix-alphabet"),
        pytest.param("1~:" + "A" * 16 + "~502~" + "A" * 22, id="no-request-id"),
        pytest.param("1~a:b:" + "A" * 16 + "~502~" + "A" * 22, id="two-separators"),
    ],
)
def test_malformed_page_view_keys_are_refused(signer: TokenSigner, token: str) -> None:
    with pytest.raises(TokenError, match="malformed"):
        signer.verify(token, now=NOW)


@pytest.mark.parametrize("key", [b"k", b"x" * 32, b"y" * 64, b"z" * 65, "s\u00e9cret-" * 20])
def test_mac_is_standard_hmac_sha256(key: str | bytes) -> None:
    """The signer's precomputed HMAC states give the bytes of hmac.digest, whatever the
    key's length (keys longer than a block are hashed first, RFC 2104)."""
    import base64
    import hmac

    signer = TokenSigner(key, 60)
    raw = key.encode() if isinstance(key, str) else key
    token = signer.sign("incident-1", 502, now=1_700_000_000)
    message, mac = token.rsplit("~", 1)
    expected = hmac.digest(raw, message.encode(), "sha256")[:16]
    assert mac == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert signer.verify(token, now=1_700_000_001).incident == "incident-1"
