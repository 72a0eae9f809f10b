"""WebhookRecorder against a real HTTP receiver (``http.server`` on 127.0.0.1, never a mock):
a 1,000-event burst with transient failures arrives whole, signed; 4xx is counted, not
retried; 429 and 5xx are retried with backoff; a receiver that is down is backed off; the
PostHog and Segment shapes; bad options fail at start-up."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gracefail import Config, __version__
from gracefail.classify import Failure
from gracefail.core import Engine, RequestView
from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders import WebhookRecorder
from gracefail.recorders.webhook import (
    EVENT_NAMES,
    WebhookError,
    WebhookRejected,
    sign,
    verify_signature,
)

SECRET = "webhook-secret-0123456789"
FAST = {"retry_first": 0.01, "retry_cap": 0.05}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool
    at: float


@dataclass
class Receiver:
    """A real HTTP server on a loopback port that keeps what it is sent.

    ``plan`` holds the statuses to answer the next requests with (then 200), each
    optionally ``(status, retry_after)``."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    plan: list[int | tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON line of the accepted (2xx) jsonl requests."""
        with self.lock:
            bodies = [r.body for r in self.received if r.headers.get("x-answer") == "200"]
        return [json.loads(line) for body in bodies for line in body.splitlines()]


def make_receiver() -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
        disable_nagle_algorithm = True  # headers and body go out as they are written

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver = holder["r"]
            with receiver.lock:
                step = receiver.plan.pop(0) if receiver.plan else 200
                status, retry_after = step if isinstance(step, tuple) else (step, None)
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["x-answer"] = str(status)
                signed = verify_signature(SECRET, self.headers.get("X-Gracefail-Signature"), body)
                receiver.received.append(Received(self.path, headers, body, signed, time.time()))
            answer = b'{"status": "ok"}' if status < 300 else b'{"error": "no"}'
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = Receiver(server)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return holder["r"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = make_receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Any]:
    """``webhook(url, **options)``: a WebhookRecorder, closed at the end of the test."""
    made: list[WebhookRecorder] = []

    def factory(url: str, **options: Any) -> WebhookRecorder:
        recorder = WebhookRecorder(url, **options)
        made.append(recorder)
        return recorder

    yield factory
    for recorder in made:
        recorder.close()


@pytest.fixture
def request_closing() -> Iterator[Any]:
    """``request_closing(recorder)``: close it at the end of the test."""
    made: list[WebhookRecorder] = []
    yield made.append
    for recorder in made:
        recorder.close()


def failure(n: int, *, probe: bool = False, route: str | None = "/items/{id}") -> ServerEvent:
    return ServerEvent(
        time=1714557600.0 + n, incident=f"inc-{n}", status=502, cause="connection",
        method="GET", route=route, reply_format="html", probe=probe, upstream="inventory",
        error_type="httpx.ConnectError", app_ms=12.5,
    )  # fmt: skip


def page(n: int, kind: str = "recovered", attempt: int = 2) -> ClientEvent:
    return ClientEvent(1714557601.0 + n, f"inc-{n}", kind, attempt, 12_340, "en")


def burst(count: int) -> list[Event]:
    events: list[Event] = []
    for n in range(count // 2):
        events += [failure(n), page(n, "shown", 0)]
    return events


# -- delivery --------------------------------------------------------------------------------


def test_a_burst_of_1000_events_arrives_whole(receiver: Receiver, webhook: Any) -> None:
    """Through the real pipeline, with the receiver failing now and then: none is lost."""
    receiver.plan = [503, 200, (429, "0"), 500]
    recorder = webhook(receiver.url + "/hooks/gracefail", secret=SECRET, **FAST)
    pipeline = Pipeline([recorder], maxsize=10_000)
    events = burst(1000)
    for event in events:
        pipeline.put(event)
    assert pipeline.flush(timeout=30)
    pipeline.close()

    [counts] = pipeline.counts()
    assert (counts.delivered, counts.dropped, counts.failed, counts.shutdown) == (1000, 0, 0, 0)
    assert recorder.counts().sent == 1000
    assert recorder.counts().retries == 3
    lines = receiver.lines()
    assert len(lines) == 1000
    sent = {(line["event"], line["incident"], line.get("kind")) for line in lines}
    assert len(sent) == 1000, "each event once"
    assert all(r.signed for r in receiver.received), "every request signed with the secret"
    assert {r.path for r in receiver.received} == {"/hooks/gracefail"}
    # A retried batch keeps its delivery id, so a receiver can tell a repeat.
    ids = [r.headers["x-gracefail-delivery"] for r in receiver.received]
    assert ids[0] == ids[1], "the batch that got 503 was retried under the same id"


def test_jsonl_lines_are_the_events(receiver: Receiver, webhook: Any) -> None:
    recorder = webhook(receiver.url, secret=SECRET, **FAST)
    recorder.record([failure(1), failure(2, probe=True), page(1)])
    recorder.close()
    [request] = receiver.received
    assert request.headers["content-type"] == "application/x-ndjson"
    assert request.headers["user-agent"].startswith("gracefail/")
    first, probe, beacon = (json.loads(line) for line in request.body.splitlines())
    assert first == {
        "event": "failure", "time": 1714557601.0, "incident": "inc-1", "status": 502,
        "cause": "connection", "method": "GET", "route": "/items/{id}", "reply_format": "html",
        "probe": False, "upstream": "inventory", "error_type": "httpx.ConnectError",
        "app_ms": 12.5, "source": "app",
    }  # fmt: skip
    assert probe["probe"] is True, "your own receiver gets the probes too"
    assert beacon["event"] == "page"
    assert (beacon["kind"], beacon["elapsed_ms"]) == ("recovered", 12_340)


def test_the_signature_checks_body_secret_and_age() -> None:
    body = b'{"event":"page"}\n'
    now = 1714557600
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, header, body, now=now + 10)
    assert not verify_signature(SECRET, header, body + b" ", now=now)
    assert not verify_signature("another-secret-0123456789", header, body, now=now)
    assert not verify_signature(SECRET, header, body, now=now + 301), "a replay, too old"
    assert not verify_signature(SECRET, None, body)
    assert not verify_signature(SECRET, "t=soon,v1=00", body)
    rotated = f"{header},v1={'0' * 64}"
    assert verify_signature(SECRET, rotated, body, now=now), "any of several v1 may match"


def test_a_4xx_is_counted_not_retried(receiver: Receiver, webhook: Any) -> None:
    receiver.plan = [400, 400]
    recorder = webhook(receiver.url, secret=SECRET, retries=5, **FAST)
    with pytest.raises(WebhookRejected, match="answered 400") as caught:
        recorder.record(burst(10))
    assert caught.value.status == 400
    assert len(receiver.received) == 1, "one request: a rejected batch is not sent again"
    assert recorder.counts().rejected == 10
    # Through the pipeline, the batch is counted as failed; the recorder carries on.
    pipeline = Pipeline([recorder], maxsize=100)
    for event in burst(6):
        pipeline.put(event)
    pipeline.flush(timeout=10)
    for event in burst(4):
        pipeline.put(event)
    pipeline.close()
    [counts] = pipeline.counts()
    assert (counts.failed, counts.delivered) == (6, 4)
    assert len(receiver.received) == 3
    assert recorder.counts().rejected == 16


def test_429_waits_as_long_as_retry_after_says(receiver: Receiver, webhook: Any) -> None:
    receiver.plan = [(429, "0.4")]
    recorder = webhook(receiver.url, secret=SECRET, retry_first=0.01, retry_cap=2.0)
    recorder.record(burst(2))
    first, second = receiver.received
    assert second.at - first.at >= 0.38
    assert recorder.counts().sent == 2


def test_retry_after_is_capped(receiver: Receiver, webhook: Any) -> None:
    receiver.plan = [(503, "3600")]
    recorder = webhook(receiver.url, secret=SECRET, retry_first=0.01, retry_cap=0.2)
    started = time.monotonic()
    recorder.record(burst(2))
    assert time.monotonic() - started < 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_receiver_that_is_down_is_backed_off(webhook: Any) -> None:
    recorder = webhook(
        f"http://127.0.0.1:{free_port()}/x", secret=SECRET, retries=2, retry_first=0.01,
        retry_cap=5.0, timeout=1.0,
    )  # fmt: skip
    with pytest.raises(WebhookError, match=r"ConnectionRefusedError.*after 3 attempts"):
        recorder.record(burst(4))
    started = time.monotonic()
    with pytest.raises(WebhookError, match="failed recently"):
        recorder.record(burst(6))
    assert time.monotonic() - started < 0.1, "refused at once, no connection attempted"
    counts = recorder.counts()
    assert (counts.failed, counts.sent, counts.requests, counts.retries) == (10, 0, 3, 2)


def test_close_ends_a_wait_between_attempts(receiver: Receiver, webhook: Any) -> None:
    receiver.plan = [503] * 10
    recorder = webhook(receiver.url, secret=SECRET, retry_first=10.0, retry_cap=10.0)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            recorder.record(burst(2))
        except WebhookError as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    recorder.close()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3
    assert len(errors) == 1
    assert recorder.counts().failed == 2


def test_a_big_batch_is_split(receiver: Receiver, webhook: Any) -> None:
    recorder = webhook(receiver.url, secret=SECRET, max_bytes=4096, **FAST)
    recorder.record(burst(200))
    assert len(receiver.received) > 5
    assert all(len(r.body) <= 4096 for r in receiver.received)
    assert len(receiver.lines()) == 200


def test_failures_the_app_serves_reach_the_receiver(receiver: Receiver, webhook: Any) -> None:
    """End to end: the engine serves a failure, the pipeline hands it to the webhook."""
    engine = Engine(
        Config(secret=SECRET, recorders=[webhook(receiver.url, secret=SECRET, **FAST)]),
        testing=False,
    )
    view = RequestView("GET", "/items/7", headers={"accept": "text/html"}, route="/items/{id}")
    reply = engine.serve(Failure(504, "timeout"), view)
    assert reply.status == 504
    assert engine.flush()
    engine.close()
    [line] = receiver.lines()
    assert (line["event"], line["status"], line["route"]) == ("failure", 504, "/items/{id}")
    assert line["incident"] == {k.lower(): v for k, v in reply.headers}["x-gracefail-incident"]


# -- PostHog and Segment ---------------------------------------------------------------------


def test_posthog_batch_capture_shape(receiver: Receiver, request_closing: Any) -> None:
    recorder = WebhookRecorder.posthog("phc_test_key", host=receiver.url + "/", **FAST)
    request_closing(recorder)
    assert repr(recorder) == f"WebhookRecorder(posthog to {receiver.url}/batch/)"
    recorder.record([failure(1), failure(2, probe=True), page(1, "shown", 0), page(1)])
    recorder.record([page(1)])  # the same beacon again (another instance's copy)
    first, again = receiver.received
    assert first.path == "/batch/"
    assert first.headers["content-type"] == "application/json"
    assert not first.signed, "no secret given: nothing to sign"
    body = json.loads(first.body)
    assert (body["api_key"], body["historical_migration"]) == ("phc_test_key", False)
    served, shown, recovered = body["batch"]  # the probe is left out
    assert served == {
        "event": EVENT_NAMES["failure"],
        "distinct_id": "inc-1",
        "timestamp": "2024-05-01T10:00:01.000Z",
        "uuid": served["uuid"],
        "properties": {
            "$process_person_profile": False, "gracefail_event": "failure", "status": 502,
            "cause": "connection", "route": "/items/{id}", "method": "GET", "source": "app",
            "reply_format": "html", "app_ms": 12.5,
        },
    }  # fmt: skip
    assert "upstream" not in json.dumps(body), "no upstream names to a third party"
    assert shown["event"] == "Recovery Page Shown"
    assert recovered["properties"]["time_to_recovery_s"] == 12.34
    assert json.loads(again.body)["batch"][0]["uuid"] == recovered["uuid"], "same beacon, same id"
    assert recorder.counts().skipped == 1


def test_segment_batch_shape(receiver: Receiver, request_closing: Any) -> None:
    recorder = WebhookRecorder.segment("seg-write-key", host=receiver.url, secret=SECRET, **FAST)
    request_closing(recorder)
    recorder.record([failure(3, route=None), page(3, "gave_up", 9)])
    [request] = receiver.received
    assert request.path == "/v1/batch"
    assert request.signed
    expected = base64.b64encode(b"seg-write-key:").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    body = json.loads(request.body)
    assert body["sentAt"].endswith("Z")
    served, gave_up = body["batch"]
    assert served["type"] == gave_up["type"] == "track"
    assert served["event"] == "Upstream Failure Served"
    assert served["anonymousId"] == gave_up["anonymousId"] == "inc-3"
    assert served["properties"]["route"] == "unknown"
    assert served["context"] == {"library": {"name": "gracefail", "version": __version__}}
    assert gave_up["event"] == "Recovery Page Gave Up"
    assert gave_up["messageId"] != served["messageId"]
    assert gave_up["timestamp"] == "2024-05-01T10:00:04.000Z"


# -- bad options fail at start-up ------------------------------------------------------------

HTTP_URL = "expected an http:// or https://"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"url": "ftp://hooks.example.com/x"}, HTTP_URL, id="ftp"),
        pytest.param({"url": "hooks.example.com/x"}, HTTP_URL, id="no-scheme"),
        pytest.param({"url": "http://"}, HTTP_URL, id="no-host"),
        pytest.param({"url": ""}, HTTP_URL, id="empty"),
        pytest.param({"url": None}, HTTP_URL, id="none"),
        pytest.param({"url": "http://h .example/x"}, HTTP_URL, id="space"),
        pytest.param({"url": "http://h.example/x\r\nX: y"}, "expected an http", id="crlf"),
        pytest.param({"url": "http://h.example:99999/"}, "port is not a number", id="port"),
        pytest.param({"url": "https://u:p@h.example/"}, "not in the URL", id="credentials"),
        pytest.param({"url": "https://h.example/#x"}, "fragment", id="fragment"),
        pytest.param({"payload": "xml"}, "payload='xml' is not valid", id="payload"),
        pytest.param({"secret": None}, "needs secret= for payload='jsonl'", id="no-secret"),
        pytest.param({"secret": "short"}, "at least 16 characters", id="short-secret"),
        pytest.param({"payload": "posthog"}, "needs api_key=", id="posthog-no-key"),
        pytest.param({"timeout": 0}, "timeout=0 is not valid", id="timeout"),
        pytest.param({"retries": -1}, "retries=-1 is not valid", id="retries"),
        pytest.param({"headers": {"X-A": "b\r\nc"}}, "cannot hold CR", id="header-crlf"),
        pytest.param({"headers": {"Content-Type": "x"}}, "sets this header", id="own-header"),
    ],
)
def test_bad_options_fail_at_start_up(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"url": "https://hooks.example.com/gracefail", "secret": SECRET}
    arguments.update(options)
    url = arguments.pop("url")
    with pytest.raises(ValueError, match=message) as caught:
        WebhookRecorder(url, **arguments)
    assert str(caught.value).startswith("gracefail: WebhookRecorder")


def test_a_good_recorder_is_a_valid_config_recorder() -> None:
    recorder = WebhookRecorder("https://hooks.example.com/g?token=abc", secret=SECRET)
    assert repr(recorder) == "WebhookRecorder(jsonl to https://hooks.example.com/g)"
    assert Config(secret=SECRET, recorders=[recorder]).recorders == [recorder]
