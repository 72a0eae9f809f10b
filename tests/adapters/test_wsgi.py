"""The WSGI middleware against PEP 3333 itself: what a strict server would see.

The conformance suite covers the contract through Werkzeug and real gunicorn;
these tests drive the middleware with hand-written apps and servers to pin the
protocol details (start_response timing, exc_info, write(), close(), wsgi.input).
"""

from __future__ import annotations

import io
import json
import sys
import wsgiref.validate
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from gracefail import ConfigError, UpstreamError
from gracefail.classify import Failure
from gracefail.core import OWNER as MARKER
from gracefail.events import ClientEvent, ServerEvent
from gracefail.tokens import TokenSigner
from gracefail.wsgi import FAILED, GracefailMiddleware
from tests.apps.common import SECRET, ListRecorder

pytestmark = pytest.mark.wsgi

NAV = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
StartResponse = Callable[..., Any]


def environ(
    path: str = "/", method: str = "GET", accept: str = NAV, **extra: Any
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "HTTP_ACCEPT": accept,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    env.update(extra)
    return env


class Server:
    """A strict PEP 3333 server: headers go out with the first non-empty chunk."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False
        self.calls: list[tuple[str, Any]] = []
        self.body: list[bytes] = []

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        self.calls.append((status, exc_info))
        if exc_info is not None:
            if self.sent:
                raise exc_info[1].with_traceback(exc_info[2])
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        assert self.status is not None, "write() before start_response"
        if data:
            self.sent = True
        self.body.append(data)

    def run(self, app: Any, env: dict[str, Any]) -> bytes:
        result = app(env, self.start_response)
        try:
            for chunk in result:
                assert self.status is not None, "a body chunk before start_response"
                self.write(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return b"".join(self.body)

    @property
    def header(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers}


class Body:
    """An app iterable that records whether it was closed and how far it was read."""

    def __init__(self, chunks: Iterable[bytes | BaseException]) -> None:
        self.chunks = list(chunks)
        self.produced = 0
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if isinstance(chunk, BaseException):
                raise chunk
            self.produced += 1
            yield chunk

    def close(self) -> None:
        self.closed += 1


def app_with(status: str, body: Body, headers: list[tuple[str, str]] | None = None) -> Any:
    def app(env: dict[str, Any], start_response: StartResponse) -> Body:
        start_response(status, headers or [("Content-Type", "text/plain")])
        return body

    return app


def wrap(app: Any, **options: Any) -> tuple[GracefailMiddleware, ListRecorder]:
    recorder = ListRecorder()
    return GracefailMiddleware(app, secret=SECRET, recorders=[recorder], **options), recorder


def server_events(mw: GracefailMiddleware, recorder: ListRecorder) -> list[ServerEvent]:
    mw.engine.flush()
    return [e for e in recorder.events if isinstance(e, ServerEvent)]


# -- PEP 3333 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "chunks", "expected"),
    [
        pytest.param("200 OK", [b"hello"], "200", id="happy"),
        pytest.param("502 Bad Gateway", [b"app"], "502", id="app-502-replaced"),
        pytest.param("200 OK", [UpstreamError(504)], "504", id="failure-before-body"),
        pytest.param("500 Internal Server Error", [b"oops"], "500", id="app-500"),
    ],
)
def test_passes_wsgiref_validator(status: str, chunks: list[Any], expected: str) -> None:
    """wsgiref's validator checks both sides of the middleware against PEP 3333."""
    body = Body(chunks)
    inner = wsgiref.validate.validator(app_with(status, body))
    mw, _ = wrap(inner)
    server = Server()
    server.run(wsgiref.validate.validator(mw), environ())
    assert server.status is not None
    assert server.status.startswith(expected)
    assert body.closed == 1


def test_body_is_never_buffered() -> None:
    produced: list[int] = []

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for index in range(100):
            produced.append(index)
            yield b"x" * 10

    mw, _ = wrap(app)
    server = Server()
    result = mw(environ(), server.start_response)
    for received, _chunk in enumerate(result, 1):
        assert len(produced) == received, "the app ran ahead of what the server received"
    assert len(produced) == 100


def test_start_response_inside_the_generator() -> None:
    """A generator app calls start_response on its first next(): still watched."""

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("504 Gateway Timeout", [("Set-Cookie", "a=1")])
        yield b"app body"

    mw, recorder = wrap(app)
    server = Server()
    body = server.run(mw, environ())
    assert server.status == "504 Gateway Timeout"
    assert b"app body" not in body
    assert server.header["set-cookie"] == "a=1"
    assert [e.cause for e in server_events(mw, recorder)] == ["app_response"]


def test_failure_before_first_chunk_needs_no_exc_info() -> None:
    """The app's headers never reached the server, so the page starts cleanly."""
    body = Body([b"", UpstreamError(502)])
    mw, _ = wrap(app_with("200 OK", body))
    server = Server()
    server.run(mw, environ())
    assert [status for status, _ in server.calls] == ["502 Bad Gateway"]
    assert server.calls[0][1] is None
    assert body.closed == 1


def test_failure_after_empty_write_replaces_headers_with_exc_info() -> None:
    """If the server already has the app's headers, the page replaces them with exc_info."""

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"")
        raise ConnectionResetError("upstream reset")
        yield b""  # pragma: no cover - makes this a generator

    mw, _ = wrap(app)
    server = Server()
    server.run(mw, environ())
    assert [status for status, _ in server.calls] == ["200 OK", "502 Bad Gateway"]
    exc_info = server.calls[1][1]
    assert exc_info is not None
    assert isinstance(exc_info[1], ConnectionResetError)


def test_exception_after_body_started_propagates_and_closes() -> None:
    body = Body([b"first", ConnectionResetError("mid-stream")])
    mw, recorder = wrap(app_with("200 OK", body))
    server = Server()
    with pytest.raises(ConnectionResetError):
        server.run(mw, environ())
    assert server.status == "200 OK"
    assert body.closed == 1
    assert server_events(mw, recorder) == []


def test_exception_after_write_propagates() -> None:
    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])(b"written")
        raise UpstreamError(502)

    mw, _ = wrap(app)
    with pytest.raises(UpstreamError):
        Server().run(mw, environ())


def test_non_upstream_error_propagates_untouched() -> None:
    body = Body([KeyError("bug")])
    mw, recorder = wrap(app_with("200 OK", body))
    with pytest.raises(KeyError):
        Server().run(mw, environ())
    assert body.closed == 1
    assert server_events(mw, recorder) == []


def test_close_called_when_the_server_never_iterates() -> None:
    body = Body([b"never read"])
    mw, _ = wrap(app_with("200 OK", body))
    result = mw(environ(), Server().start_response)
    result.close()  # type: ignore[attr-defined]
    assert (body.closed, body.produced) == (1, 0)


def test_replaced_app_response_is_not_read() -> None:
    body = Body([b"a", b"b", b"c"])
    mw, _ = wrap(app_with("502 Bad Gateway", body, [("Set-Cookie", "s=1"), ("X-Kept", "yes")]))
    server = Server()
    page = server.run(mw, environ())
    assert body.produced == 0, "the app's own 502 body is dropped, not drained"
    assert body.closed == 1
    assert server.header["x-kept"] == "yes"
    assert b"<html" in page


def test_app_502_for_api_passes_through() -> None:
    body = Body([b"app said no"])
    mw, recorder = wrap(app_with("502 Bad Gateway", body))
    server = Server()
    assert server.run(mw, environ(accept="application/json")) == b"app said no"
    assert server_events(mw, recorder) == []


def test_write_callable_apps() -> None:
    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"hello ")
        return [b"world"]

    server = Server()
    assert server.run(wrap(app)[0], environ()) == b"hello world"


def test_write_to_a_replaced_response_is_dropped() -> None:
    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("504 Gateway Timeout", [])(b"app's own text")
        return []

    server = Server()
    body = server.run(wrap(app)[0], environ())
    assert server.status == "504 Gateway Timeout"
    assert b"app's own text" not in body
    assert b"<html" in body


def test_finished_bodies_and_file_wrappers_are_returned_as_is() -> None:
    class FileWrapper:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __iter__(self) -> Iterator[bytes]:
            yield self.data

    wrapped = FileWrapper(b"file")
    listed = [b"list"]
    for result in (wrapped, listed):
        mw, _ = wrap(lambda env, sr, r=result: (sr("200 OK", []), r)[1])
        assert mw(environ(**{"wsgi.file_wrapper": FileWrapper}), Server().start_response) is result


def test_failure_noted_by_a_framework_replaces_its_500() -> None:
    """What the Flask extension relies on: a noted failure turns the app's 5xx into the page."""

    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        env[FAILED] = Failure(504, "timeout", error_type="builtins.TimeoutError")
        start_response("500 Internal Server Error", [("Set-Cookie", "s=1")])
        return [b"framework 500 page"]

    mw, recorder = wrap(app, route=lambda env: "/orders/<id>")
    server = Server()
    body = server.run(mw, environ(accept="application/json"))
    assert server.status == "504 Gateway Timeout"
    assert json.loads(body)["status"] == 504
    assert server.header["set-cookie"] == "s=1"
    [event] = server_events(mw, recorder)
    assert (event.cause, event.route) == ("timeout", "/orders/<id>")


def test_a_page_made_by_an_inner_gracefail_is_not_replaced() -> None:
    inner = GracefailMiddleware(app_with("200 OK", Body([UpstreamError(502)])), secret=SECRET,
                                recorders=[])  # fmt: skip
    headers: list[tuple[str, str]] = []

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        env.pop(MARKER)  # as if it were a separate stack (a proxied app)

        def capture(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.extend(hdrs)
            return start_response(status, hdrs, exc_info)

        return list(inner(env, capture))

    mw, recorder = wrap(app)
    server = Server()
    server.run(mw, environ())
    assert server.header["x-gracefail-incident"] == dict(headers)["x-gracefail-incident"]
    assert server_events(mw, recorder) == []


def test_route_label_is_none_for_plain_wsgi() -> None:
    mw, recorder = wrap(app_with("200 OK", Body([UpstreamError(502)])))
    Server().run(mw, environ("/items/7"))
    [event] = server_events(mw, recorder)
    assert event.route is None


def test_nested_middleware_warns_and_outer_wins() -> None:
    inner, inner_recorder = wrap(app_with("200 OK", Body([UpstreamError(502)])))
    outer, outer_recorder = wrap(inner)
    server = Server()
    with pytest.warns(RuntimeWarning, match="second GracefailMiddleware"):
        body = server.run(outer, environ())
    assert body.count(b"<html") == 1
    assert len(server_events(outer, outer_recorder)) == 1
    assert server_events(inner, inner_recorder) == []


def test_engine_and_options_are_exclusive() -> None:
    mw, _ = wrap(app_with("200 OK", Body([])))
    with pytest.raises(ConfigError, match="engine"):
        GracefailMiddleware(mw, engine=mw.engine, debug=True)
    shared = GracefailMiddleware(mw.app, engine=mw.engine)
    assert shared.engine is mw.engine


def test_bad_option_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="did you mean 'status_page_url'"):
        GracefailMiddleware(app_with("200 OK", Body([])), status_page_ur="https://x.example")


# -- beacons --------------------------------------------------------------------------------


class Input(io.BytesIO):
    """wsgi.input that counts what was read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(size)


def beacon(kind: str = "shown") -> bytes:
    token = TokenSigner(SECRET, 3600).sign("incident-9", 504)
    return json.dumps(
        {"token": token, "kind": kind, "attempt": 2, "elapsed_ms": 900, "locale": "de"}
    ).encode()


def post_beacon(
    body: bytes, length: str | None, trailing: bytes = b"next request", **extra: Any
) -> tuple[Server, Input, Any]:
    stream = Input(body + trailing)
    env = environ("/_gracefail/beacon", "POST", **{"wsgi.input": stream}, **extra)
    env["CONTENT_TYPE"] = "text/plain;charset=UTF-8"
    env["HTTP_SEC_FETCH_SITE"] = "same-origin"
    if length is not None:
        env["CONTENT_LENGTH"] = length
    calls: list[str] = []
    mw, recorder = wrap(lambda env, sr: calls.append("app") or [])
    server = Server()
    server.run(mw, env)
    assert calls == [], "the beacon never reaches the app"
    mw.engine.flush()
    return server, stream, recorder


def test_beacon_reads_exactly_content_length() -> None:
    body = beacon("recovered")
    server, stream, recorder = post_beacon(body, str(len(body)))
    assert server.status == "204 No Content"
    assert stream.asked == [len(body)]
    [event] = [e for e in recorder.events if isinstance(e, ClientEvent)]
    assert (event.incident, event.kind, event.status) == ("incident-9", "recovered", 504)


def test_beacon_too_large_is_refused_unread() -> None:
    server, stream, _ = post_beacon(b"x" * 5000, "5000")
    assert server.status == "413 Request Entity Too Large"
    assert stream.asked == []


@pytest.mark.parametrize("length", [None, "abc"])
def test_beacon_without_length_reads_nothing_from_an_open_input(length: str | None) -> None:
    server, stream, _ = post_beacon(beacon(), length)
    assert (server.status, stream.asked) == ("400 Bad Request", [])


def test_beacon_without_length_reads_at_most_4_kib_from_a_terminated_input() -> None:
    body = beacon()
    server, stream, _ = post_beacon(body, None, b"", **{"wsgi.input_terminated": True})
    assert (server.status, stream.asked) == ("204 No Content", [4097])


def test_beacons_are_rate_limited_per_client_address() -> None:
    """The view carries REMOTE_ADDR, so the core's per-client beacon limit applies."""
    mw, _ = wrap(lambda env, sr: [])
    signer = TokenSigner(SECRET, 3600)

    def post(index: int, address: str) -> str:
        body = {"token": signer.sign(f"incident-{index}", 502), "kind": "shown", "attempt": 0,
                "elapsed_ms": 0, "locale": "en"}  # fmt: skip
        data = json.dumps(body).encode()
        env = environ("/_gracefail/beacon", "POST", REMOTE_ADDR=address)
        env.update({"wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data))})
        env.update({"CONTENT_TYPE": "text/plain", "HTTP_SEC_FETCH_SITE": "same-origin"})
        server = Server()
        server.run(mw, env)
        return server.status or ""

    statuses = [post(index, "203.0.113.9") for index in range(200)]
    assert statuses[0] == "204 No Content"
    assert statuses[-1] == "429 Too Many Requests"
    assert post(1000, "198.51.100.7") == "204 No Content", "another client is not limited"
