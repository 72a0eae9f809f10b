"""One scenario table, every adapter: the frameworks cannot drift apart.

Each row of DESIGN.md's contract is a :class:`Scenario`; each runs against every
adapter in :data:`harness.ADAPTERS` in process, and the rows marked ``server``
also through the adapter's real server (uvicorn or gunicorn on a free port).
Where a framework cannot do what another does, the adapter's flags in the
harness say so (``app_500``, ``early_page``, ``timeout``), and the row checks
what that framework does instead.
"""

from __future__ import annotations

import http
import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gracefail.events import ClientEvent, ServerEvent
from tests.apps import common
from tests.apps.common import API, BEACON, CURL, NAV, beacon_body, free_port
from tests.conformance.harness import ADAPTERS, Adapter, Client, Result, in_process, real_server
from tests.conftest import require

Check = Callable[[Result, Adapter], None]
EventCheck = Callable[[list[Any], Result, Adapter], None]
FollowUp = Callable[[Client, Result, Adapter], None]
# A real server's recorder writes every 0.2 s: what it has not written this long after a
# request, it did not record.
SETTLE = 0.5
STATUS_PAGE = "https://status.example.com"
UPSTREAM = ("upstream-502", "upstream-504", "timeout", "connection-refused", "httpx-connect",
            "httpx-read-timeout", "protocol", "status-503", "chained")  # fmt: skip
CAUSES = {
    "upstream-502": (502, "upstream_error"),
    "upstream-504": (504, "upstream_error"),
    "timeout": (504, "timeout"),
    "connection-refused": (502, "connection"),
    "httpx-connect": (502, "connection"),
    "httpx-read-timeout": (504, "timeout"),
    "protocol": (502, "protocol"),
    "status-503": (502, "upstream_status"),
    "chained": (502, "connection"),
}
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "json": "application/problem+json",
    "text": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class Scenario:
    id: str
    method: str
    path: str
    headers: dict[str, str]
    check: Check
    events: EventCheck
    content: bytes | None = None
    options: dict[str, Any] = field(default_factory=dict)
    server: bool = False  # also run through the real server
    applies: Callable[[Adapter], bool] = lambda adapter: True
    follow_up: FollowUp | None = None  # further requests once the row's checks passed


# -- expectations ---------------------------------------------------------------------------


def _server_events(events: list[Any]) -> list[ServerEvent]:
    return [e for e in events if isinstance(e, ServerEvent)]


def page(
    status: int,
    cause: str,
    kind: str = "html",
    route: bool = True,
    debug: bool = False,
    method: str = "GET",
) -> tuple[Check, EventCheck]:
    """gracefail's reply: headers of the contract, body of ``kind``, one event."""

    def check(result: Result, adapter: Adapter) -> None:
        assert result.raised is None, f"{adapter.id} raised {result.raised!r}"
        assert result.status == status
        headers = result.headers
        assert headers["content-type"] == CONTENT_TYPES[kind]
        assert headers["cache-control"] == "no-store"
        assert headers["retry-after"] == "5"
        assert headers["vary"] == "Accept, Accept-Language, Accept-Encoding"
        assert result.incident
        if kind == "html" and result.body:
            csp = headers["content-security-policy"]
            assert "default-src 'none'" in csp
            assert "script-src 'sha256-" in csp, "the inline script is allowed by its hash"
            assert "connect-src 'self'" in csp, "the probes and beacons go to this origin"
            assert result.incident in result.text
            assert len(result.body) < 16 * 1024
        if kind == "json":
            body = json.loads(result.body)
            assert (body["status"], body["incident"]) == (status, result.incident)
            assert body["title"] == http.HTTPStatus(status).phrase
            assert body["retry_after"] == 5
            assert {"type", "title", "detail", "instance", "status_page"} <= set(body)
            assert debug or "payments" not in result.text, "upstream names stay hidden"
        if kind == "text":
            assert result.text.startswith(f"{status} ")
            assert len(result.text.splitlines()) < 10, "a few lines for a terminal"

    def events(found: list[Any], result: Result, adapter: Adapter) -> None:
        mine = [e for e in _server_events(found) if e.incident == result.incident]
        assert len(mine) == 1
        [event] = mine
        assert (event.status, event.cause, event.reply_format) == (status, cause, kind)
        assert (event.method, event.probe) == (method, False)
        if route:
            assert event.route == adapter.route

    return check, events


def untouched(status: int, text: str, cookie: bool = False) -> tuple[Check, EventCheck]:
    """The app's own response, exactly."""

    def check(result: Result, adapter: Adapter) -> None:
        assert result.raised is None, f"{adapter.id} raised {result.raised!r}"
        assert result.status == status
        assert result.incident is None
        assert text in result.text
        if cookie:
            assert "session=abc" in result.headers["set-cookie"]

    return check, no_events


def no_events(found: list[Any], result: Result, adapter: Adapter) -> None:
    assert _server_events(found) == []


def not_ours(raised: type[BaseException]) -> Check:
    """A non-upstream error: the app's own 500 page, or the exception leaves the stack."""

    def check(result: Result, adapter: Adapter) -> None:
        if result.raised is not None:
            assert not adapter.app_500, f"{adapter.id} should have answered with its 500 page"
            assert type(result.raised) is raised
            return
        assert result.status == 500
        assert result.incident is None
        if adapter.app_500:
            assert common.APP_500 in result.text

    return check


def replaced(status: int, kind: str = "html") -> tuple[Check, EventCheck]:
    """The app's own 502/504 with gracefail's body; the app's cookie kept."""
    check_page, events = page(status, "app_response", kind, route=False)

    def check(result: Result, adapter: Adapter) -> None:
        check_page(result, adapter)
        assert "app said" not in result.text
        assert "session=abc" in result.headers["set-cookie"]
        assert int(result.headers["content-length"]) == len(result.body)

    return check, events


def _also(base: tuple[Check, EventCheck], extra: Check) -> tuple[Check, EventCheck]:
    def check(result: Result, adapter: Adapter) -> None:
        base[0](result, adapter)
        extra(result, adapter)

    return check, base[1]


def beacon(status: int) -> tuple[Check, EventCheck]:
    def check(result: Result, adapter: Adapter) -> None:
        assert result.raised is None
        assert result.status == status
        assert result.headers["cache-control"] == "no-store"
        if status != 204:
            assert result.text.strip(), "a refusal says why"

    def events(found: list[Any], result: Result, adapter: Adapter) -> None:
        if status == 204:
            assert [(type(e), e.incident, e.kind, e.elapsed_ms, e.status) for e in found] == [
                (ClientEvent, "incident-1", "recovered", 1200, 502)
            ]
        else:
            assert found == [], "a refused beacon records nothing"

    return check, events


# -- the table ------------------------------------------------------------------------------


def _scenarios() -> Iterator[Scenario]:
    for kind in UPSTREAM:
        status, cause = CAUSES[kind]
        yield Scenario(
            f"nav-{kind}", "GET", f"/fail/{kind}", NAV, *page(status, cause),
            server=kind == "connection-refused",
        )  # fmt: skip
    for coding in ("gzip", "br"):
        yield Scenario(f"nav-{coding}", "GET", "/fail/connection-refused",
                       {**NAV, "accept-encoding": f"{coding}, deflate"},
                       *_also(page(502, "connection"), _encoded(coding)),
                       server=True)  # fmt: skip
    yield Scenario("json-upstream-504", "GET", "/fail/upstream-504", API,
                   *page(504, "upstream_error", "json"), server=True)  # fmt: skip
    yield Scenario("curl-connection", "GET", "/fail/connection-refused", CURL,
                   *_also(page(502, "connection", "text"), _status_page),
                   options={"status_page_url": STATUS_PAGE})  # fmt: skip
    yield Scenario("head", "HEAD", "/fail/connection-refused", NAV,
                   *_also(page(502, "connection", method="HEAD"), _empty_with_length),
                   server=True, follow_up=_head_matches_get)  # fmt: skip
    yield Scenario("post", "POST", "/fail/upstream-502", NAV,
                   *_also(page(502, "upstream_error", method="POST"), _unsafe_page),
                   content=b"q=1")  # fmt: skip
    yield Scenario("debug-detail", "GET", "/fail/upstream-504", API,
                   *_also(page(504, "upstream_error", "json", debug=True), _debug_detail),
                   options={"debug": True})  # fmt: skip
    yield Scenario("probe", "GET", "/fail/upstream-502", {**API, "x-gracefail-probe": "1"},
                   page(502, "upstream_error", "json")[0], _probe_event)  # fmt: skip
    yield Scenario("request-id", "GET", "/fail/upstream-502",
                   {**CURL, "x-request-id": "req-123.abc_D"},
                   *_also(page(502, "upstream_error", "text"), _request_id))  # fmt: skip
    yield Scenario("request-id-unsafe", "GET", "/fail/upstream-502",
                   {**CURL, "x-request-id": "<script>x</script>"},
                   *_also(page(502, "upstream_error", "text"), _unsafe_request_id))  # fmt: skip
    yield Scenario("happy", "GET", "/ok", NAV, *untouched(200, "hello"), server=True)
    yield Scenario("no-route-404", "GET", "/nothing", API, *untouched(404, ""))
    yield Scenario("app-502-nav", "GET", "/app-status/502", NAV, *replaced(502), server=True)
    yield Scenario("app-504-nav-streamed", "GET", "/app-status/504?stream=1", NAV, *replaced(504))
    yield Scenario("app-502-api", "GET", "/app-status/502", API,
                   *untouched(502, "app said 502", cookie=True), server=True)  # fmt: skip
    yield Scenario("app-504-api-replaced", "GET", "/app-status/504", API,
                   *replaced(504, "json"), options={"replace_api_responses": True})  # fmt: skip
    yield Scenario("app-500-nav", "GET", "/app-status/500", NAV, *untouched(500, "app said 500"))
    yield Scenario("app-500-nav-streamed", "GET", "/app-status/500?stream=1", NAV,
                   *untouched(500, "app said 500, in two parts"))  # fmt: skip
    yield Scenario("app-503-nav", "GET", "/app-status/503", NAV, *untouched(503, "app said 503"))
    yield Scenario("bug", "GET", "/fail/bug", NAV, not_ours(KeyError), no_events, server=True)
    yield Scenario("client-404-is-not-upstream", "GET", "/fail/client-404", NAV,
                   not_ours(httpx.HTTPStatusError), no_events)  # fmt: skip
    yield Scenario("app-handles-its-own", "GET", "/handled", NAV,
                   *untouched(418, common.HANDLED))  # fmt: skip
    yield Scenario("streaming", "GET", "/stream", NAV,
                   *untouched(200, "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"))  # fmt: skip
    yield Scenario("failure-after-start", "GET", "/late", NAV, _late, no_events)
    yield Scenario("failure-before-first-chunk", "GET", "/early", NAV, _early, _early_events)
    yield Scenario("timeout", "GET", "/slow", NAV, *page(504, "app_timeout", route=False),
                   options={"timeout": 0.3}, applies=lambda a: a.timeout)  # fmt: skip
    foreign = {"content-type": "text/plain", "origin": "https://evil.example"}
    beacons = [
        ("valid", "POST", beacon_body("recovered"), BEACON, 204),
        ("get", "GET", None, {}, 405),
        ("too-large", "POST", b"x" * 5000, BEACON, 413),
        ("not-json", "POST", b"{nope", BEACON, 400),
        ("not-object", "POST", b"[]", BEACON, 400),
        ("unknown-kind", "POST", beacon_body("exploded"), BEACON, 400),
        ("extra-key", "POST", beacon_body(extra_key=1), BEACON, 400),
        ("forged", "POST", beacon_body(token="1~x~502~" + "A" * 22), BEACON, 403),
        ("cross-site", "POST", beacon_body(), {**BEACON, "sec-fetch-site": "cross-site"}, 403),
        ("foreign-origin", "POST", beacon_body(), foreign, 403),
        ("content-type", "POST", beacon_body(), {"content-type": "image/png"}, 415),
        # Issue 12: 4 KB of brackets made json.loads recurse out (500 everywhere).
        ("nested", "POST", b"[" * 2000 + b"]" * 2000, BEACON, 400),
        # A Content-Length that is not a number is a bad request, whatever the method
        # (the non-ASCII digits of issue 12 are in tests/test_trust_content_length.py:
        # httpx's WSGI transport cannot carry them).
        ("bad-length", "GET", None, {"content-length": "12abc"}, 400),
        ("bad-length-post", "POST", None, {**BEACON, "content-length": "0x10"}, 400),
    ]
    for name, method, body, headers, status in beacons:
        yield Scenario(
            f"beacon-{name}", method, "/_gracefail/beacon", headers, *beacon(status),
            content=body, server=name in ("valid", "get"),
        )  # fmt: skip
    # Issue 11: the service worker's files, answered before the app; off (the default), the
    # worker that removes itself, and no pages.
    on = {"service_worker": True}
    yield Scenario("worker-on", "GET", "/_gracefail/sw.js", NAV, *worker_file("on"),
                   options=on)  # fmt: skip
    yield Scenario("worker-off", "GET", "/_gracefail/sw.js", NAV, *worker_file("off"),
                   server=True)  # fmt: skip
    yield Scenario("worker-register", "GET", "/_gracefail/register.js", NAV,
                   *worker_file("register"), options=on)  # fmt: skip
    yield Scenario("worker-pages", "GET", "/_gracefail/sw-pages.json",
                   {"accept-language": "es-ES,es;q=0.9"}, *worker_file("pages"),
                   options=on)  # fmt: skip
    yield Scenario("worker-pages-off", "GET", "/_gracefail/sw-pages.json", API,
                   *untouched(404, ""))  # fmt: skip
    yield Scenario("worker-post", "POST", "/_gracefail/sw.js", API, *worker_file("post"),
                   options=on, content=b"x")  # fmt: skip


def worker_file(kind: str) -> tuple[Check, EventCheck]:
    """One of the service worker's files (``on``/``off``: sw.js; ``register``; ``pages``)
    or a method they refuse (``post``)."""

    def check(result: Result, adapter: Adapter) -> None:
        assert result.raised is None, f"{adapter.id} raised {result.raised!r}"
        headers = result.headers
        if kind == "post":
            assert result.status == 405
            assert headers["allow"] == "GET, HEAD"
            return
        assert result.status == 200
        assert headers["x-content-type-options"] == "nosniff"
        assert int(headers["content-length"]) == len(result.body)
        if kind == "pages":
            assert headers["content-type"] == "application/json"
            assert headers["cache-control"] == "no-store"
            pages = json.loads(result.body)
            assert pages["locale"] == "es"
            assert set(pages["pages"]) == {"502", "504"}
            return
        assert headers["content-type"] == "text/javascript; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert result.text.startswith("var SETTINGS=")
        assert ('"enabled":true' in result.text) == (kind != "off")
        if kind != "register":
            assert headers["service-worker-allowed"] == "/"

    return check, no_events


def _encoded(coding: str) -> Check:
    """The page in the coding the client asked for (the client decodes it: the body
    checks of ``page`` then read the page itself)."""

    def check(result: Result, adapter: Adapter) -> None:
        if coding == "br":
            require(
                importlib.util.find_spec("brotli") is not None,
                "brotli",
                'pip install "gracefail[brotli]"',
            )
        assert result.headers["content-encoding"] == coding
        assert result.body.startswith(b"<!doctype html>")

    return check


def _empty_with_length(result: Result, adapter: Adapter) -> None:
    assert result.body == b""
    assert int(result.headers["content-length"]) > 1000, "HEAD: the GET's length, no body"


def _head_matches_get(client: Client, head: Result, adapter: Adapter) -> None:
    """HEAD answers the GET's headers: the same type and length, with no body."""
    get = client.request("GET", "/fail/connection-refused", NAV)
    assert get.status == head.status
    assert get.headers["content-type"] == head.headers["content-type"]
    assert get.headers["content-length"] == head.headers["content-length"]
    assert len(get.body) == int(get.headers["content-length"])


def _status_page(result: Result, adapter: Adapter) -> None:
    assert STATUS_PAGE in result.text


def _unsafe_page(result: Result, adapter: Adapter) -> None:
    assert '"safe":false' in result.text
    assert 'http-equiv="refresh"' not in result.text, "never refresh a POST"


def _debug_detail(result: Result, adapter: Adapter) -> None:
    assert "payments" in json.loads(result.body)["debug_detail"]


def _request_id(result: Result, adapter: Adapter) -> None:
    assert result.incident == "req-123.abc_D"


def _unsafe_request_id(result: Result, adapter: Adapter) -> None:
    """A request id that could carry markup is not reused as the incident id."""
    assert result.incident
    assert "<" not in result.incident
    assert "<script>" not in result.text


def _probe_event(found: list[Any], result: Result, adapter: Adapter) -> None:
    [event] = _server_events(found)
    assert (event.probe, event.reply_format) == (True, "json")


def _late(result: Result, adapter: Adapter) -> None:
    """Headers went out: the exception propagates; never a second response."""
    if result.raised is not None:
        assert type(result.raised) is ConnectionResetError
        return
    assert result.status == 200
    assert result.incident is None
    assert result.text.startswith("first chunk")


def _early(result: Result, adapter: Adapter) -> None:
    if adapter.early_page:
        page(502, "connection", route=False)[0](result, adapter)
        return
    # The framework sent its response start before iterating the body.
    assert result.incident is None
    assert result.raised is not None or result.status in (200, 500)


def _early_events(found: list[Any], result: Result, adapter: Adapter) -> None:
    if adapter.early_page:
        page(502, "connection", route=False)[1](found, result, adapter)
        assert [e.route for e in found] == [None if adapter.route is None else "/early"]
    else:
        no_events(found, result, adapter)


SCENARIOS = list(_scenarios())


# -- running it -----------------------------------------------------------------------------


def _run(client: Client, scenario: Scenario, adapter: Adapter, server: bool) -> None:
    # A real server's log holds every earlier row's events: this row's are those after it.
    before = len(client.events(lambda found: True)) if server else 0
    result = client.request(scenario.method, scenario.path, scenario.headers, scenario.content)
    scenario.check(result, adapter)
    if scenario.follow_up is not None:
        scenario.follow_up(client, result, adapter)
    if not server:
        scenario.events(client.events(), result, adapter)
        return
    # A real server records a moment later. Wait until the row's event check holds on what
    # came since, and not before SETTLE: a row that expects no event (or exactly one) has
    # then given any other event the time to show up, so its check can fail.
    settled = time.monotonic() + SETTLE

    def holds(found: list[Any]) -> bool:
        if time.monotonic() < settled:
            return False
        try:
            scenario.events(found[before:], result, adapter)
        except AssertionError:
            return False
        return True

    scenario.events(client.events(holds)[before:], result, adapter)


@pytest.mark.parametrize(
    ("adapter", "scenario"),
    [
        pytest.param(a, s, id=f"{a.id}-{s.id}", marks=a.param().marks)
        for a in ADAPTERS
        for s in SCENARIOS
        if s.applies(a)
    ],
)
def test_in_process(adapter: Adapter, scenario: Scenario) -> None:
    with in_process(adapter, **scenario.options) as client:
        _run(client, scenario, adapter, server=False)


@pytest.fixture(scope="module", params=[a.param() for a in ADAPTERS if a.server])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Adapter, Client]]:
    adapter: Adapter = request.param
    events_file = tmp_path_factory.mktemp(adapter.id) / "events.jsonl"
    with real_server(adapter, free_port(), events_file) as client:
        yield adapter, client


@pytest.mark.server
@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.id) for s in SCENARIOS if s.server])
def test_real_server(served: tuple[Adapter, Client], scenario: Scenario) -> None:
    adapter, client = served
    _run(client, scenario, adapter, server=True)


@pytest.mark.server
def test_real_server_streams_unbuffered(served: tuple[Adapter, Client], tmp_path: Path) -> None:
    """The first chunk reaches the client while the app still holds the rest."""
    _, client = served
    gate = tmp_path / "gate"
    http = client.http  # type: ignore[attr-defined]
    with http.stream("GET", "/stream", params={"gate": str(gate)}, headers=NAV) as response:
        assert response.status_code == 200
        parts = response.iter_raw()
        first = next(parts)
        assert first.startswith(b"chunk-0;")
        assert b"chunk-1" not in first
        gate.touch()
        rest = b"".join(parts)
    assert (first + rest).decode() == "".join(f"chunk-{i};" for i in range(common.STREAM_CHUNKS))
