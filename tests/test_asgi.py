"""The pure-ASGI middleware, row by row of DESIGN.md's contract.

In-process through httpx.ASGITransport, and through a real uvicorn on a free
loopback port for what only a server shows (streaming, real sockets).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette

from gracefail import Config, UpstreamError
from gracefail.asgi import GracefailMiddleware
from gracefail.events import ClientEvent, ServerEvent
from gracefail.tokens import TokenSigner
from tests.apps import asgi_app
from tests.apps.common import ListRecorder

SECRET = "test-secret-0123456789abcdef"
NAV = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
}
API = {"accept": "application/json"}
CURL = {"accept": "*/*", "user-agent": "curl/8.0"}


def build(outside: bool = True, **options: Any) -> tuple[Any, ListRecorder]:
    recorder = ListRecorder()
    options.setdefault("secret", SECRET)
    options.setdefault("recorders", [recorder])
    if outside:
        app: Any = GracefailMiddleware(asgi_app.make_app(), **options)
    else:
        app = asgi_app.make_app()
        app.add_middleware(GracefailMiddleware, **options)
    return app, recorder


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def find_gracefail(app: Any) -> GracefailMiddleware:
    """The middleware instance, wrapped around the app or built inside Starlette's stack."""
    node = app
    for _ in range(20):
        if isinstance(node, GracefailMiddleware):
            return node
        node = getattr(node, "middleware_stack", None) or getattr(node, "app", None)
    raise LookupError("no GracefailMiddleware in this stack (send a request first)")


def server_events(app: Any, recorder: ListRecorder) -> list[ServerEvent]:
    find_gracefail(app).engine.flush()
    return [e for e in recorder.events if isinstance(e, ServerEvent)]


@pytest.fixture(params=["outside", "inside"])
def placement(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "outside")


FAILURES = [
    pytest.param("/connect", 502, "connection", id="httpx-connect-refused"),
    pytest.param("/timeout", 504, "timeout", id="httpx-read-timeout"),
    pytest.param("/upstream-504", 504, "upstream_error", id="upstream-error-504"),
    pytest.param("/chained", 502, "connection", id="chained-cause"),
    pytest.param("/items/7?fail=1", 502, "upstream_error", id="upstream-error-502"),
]


@pytest.mark.parametrize(("path", "status", "cause"), FAILURES)
async def test_upstream_failure_gets_the_page(
    placement: bool, path: str, status: int, cause: str
) -> None:
    app, recorder = build(outside=placement)
    async with client(app) as http:
        response = await http.get(path, headers=NAV)
    assert response.status_code == status
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == "5"
    assert response.headers["vary"] == "Accept, Accept-Language"
    incident = response.headers["x-gracefail-incident"]
    assert incident in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'sha256-" in csp
    assert "connect-src 'self'" in csp
    assert len(response.content) < 16 * 1024
    [event] = server_events(app, recorder)
    assert (event.status, event.cause, event.reply_format, event.probe) == (
        status,
        cause,
        "html",
        False,
    )
    assert event.incident == incident


async def test_problem_json_for_api_clients() -> None:
    app, _ = build()
    async with client(app) as http:
        response = await http.get("/upstream-504", headers=API)
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 504
    assert body["title"] == "Gateway Timeout"
    assert body["incident"] == response.headers["x-gracefail-incident"]
    assert body["retry_after"] == 5
    assert {"type", "title", "status", "detail", "instance", "incident", "status_page"} <= set(body)
    assert "payments" not in response.text, "upstream names stay hidden unless debug"


async def test_plain_text_for_curl() -> None:
    app, _ = build(status_page_url="https://status.example.com")
    async with client(app) as http:
        response = await http.get("/connect", headers=CURL)
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[0].startswith("502 ")
    assert "https://status.example.com" in response.text
    assert len(lines) < 10


async def test_debug_shows_detail_only_when_on() -> None:
    app, _ = build(debug=True)
    async with client(app) as http:
        response = await http.get("/upstream-504", headers=API)
    assert "payments" in response.json()["debug_detail"]


async def test_head_gets_headers_without_body() -> None:
    app, _ = build()
    async with client(app) as http:
        head = await http.head("/connect", headers=NAV)
        get = await http.get("/connect", headers=NAV)
    assert head.status_code == 502
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-type"] == get.headers["content-type"]


async def test_post_gets_the_unsafe_page() -> None:
    app, recorder = build()
    async with client(app) as http:
        response = await http.post("/form", headers=NAV, data={"q": "1"})
    assert response.status_code == 502
    assert '"safe":false' in response.text
    assert 'http-equiv="refresh"' not in response.text, "never refresh a POST"
    [event] = server_events(app, recorder)
    assert event.method == "POST"


async def test_happy_path_untouched(placement: bool) -> None:
    app, recorder = build(outside=placement)
    async with client(app) as http:
        response = await http.get("/ok", headers=NAV)
        json_response = await http.get("/items/3", headers=API)
    assert response.status_code == 200
    assert response.text == "hello"
    assert "x-gracefail-incident" not in response.headers
    assert json_response.json() == {"id": "3"}
    assert server_events(app, recorder) == []


async def test_app_502_replaced_for_navigation_keeping_cookies() -> None:
    app, recorder = build()
    async with client(app) as http:
        response = await http.get("/app-502", headers=NAV)
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "upstream said no" not in response.text
    assert "session=abc" in response.headers["set-cookie"]
    assert int(response.headers["content-length"]) == len(response.content)
    [event] = server_events(app, recorder)
    assert event.cause == "app_response"


async def test_app_502_kept_for_api_clients() -> None:
    app, recorder = build()
    async with client(app) as http:
        response = await http.get("/app-502", headers=API)
    assert response.status_code == 502
    assert response.text == "upstream said no"
    assert server_events(app, recorder) == []


async def test_app_502_replaced_for_api_clients_when_asked() -> None:
    app, _ = build(replace_api_responses=True)
    async with client(app) as http:
        response = await http.get("/app-502", headers=API)
    assert response.headers["content-type"] == "application/problem+json"
    assert "session=abc" in response.headers["set-cookie"]


async def test_app_504_streamed_body_is_drained_and_replaced() -> None:
    app, _ = build()
    async with client(app) as http:
        response = await http.get("/app-504-streamed", headers=NAV)
    assert response.status_code == 504
    assert "part one" not in response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"


async def test_non_upstream_error_reaches_the_apps_500(placement: bool) -> None:
    app, recorder = build(outside=placement)
    async with client(app) as http:
        response = await http.get("/bug", headers=NAV)
    assert response.status_code == 500
    assert "x-gracefail-incident" not in response.headers
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with pytest.raises(KeyError):
            await http.get("/bug")
    assert server_events(app, recorder) == []


async def test_streamed_500_passes_through() -> None:
    app, _ = build()
    async with client(app) as http:
        response = await http.get("/streamed-500", headers=NAV)
    assert response.status_code == 500
    assert response.text == "error part one,error part two"


async def test_exception_after_response_started_propagates() -> None:
    app, recorder = build()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with pytest.raises(ConnectionResetError):
            await http.get("/late", headers=NAV)
    assert server_events(app, recorder) == []


async def test_timeout_cancels_the_app_and_sends_504() -> None:
    asgi_app.state["cancelled"] = False
    app, recorder = build(timeout=0.2)
    async with client(app) as http:
        response = await http.get("/slow", headers=NAV)
        fast = await http.get("/ok", headers=NAV)
    assert response.status_code == 504
    assert asgi_app.state["cancelled"] is True
    assert fast.status_code == 200
    [event] = server_events(app, recorder)
    assert event.cause == "app_timeout"


async def test_route_template_and_probe_flag_recorded() -> None:
    app, recorder = build()
    async with client(app) as http:
        await http.get("/items/42?fail=1", headers=NAV)
        await http.get("/items/43?fail=1", headers={**API, "x-gracefail-probe": "1"})
    first, second = server_events(app, recorder)
    assert first.route == "/items/{item_id}"
    assert (first.probe, second.probe) == (False, True)
    assert second.reply_format == "json"


async def test_request_id_reused_as_incident_only_when_safe() -> None:
    app, _ = build()
    async with client(app) as http:
        good = await http.get("/connect", headers={**CURL, "x-request-id": "req-123.abc_D"})
        bad = await http.get("/connect", headers={**CURL, "x-request-id": "<script>x</script>"})
    assert good.headers["x-gracefail-incident"] == "req-123.abc_D"
    assert "<" not in bad.headers["x-gracefail-incident"]
    assert "<script>" not in bad.text


async def test_fastapi_add_middleware() -> None:
    api = FastAPI()

    @api.get("/orders/{order_id}")
    async def orders(order_id: int) -> dict[str, int]:
        raise UpstreamError(504)

    recorder = ListRecorder()
    api.add_middleware(GracefailMiddleware, secret=SECRET, recorders=[recorder])
    async with client(api) as http:
        page = await http.get("/orders/1", headers=NAV)
        problem = await http.get("/orders/1", headers=API)
        missing = await http.get("/nothing", headers=API)
    assert page.status_code == 504
    assert problem.json()["status"] == 504
    assert missing.status_code == 404


async def test_nested_middleware_warns_and_outer_wins() -> None:
    inner_recorder, outer_recorder = ListRecorder(), ListRecorder()
    inner = GracefailMiddleware(asgi_app.make_app(), secret=SECRET, recorders=[inner_recorder])
    outer = GracefailMiddleware(inner, secret=SECRET, recorders=[outer_recorder])
    async with client(outer) as http:
        with pytest.warns(RuntimeWarning, match="second GracefailMiddleware"):
            response = await http.get("/connect", headers=NAV)
    assert response.status_code == 502
    assert response.text.count("<html") == 1
    outer.engine.flush()
    inner.engine.flush()
    assert len(outer_recorder.events) == 1
    assert inner_recorder.events == []


async def test_websocket_and_lifespan_pass_through() -> None:
    seen: list[str] = []

    async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "hi"})
            await send({"type": "websocket.close", "code": 1000})

    app = GracefailMiddleware(raw_app, secret=SECRET, recorders=[])
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    inbox[:] = [{"type": "websocket.connect"}]
    await app({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert seen == ["lifespan", "websocket"]
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]


async def test_streaming_is_never_buffered_in_process() -> None:
    """Each chunk reaches the server's send before the app produces the next."""
    received: list[int] = []
    produced = 0

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            received.append(len(message["body"]))
            assert len(received) == produced_count()

    def produced_count() -> int:
        return produced

    async def counting_app(scope: dict[str, Any], rcv: Any, snd: Any) -> None:
        nonlocal produced
        await snd({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(1000):
            produced += 1
            await snd({"type": "http.response.body", "body": b"y" * 10, "more_body": True})
        await snd({"type": "http.response.body", "body": b""})

    wrapped = GracefailMiddleware(counting_app, secret=SECRET, recorders=[])
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    await wrapped(scope, receive, send)
    assert len(received) == 1000


# -- beacons ------------------------------------------------------------------


def beacon_body(kind: str = "shown", token: str | None = None, **extra: Any) -> bytes:
    token = token or TokenSigner(SECRET, 3600).sign("incident-1", 502)
    data = {"token": token, "kind": kind, "attempt": 0, "elapsed_ms": 1200, "locale": "en", **extra}
    return json.dumps(data).encode()


BEACON_HEADERS = {"content-type": "text/plain;charset=UTF-8", "sec-fetch-site": "same-origin"}


async def test_beacon_accepted_and_recorded() -> None:
    app, recorder = build()
    async with client(app) as http:
        response = await http.post(
            "/_gracefail/beacon", content=beacon_body("recovered"), headers=BEACON_HEADERS
        )
    assert response.status_code == 204
    app.engine.flush()
    [event] = [e for e in recorder.events if isinstance(e, ClientEvent)]
    assert (event.incident, event.kind, event.elapsed_ms, event.status) == (
        "incident-1",
        "recovered",
        1200,
        502,
    )


@pytest.mark.parametrize(
    ("method", "body", "headers", "status"),
    [
        pytest.param("GET", None, {}, 405, id="get"),
        pytest.param("POST", b"x" * 5000, BEACON_HEADERS, 413, id="too-large"),
        pytest.param("POST", b"{not json", BEACON_HEADERS, 400, id="not-json"),
        pytest.param("POST", b"[]", BEACON_HEADERS, 400, id="not-object"),
        pytest.param("POST", beacon_body("exploded"), BEACON_HEADERS, 400, id="unknown-kind"),
        pytest.param("POST", beacon_body(extra_key=1), BEACON_HEADERS, 400, id="extra-key"),
        pytest.param(
            "POST", beacon_body(token="1~x~502~" + "A" * 22), BEACON_HEADERS, 403, id="forged"
        ),
        pytest.param(
            "POST",
            beacon_body(),
            {**BEACON_HEADERS, "sec-fetch-site": "cross-site"},
            403,
            id="cross-site",
        ),
        pytest.param(
            "POST",
            beacon_body(),
            {"content-type": "text/plain", "origin": "https://evil.example"},
            403,
            id="foreign-origin",
        ),
        pytest.param("POST", beacon_body(), {"content-type": "image/png"}, 415, id="content-type"),
    ],
)
async def test_beacon_refusals(
    method: str, body: bytes | None, headers: dict[str, str], status: int
) -> None:
    app, recorder = build()
    async with client(app) as http:
        response = await http.request(method, "/_gracefail/beacon", content=body, headers=headers)
    assert response.status_code == status
    assert response.text.strip()
    app.engine.flush()
    assert recorder.events == []


async def test_beacon_never_reaches_the_app() -> None:
    calls: list[str] = []

    async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])

    app = GracefailMiddleware(raw_app, secret=SECRET, recorders=[])
    async with client(app) as http:
        await http.post("/_gracefail/beacon", content=beacon_body(), headers=BEACON_HEADERS)
        await http.get("/_gracefail/beacon")
    assert calls == []


# -- a real uvicorn -------------------------------------------------------------


@pytest.mark.server
def test_real_uvicorn(server_factory: Any, port: int, python: str) -> None:
    server_factory(
        [
            python,
            "-m",
            "uvicorn",
            "--factory",
            "tests.apps.asgi_app:wrapped_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        port,
        {"GRACEFAIL_SECRET": SECRET},
    )
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as http:
        page = http.get("/connect", headers=NAV)
        assert page.status_code == 502
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert http.get("/upstream-504", headers=API).json()["status"] == 504
        assert http.get("/ok").text == "hello"
        beacon = http.post("/_gracefail/beacon", content=beacon_body(), headers=BEACON_HEADERS)
        assert beacon.status_code == 204
        # 50 MB streamed: the first chunk arrives while the app still holds the rest.
        received = 0
        with http.stream("GET", "/stream?chunks=50&wait=1") as response:
            chunks = response.iter_raw()
            received += len(next(chunks))
            assert http.get("/release").text == "released"
            for chunk in chunks:
                received += len(chunk)
        assert received == 50 * len(asgi_app.CHUNK)
    # Last, on its own connection: uvicorn closes a connection whose app raised.
    assert httpx.get(f"{base}/bug", headers=NAV).status_code == 500


def test_app_wrapped_twice_builds_twice() -> None:
    """No global state: two stacks with two configs in one process."""
    a = GracefailMiddleware(Starlette(), config=Config(secret=SECRET, recorders=[]))
    b = GracefailMiddleware(
        Starlette(), config=Config(secret=SECRET, recorders=[], retry={"retry_after": 9})
    )
    assert a.engine.config.retry.retry_after == 5
    assert b.engine.config.retry.retry_after == 9
