"""gracefail.classify: which exceptions are upstream failures, 502 or 504, and why.

Client-library exceptions are real: provoked against loopback sockets (a closed
port, a port that never answers, a server that answers garbage or hangs up, an
http.server answering a chosen status), so the tests follow what the libraries
actually raise, chain included, rather than what we think they raise.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import grpc
import httpx
import pytest
import requests
import urllib3

from gracefail import Config, UpstreamError
from gracefail.classify import Classifier, Failure, class_path
from tests.apps.common import free_port

TIMEOUT = 0.2  # client timeout against the silent server: short, but never flaky on loopback


# --------------------------------------------------------------------------- loopback upstreams


class ReplyServer:
    """Accepts connections, reads the request, sends ``reply`` verbatim and hangs up."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class StatusHandler(BaseHTTPRequestHandler):
    """``GET /503`` answers 503 (HTTP/1.0, so every connection closes after its answer)."""

    def do_GET(self) -> None:
        code = int(self.path.strip("/"))
        body = f"upstream answered {code}".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Upstreams:
    closed: int  # nothing listens
    silent: int  # the kernel accepts (listen backlog), nobody ever reads or answers
    garbage: int  # answers a line that is not HTTP
    hangup: int  # closes the connection without a word
    http: int  # http.server: GET /<status>

    def url(self, port: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{port}{path}"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)
    garbage = ReplyServer(b"garbage\r\n\r\n")
    hangup = ReplyServer(b"")
    status = ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    thread = threading.Thread(target=status.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Upstreams(
            closed=free_port(),
            silent=silent.getsockname()[1],
            garbage=garbage.port,
            hangup=hangup.port,
            http=status.server_address[1],
        )
    finally:
        status.shutdown()
        status.server_close()
        thread.join(timeout=5)
        garbage.close()
        hangup.close()
        silent.close()


# --------------------------------------------------------------------------- provoking failures

Provoke = Callable[[Upstreams], BaseException]


def caught(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    pytest.fail("the call was expected to raise")


def caught_async(make: Callable[[], Coroutine[Any, Any, object]]) -> BaseException:
    return caught(lambda: asyncio.run(make()))


def httpx_get(port: str, timeout: float = 5.0, path: str = "/") -> Provoke:
    def provoke(up: Upstreams) -> BaseException:
        def call() -> None:
            with httpx.Client(timeout=timeout) as client:
                client.get(up.url(getattr(up, port), path)).raise_for_status()

        return caught(call)

    return provoke


def requests_get(port: str, timeout: float = 5.0, path: str = "/") -> Provoke:
    def provoke(up: Upstreams) -> BaseException:
        def call() -> None:
            with requests.Session() as session:
                session.get(up.url(getattr(up, port), path), timeout=timeout).raise_for_status()

        return caught(call)

    return provoke


def urllib3_get(port: str, retries: Any = False, timeout: float = 5.0) -> Provoke:
    def provoke(up: Upstreams) -> BaseException:
        def call() -> None:
            with urllib3.PoolManager(retries=retries, timeout=timeout) as pool:
                pool.request("GET", up.url(getattr(up, port)))

        return caught(call)

    return provoke


def aiohttp_get(port: str, path: str = "/", **timeout: float) -> Provoke:
    def provoke(up: Upstreams) -> BaseException:
        async def call() -> None:
            client_timeout = aiohttp.ClientTimeout(**(timeout or {"total": 5.0}))
            async with (
                aiohttp.ClientSession(timeout=client_timeout) as session,
                session.get(up.url(getattr(up, port), path)) as response,
            ):
                response.raise_for_status()

        return caught_async(call)

    return provoke


def http_client_get(port: str) -> Provoke:
    def provoke(up: Upstreams) -> BaseException:
        conn = http.client.HTTPConnection("127.0.0.1", getattr(up, port), timeout=5)
        try:
            return caught(lambda: (conn.request("GET", "/"), conn.getresponse()))
        finally:
            conn.close()

    return provoke


def socket_connect_refused(up: Upstreams) -> BaseException:
    return caught(lambda: socket.create_connection(("127.0.0.1", up.closed), timeout=5).close())


def socket_read_timeout(up: Upstreams) -> BaseException:
    def call() -> None:
        with socket.create_connection(("127.0.0.1", up.silent), timeout=TIMEOUT) as sock:
            sock.recv(1)

    return caught(call)


def asyncio_wait_for_timeout(up: Upstreams) -> BaseException:
    async def call() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", up.silent)
        try:
            await asyncio.wait_for(reader.read(1), TIMEOUT)
        finally:
            writer.close()
            await writer.wait_closed()

    return caught_async(call)


def grpc_call(port: str, timeout: float) -> Provoke:
    def provoke(up: Upstreams) -> BaseException:
        def call() -> None:
            with grpc.insecure_channel(f"127.0.0.1:{getattr(up, port)}") as channel:
                channel.unary_unary("/gracefail.Test/Call")(b"", timeout=timeout)

        return caught(call)

    return provoke


# --------------------------------------------------------------------------- real failures

REAL = [
    # Connection refused -> 502 "connection".
    pytest.param(
        httpx_get("closed"), 502, "connection", "httpx.ConnectError", id="httpx-connect-refused"
    ),
    pytest.param(
        requests_get("closed"),
        502,
        "connection",
        "requests.exceptions.ConnectionError",
        id="requests-connect-refused",
    ),
    pytest.param(
        urllib3_get("closed"),
        502,
        "connection",
        "urllib3.exceptions.NewConnectionError",
        id="urllib3-new-connection-error",
    ),
    pytest.param(
        # MaxRetryError has no rule of its own: found through .reason / __cause__.
        urllib3_get("closed", retries=0),
        502,
        "connection",
        "urllib3.exceptions.NewConnectionError",
        id="urllib3-max-retry-error",
    ),
    pytest.param(
        aiohttp_get("closed"),
        502,
        "connection",
        "aiohttp.client_exceptions.ClientConnectorError",
        id="aiohttp-connector-error",
    ),
    pytest.param(
        socket_connect_refused,
        502,
        "connection",
        "builtins.ConnectionRefusedError",
        id="socket-connection-refused",
    ),
    pytest.param(
        http_client_get("closed"),
        502,
        "connection",
        "builtins.ConnectionRefusedError",
        id="http-client-connection-refused",
    ),
    pytest.param(grpc_call("closed", 5.0), 502, None, None, id="grpc-unavailable"),
    # Nobody answers -> 504 "timeout".
    pytest.param(
        httpx_get("silent", timeout=TIMEOUT),
        504,
        "timeout",
        "httpx.ReadTimeout",
        id="httpx-read-timeout",
    ),
    pytest.param(
        requests_get("silent", timeout=TIMEOUT),
        504,
        "timeout",
        "requests.exceptions.ReadTimeout",
        id="requests-read-timeout",
    ),
    pytest.param(
        urllib3_get("silent", timeout=TIMEOUT),
        504,
        "timeout",
        "urllib3.exceptions.ReadTimeoutError",
        id="urllib3-read-timeout",
    ),
    pytest.param(
        aiohttp_get("silent", total=TIMEOUT),
        504,
        "timeout",
        None,
        id="aiohttp-total-timeout",
    ),
    pytest.param(
        aiohttp_get("silent", sock_read=TIMEOUT),
        504,
        "timeout",
        None,
        id="aiohttp-sock-read-timeout",
    ),
    pytest.param(socket_read_timeout, 504, "timeout", "builtins.TimeoutError", id="socket-timeout"),
    pytest.param(
        asyncio_wait_for_timeout,
        504,
        "timeout",
        "builtins.TimeoutError",
        id="asyncio-wait-for-timeout",
    ),
    pytest.param(grpc_call("silent", TIMEOUT), 504, None, None, id="grpc-deadline-exceeded"),
    # The upstream answers something that is not HTTP -> 502.
    pytest.param(
        httpx_get("garbage"),
        502,
        "protocol",
        "httpx.RemoteProtocolError",
        id="httpx-garbage-remote-protocol-error",
    ),
    pytest.param(
        requests_get("garbage"),
        502,
        "connection",
        "requests.exceptions.ConnectionError",
        id="requests-garbage",
    ),
    pytest.param(
        urllib3_get("garbage"),
        502,
        "protocol",
        "urllib3.exceptions.ProtocolError",
        id="urllib3-garbage-protocol-error",
    ),
    pytest.param(
        http_client_get("garbage"),
        502,
        "protocol",
        "http.client.BadStatusLine",
        id="http-client-bad-status-line",
    ),
    pytest.param(
        # aiohttp reports a malformed status line as ClientResponseError(status=400); the
        # upstream never said 400, so this must still be a 502 (the chain holds
        # aiohttp.http_exceptions.BadStatusLine).
        aiohttp_get("garbage"),
        502,
        "protocol",
        None,
        id="aiohttp-garbage-bad-status-line",
    ),
    # The upstream hangs up without a word -> 502.
    pytest.param(
        httpx_get("hangup"),
        502,
        "protocol",
        "httpx.RemoteProtocolError",
        id="httpx-server-disconnected",
    ),
    pytest.param(
        requests_get("hangup"),
        502,
        "connection",
        "requests.exceptions.ConnectionError",
        id="requests-server-disconnected",
    ),
    pytest.param(
        urllib3_get("hangup"),
        502,
        "protocol",
        "urllib3.exceptions.ProtocolError",
        id="urllib3-server-disconnected",
    ),
    pytest.param(
        http_client_get("hangup"),
        502,
        "connection",
        "http.client.RemoteDisconnected",
        id="http-client-remote-disconnected",
    ),
    pytest.param(
        aiohttp_get("hangup"),
        502,
        "connection",
        "aiohttp.client_exceptions.ServerDisconnectedError",
        id="aiohttp-server-disconnected",
    ),
]


@pytest.mark.parametrize(("provoke", "status", "cause", "error_type"), REAL)
def test_real_client_failures(
    upstreams: Upstreams,
    provoke: Provoke,
    status: int,
    cause: str | None,
    error_type: str | None,
) -> None:
    exc = provoke(upstreams)
    failure = Classifier().classify(exc)
    assert failure is not None, f"{type(exc)} not classified: {exc!r}"
    assert failure.status == status
    if cause is not None:
        assert failure.cause == cause
    if error_type is not None:
        assert failure.error_type == error_type
    # error_type is always the class path of a link of the chain, never free text.
    assert failure.error_type is not None
    assert failure.error_type.count(".") >= 1


RAISE_FOR_STATUS = [
    pytest.param(lib, code, expected, id=f"{lib}-{code}")
    for lib in ("httpx", "requests", "aiohttp")
    for code, expected in ((500, 502), (502, 502), (503, 502), (504, 504), (404, None), (400, None))
]


@pytest.mark.parametrize(("lib", "code", "expected"), RAISE_FOR_STATUS)
def test_raise_for_status(upstreams: Upstreams, lib: str, code: int, expected: int | None) -> None:
    get = {"httpx": httpx_get, "requests": requests_get, "aiohttp": aiohttp_get}[lib]
    exc = get("http", path=f"/{code}")(upstreams)
    failure = Classifier().classify(exc)
    if expected is None:
        assert failure is None
        return
    assert failure is not None
    assert failure.status == expected
    assert failure.cause == "upstream_status"
    assert failure.error_type == class_path(type(exc))
    assert failure.upstream is not None
    assert "127.0.0.1" in failure.upstream


# --------------------------------------------------------------------------- constructed instances


class AppError(Exception):
    """An application's own exception, not an upstream failure by itself."""


class PaymentsDown(UpstreamError):
    def __init__(self) -> None:
        super().__init__(502, upstream="payments", detail="card processor refused")


class PaymentsSlow(UpstreamError):
    pass


def _httpx_status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://api.internal/v1/things")
    response = httpx.Response(code, request=request)
    return httpx.HTTPStatusError(f"{code}", request=request, response=response)


def _grpc(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata())


CONSTRUCTED = [
    # gracefail's own exception.
    pytest.param(
        UpstreamError(504, upstream="payments"), 504, "upstream_error", id="upstream-error-504"
    ),
    pytest.param(UpstreamError(), 502, "upstream_error", id="upstream-error-default-502"),
    pytest.param(PaymentsDown(), 502, "upstream_error", id="upstream-error-subclass"),
    pytest.param(PaymentsSlow(504), 504, "upstream_error", id="upstream-error-subclass-504"),
    # Builtins.
    pytest.param(TimeoutError(), 504, "timeout", id="builtin-timeout-error"),
    pytest.param(ConnectionRefusedError(111, "refused"), 502, "connection", id="conn-refused"),
    pytest.param(ConnectionResetError(104, "reset"), 502, "connection", id="conn-reset"),
    pytest.param(BrokenPipeError(32, "broken pipe"), 502, "connection", id="broken-pipe"),
    pytest.param(http.client.IncompleteRead(b"par"), 502, "protocol", id="http-incomplete-read"),
    pytest.param(http.client.LineTooLong("header"), 502, "protocol", id="http-line-too-long"),
    # httpx.
    pytest.param(httpx.ConnectTimeout("slow"), 504, "timeout", id="httpx-connect-timeout"),
    pytest.param(httpx.PoolTimeout("pool"), 504, "timeout", id="httpx-pool-timeout"),
    pytest.param(httpx.WriteTimeout("slow"), 504, "timeout", id="httpx-write-timeout"),
    pytest.param(httpx.ReadError("reset"), 502, "connection", id="httpx-read-error"),
    pytest.param(httpx.WriteError("reset"), 502, "connection", id="httpx-write-error"),
    pytest.param(httpx.RemoteProtocolError("bad"), 502, "protocol", id="httpx-remote-protocol"),
    pytest.param(_httpx_status_error(503), 502, "upstream_status", id="httpx-status-503"),
    pytest.param(_httpx_status_error(504), 504, "upstream_status", id="httpx-status-504"),
    # requests.
    pytest.param(
        # ConnectTimeout is also a ConnectionError; the timeout wins.
        requests.exceptions.ConnectTimeout("slow"),
        504,
        "timeout",
        id="requests-connect-timeout",
    ),
    pytest.param(
        requests.exceptions.ChunkedEncodingError("cut"),
        502,
        "protocol",
        id="requests-chunked-encoding",
    ),
    # urllib3.
    pytest.param(
        # ConnectTimeoutError is the base of NewConnectionError; still a timeout by itself.
        urllib3.exceptions.ConnectTimeoutError("slow"),
        504,
        "timeout",
        id="urllib3-connect-timeout",
    ),
    pytest.param(urllib3.exceptions.ProtocolError("cut"), 502, "protocol", id="urllib3-protocol"),
    # aiohttp.
    pytest.param(aiohttp.ServerTimeoutError("slow"), 504, "timeout", id="aiohttp-server-timeout"),
    pytest.param(
        aiohttp.ServerDisconnectedError(), 502, "connection", id="aiohttp-server-disconnected"
    ),
    pytest.param(aiohttp.ClientPayloadError("cut"), 502, "protocol", id="aiohttp-payload-error"),
    # gRPC (aio): the status code decides.
    pytest.param(_grpc(grpc.StatusCode.UNAVAILABLE), 502, None, id="grpc-aio-unavailable"),
    pytest.param(
        _grpc(grpc.StatusCode.DEADLINE_EXCEEDED), 504, None, id="grpc-aio-deadline-exceeded"
    ),
]


@pytest.mark.parametrize(("exc", "status", "cause"), CONSTRUCTED)
def test_constructed_failures(exc: BaseException, status: int, cause: str | None) -> None:
    failure = Classifier().classify(exc)
    assert failure is not None
    assert failure.status == status
    if cause is not None:
        assert failure.cause == cause
    assert failure.error_type == class_path(type(exc))


NOT_UPSTREAM = [
    pytest.param(ValueError("bad input"), id="value-error"),
    pytest.param(KeyError("missing"), id="key-error"),
    pytest.param(RuntimeError("bug"), id="runtime-error"),
    pytest.param(ZeroDivisionError(), id="zero-division"),
    pytest.param(AppError("own"), id="app-error"),
    pytest.param(OSError(28, "no space left"), id="plain-os-error"),
    pytest.param(FileNotFoundError(2, "nope"), id="file-not-found"),
    pytest.param(PermissionError(13, "denied"), id="permission-error"),
    pytest.param(KeyboardInterrupt(), id="keyboard-interrupt"),
    pytest.param(_httpx_status_error(404), id="httpx-status-404"),
    pytest.param(_httpx_status_error(429), id="httpx-status-429"),
    pytest.param(httpx.LocalProtocolError("we sent a bad request"), id="httpx-local-protocol"),
    pytest.param(httpx.UnsupportedProtocol("ftp"), id="httpx-unsupported-protocol"),
    pytest.param(requests.exceptions.InvalidURL("nope"), id="requests-invalid-url"),
    pytest.param(requests.exceptions.MissingSchema("nope"), id="requests-missing-schema"),
    pytest.param(aiohttp.InvalidURL("nope"), id="aiohttp-invalid-url"),
    pytest.param(_grpc(grpc.StatusCode.NOT_FOUND), id="grpc-not-found"),
    pytest.param(_grpc(grpc.StatusCode.INVALID_ARGUMENT), id="grpc-invalid-argument"),
    pytest.param(_grpc(grpc.StatusCode.PERMISSION_DENIED), id="grpc-permission-denied"),
    pytest.param(_grpc(grpc.StatusCode.INTERNAL), id="grpc-internal"),
]


@pytest.mark.parametrize("exc", NOT_UPSTREAM)
def test_not_upstream_failures(exc: BaseException) -> None:
    assert Classifier().classify(exc) is None


def test_upstream_error_keeps_upstream_and_detail() -> None:
    failure = Classifier().classify(UpstreamError(504, upstream="payments", detail="no answer"))
    assert failure == Failure(
        status=504,
        cause="upstream_error",
        upstream="payments",
        detail="no answer",
        error_type="gracefail.errors.UpstreamError",
    )


def test_upstream_error_subclass_keeps_its_class_path() -> None:
    failure = Classifier().classify(PaymentsDown())
    assert failure is not None
    assert failure.upstream == "payments"
    assert failure.error_type == class_path(PaymentsDown)
    assert failure.error_type.endswith(".PaymentsDown")


def test_detail_is_bounded() -> None:
    failure = Classifier().classify(ConnectionResetError("x" * 10_000))
    assert failure is not None
    assert failure.detail is not None
    assert len(failure.detail) <= 500


# --------------------------------------------------------------------------- gRPC cause labels

STANDARD_CAUSES = {"timeout", "connection", "protocol", "upstream_status", "upstream_error"}


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        pytest.param(grpc.StatusCode.DEADLINE_EXCEEDED, "timeout", id="deadline-is-timeout"),
        pytest.param(grpc.StatusCode.UNAVAILABLE, "connection", id="unavailable-is-connection"),
    ],
)
def test_grpc_cause_is_a_standard_label(code: grpc.StatusCode, cause: str) -> None:
    # Causes are metric labels; a gRPC timeout is a timeout like any other.
    failure = Classifier().classify(_grpc(code))
    assert failure is not None
    assert failure.cause in STANDARD_CAUSES
    assert failure.cause == cause


# --------------------------------------------------------------------------- the chain


def raised_from(cause: BaseException) -> AppError:
    try:
        raise AppError("checkout failed") from cause
    except AppError as exc:
        return exc


def raised_during_plain(original: BaseException, from_none: bool = False) -> AppError:
    """An AppError raised while ``original`` was handled (``raise ... from None``: said to be
    unrelated to it)."""
    try:
        try:
            raise original
        except type(original):
            if from_none:
                raise AppError("not about the upstream") from None
            raise AppError("while handling")  # noqa: B904 - the implicit __context__ is the point
    except AppError as exc:
        return exc


def test_chain_via_cause_real_httpx(upstreams: Upstreams) -> None:
    real = httpx_get("closed")(upstreams)
    exc = raised_from(real)
    assert exc.__cause__ is real
    failure = Classifier().classify(exc)
    assert failure is not None
    assert failure.status == 502
    assert failure.cause == "connection"
    assert failure.error_type == "httpx.ConnectError"


def test_chain_via_context_real_requests(upstreams: Upstreams) -> None:
    real = requests_get("silent", timeout=TIMEOUT)(upstreams)
    exc = raised_during_plain(real)
    assert exc.__cause__ is None
    assert exc.__context__ is real
    failure = Classifier().classify(exc)
    assert failure is not None
    assert failure.status == 504
    assert failure.error_type == "requests.exceptions.ReadTimeout"


CHAINS = [
    pytest.param(raised_from(TimeoutError()), 504, id="cause-timeout"),
    pytest.param(raised_from(UpstreamError(504, "search")), 504, id="cause-upstream-error"),
    pytest.param(raised_during_plain(ConnectionResetError()), 502, id="context-reset"),
    pytest.param(
        raised_from(raised_from(raised_from(TimeoutError()))), 504, id="three-levels-deep"
    ),
    pytest.param(raised_from(_httpx_status_error(404)), None, id="cause-4xx-is-not-upstream"),
    pytest.param(raised_from(ValueError("x")), None, id="cause-value-error"),
    pytest.param(raised_during_plain(KeyError("k")), None, id="context-key-error"),
]


@pytest.mark.parametrize(("exc", "status"), CHAINS)
def test_chains(exc: BaseException, status: int | None) -> None:
    failure = Classifier().classify(exc)
    assert (failure and failure.status) == status


def test_outer_upstream_error_wins_over_its_cause() -> None:
    try:
        raise UpstreamError(502, upstream="payments") from TimeoutError()
    except UpstreamError as exc:
        failure = Classifier().classify(exc)
    assert failure is not None
    assert failure.status == 502
    assert failure.upstream == "payments"


def test_4xx_link_does_not_hide_an_upstream_failure_behind_it() -> None:
    inner = _httpx_status_error(404)
    inner.__context__ = TimeoutError()
    failure = Classifier().classify(raised_from(inner))
    assert failure is not None
    assert failure.status == 504


def test_suppressed_context_is_not_searched() -> None:
    # ``raise X from None`` says X is not about what was being handled: its
    # __context__ is kept for debuggers but __suppress_context__ hides it, as in
    # tracebacks and in Sentry's chain walk. It is the app's own error (a 500).
    exc = raised_during_plain(httpx.ConnectError("refused"), from_none=True)
    assert exc.__suppress_context__
    assert Classifier().classify(exc) is None


def test_cycle_without_failure_terminates() -> None:
    a, b, c = AppError("a"), AppError("b"), ValueError("c")
    a.__cause__ = b
    b.__context__ = c
    c.__context__ = a
    assert Classifier().classify(a) is None


def test_cycle_with_failure_is_found() -> None:
    a, b = AppError("a"), TimeoutError()
    a.__cause__ = b
    b.__context__ = a
    failure = Classifier().classify(a)
    assert failure is not None
    assert failure.status == 504


def test_self_loop_terminates() -> None:
    a = AppError("a")
    a.__context__ = a
    a.__cause__ = a
    assert Classifier().classify(a) is None


def test_very_long_chain_terminates() -> None:
    head = AppError(0)
    current = head
    for i in range(1, 5000):
        nxt = AppError(i)
        current.__cause__ = nxt
        current = nxt
    assert Classifier().classify(head) is None


# --------------------------------------------------------------------------- overrides


class MyError(Exception):
    pass


class MySubError(MyError):
    pass


Dotted = type("Path", (Exception,), {"__module__": "some.module", "__qualname__": "Path"})

OVERRIDES: dict[type[BaseException] | str, int | None] = {
    MyError: 504,
    "some.module.Path": 502,
    httpx.ConnectError: None,
}

OVERRIDDEN = [
    pytest.param(MyError(), 504, id="class-key"),
    pytest.param(MySubError(), 504, id="subclass-of-class-key"),
    pytest.param(Dotted(), 502, id="dotted-path-key"),
    pytest.param(raised_from(MyError()), 504, id="class-key-in-chain"),
    pytest.param(httpx.ConnectError("refused"), None, id="none-turns-builtin-off"),
    pytest.param(httpx.ReadTimeout("slow"), 504, id="other-builtins-untouched"),
    pytest.param(TimeoutError(), 504, id="builtin-timeout-untouched"),
    pytest.param(ValueError(), None, id="value-error-still-none"),
]


@pytest.mark.parametrize(("exc", "status"), OVERRIDDEN)
def test_overrides(exc: BaseException, status: int | None) -> None:
    failure = Classifier(OVERRIDES).classify(exc)
    assert (failure and failure.status) == status
    if failure is not None:
        assert failure.error_type is not None


def test_none_override_turns_off_a_real_httpx_connect_error(upstreams: Upstreams) -> None:
    # A real httpx.ConnectError carries httpcore.ConnectError and ConnectionRefusedError
    # in its chain; ``{httpx.ConnectError: None}`` says "this is not an upstream
    # failure", so those links must not bring it back as a 502.
    real = httpx_get("closed")(upstreams)
    assert Classifier({httpx.ConnectError: None}).classify(real) is None


@pytest.mark.parametrize(
    ("overrides", "exc", "status"),
    [
        pytest.param({TimeoutError: 502}, TimeoutError(), 502, id="builtin-remapped"),
        pytest.param({"httpx.ReadTimeout": 502}, httpx.ReadTimeout("x"), 502, id="string-key"),
        pytest.param(
            {"builtins.ConnectionError": None},
            ConnectionRefusedError(),
            None,
            id="none-on-base-class-covers-subclasses",
        ),
        pytest.param({AppError: 502}, AppError(), 502, id="app-error-added"),
        pytest.param({}, AppError(), None, id="empty-overrides"),
        pytest.param(None, TimeoutError(), 504, id="no-overrides"),
    ],
)
def test_override_variants(
    overrides: dict[type[BaseException] | str, int | None] | None,
    exc: BaseException,
    status: int | None,
) -> None:
    failure = Classifier(overrides).classify(exc)
    assert (failure and failure.status) == status


def test_config_exceptions_feed_the_classifier() -> None:
    config = Config(exceptions={MyError: 502, "some.module.Path": 504})
    classifier = Classifier(config.exceptions)
    mine = classifier.classify(MyError())
    dotted = classifier.classify(Dotted())
    assert mine is not None
    assert mine.status == 502
    assert dotted is not None
    assert dotted.status == 504
    assert dotted.error_type == "some.module.Path"


def test_two_classifiers_do_not_share_overrides() -> None:
    Classifier({MyError: 504}).classify(MyError())
    assert Classifier().classify(MyError()) is None


def test_app_timeout_and_from_status() -> None:
    assert Classifier.app_timeout().status == 504
    assert Classifier.from_status(502).status == 502
    assert Classifier.from_status(504).status == 504
