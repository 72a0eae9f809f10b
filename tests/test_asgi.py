"""What only the pure-ASGI middleware has to get right.

The contract every adapter shares (pages, problem+json, text, HEAD, POST, the app's own
502/504, beacons, request ids, routes, probes, real servers) is the conformance table's,
run against Starlette and FastAPI among the others: tests/conformance/. Here: where
gracefail sits against Starlette's ServerErrorMiddleware, what reaches the server,
cancellation on timeout, nesting, non-HTTP scopes, chunk-by-chunk streaming, and
independent instances.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette

from gracefail import Config
from gracefail.asgi import GracefailMiddleware
from gracefail.events import ServerEvent
from tests.apps import asgi_app
from tests.apps.common import NAV, SECRET, ListRecorder, asgi_client, find, serve_lifespan


def build(outside: bool = True, **options: Any) -> tuple[Any, ListRecorder]:
    """``tests.apps.asgi_app`` with gracefail around the whole app (outside Starlette's
    ServerErrorMiddleware) or added with ``add_middleware`` (inside it)."""
    recorder = ListRecorder()
    options.setdefault("secret", SECRET)
    options.setdefault("recorders", [recorder])
    if outside:
        app: Any = GracefailMiddleware(asgi_app.make_app(), **options)
    else:
        app = asgi_app.make_app()
        app.add_middleware(GracefailMiddleware, **options)
    return app, recorder


def server_events(app: Any, recorder: ListRecorder) -> list[ServerEvent]:
    """What gracefail recorded (send a request first: Starlette builds its stack lazily)."""
    find(app, GracefailMiddleware, "middleware_stack", "app").engine.flush()
    return [e for e in recorder.events if isinstance(e, ServerEvent)]


@pytest.mark.parametrize(
    "outside", [pytest.param(True, id="outside"), pytest.param(False, id="inside")]
)
@pytest.mark.parametrize(
    ("path", "raised"),
    [
        pytest.param("/bug", KeyError, id="not-an-upstream-failure"),
        pytest.param("/late", ConnectionResetError, id="after-the-response-started"),
    ],
)
async def test_what_gracefail_does_not_answer_reaches_the_server(
    outside: bool, path: str, raised: type[BaseException]
) -> None:
    """Re-raised for the server's log on either side of ServerErrorMiddleware (which sends
    its 500 and re-raises): never swallowed, never a second response, no event."""
    app, recorder = build(outside=outside)
    async with asgi_client(app, raise_app_exceptions=True) as http:
        with pytest.raises(raised):
            await http.get(path, headers=NAV)
    assert server_events(app, recorder) == []


async def test_timeout_cancels_the_app() -> None:
    """The app's task is cancelled (not left running), and the next request is served."""
    asgi_app.state["cancelled"] = False
    app, recorder = build(timeout=0.2)
    async with asgi_client(app) as http:
        response = await http.get("/slow", headers=NAV)
        fast = await http.get("/ok", headers=NAV)
    assert response.status_code == 504
    assert asgi_app.state["cancelled"] is True
    assert fast.status_code == 200
    [event] = server_events(app, recorder)
    assert event.cause == "app_timeout"


async def test_nested_middleware_warns_and_outer_wins() -> None:
    inner_recorder, outer_recorder = ListRecorder(), ListRecorder()
    inner = GracefailMiddleware(asgi_app.make_app(), secret=SECRET, recorders=[inner_recorder])
    outer = GracefailMiddleware(inner, secret=SECRET, recorders=[outer_recorder])
    async with asgi_client(outer) as http:
        with pytest.warns(RuntimeWarning, match="second GracefailMiddleware"):
            response = await http.get("/connect", headers=NAV)
    assert response.status_code == 502
    assert response.text.count("<html") == 1
    outer.engine.flush()
    inner.engine.flush()
    assert len(outer_recorder.events) == 1
    assert inner_recorder.events == []


async def test_lifespan_start_up_prepares_the_page_in_the_background() -> None:
    """Once the server listens, the default locale's pages are made (compiled and
    compressed) in a thread, so the first failure does not pay for them."""

    async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await serve_lifespan(receive, send)

    app = GracefailMiddleware(raw_app, secret=SECRET, recorders=[])
    replies = app.engine.renderer.default.replies
    assert not replies, "nothing rendered at construction"
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        pass

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    warming = app.engine._warming
    assert warming is not None
    warming.join(timeout=60)
    assert not warming.is_alive()
    assert {key[1:] for key in replies} >= {
        (status, "en", safe, story)
        for status, story in ((502, "unreachable"), (502, "bad_answer"), (504, "timeout"))
        for safe in (True, False)
    }


async def test_websocket_and_lifespan_pass_through() -> None:
    seen: list[str] = []

    async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
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
            assert len(received) == produced

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


def test_app_wrapped_twice_builds_twice() -> None:
    """No global state: two stacks with two configs in one process."""
    a = GracefailMiddleware(Starlette(), config=Config(secret=SECRET, recorders=[]))
    b = GracefailMiddleware(
        Starlette(), config=Config(secret=SECRET, recorders=[], retry={"retry_after": 9})
    )
    assert a.engine.config.retry.retry_after == 5
    assert b.engine.config.retry.retry_after == 9


# -- async-library neutrality and ASGI extension messages ------------------------------


def test_lifespan_and_shutdown_flush_under_trio() -> None:
    """Starlette's own suite runs under trio: the lifespan must not need asyncio's loop."""
    anyio = pytest.importorskip("anyio")
    pytest.importorskip("trio")

    class Closing(ListRecorder):
        closed = False

        def close(self) -> None:
            self.closed = True

    recorder = Closing()
    app = GracefailMiddleware(Starlette(), secret=SECRET, recorders=[recorder])
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    anyio.run(app, scope, receive, send, backend="trio")
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert recorder.closed, "the recorders were flushed and closed, in a worker thread"


def raw_app(status: int, *after: dict[str, Any]) -> Any:
    """An app that starts ``status`` and then sends ``after`` (extension messages)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [],
                "trailers": any(m["type"] == "http.response.trailers" for m in after),
            }
        )
        for message in after:
            await send(message)

    return app


def drive(app: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": "/x", "raw_path": b"/x", "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "extensions": {"http.response.pathsend": {}, "http.response.trailers": {}},
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return sent


def test_extension_messages_keep_their_place_behind_a_held_500() -> None:
    body = {"type": "http.response.body", "body": b"oops", "more_body": False}
    trailers = {"type": "http.response.trailers", "headers": [], "more_trailers": False}
    app = GracefailMiddleware(raw_app(500, body, trailers), secret=SECRET, recorders=[])
    assert [m["type"] for m in drive(app, NAV)] == [
        "http.response.start", "http.response.body", "http.response.trailers"
    ]  # fmt: skip
    pathsend = {"type": "http.response.pathsend", "path": "/srv/www/error.html"}
    app = GracefailMiddleware(raw_app(500, pathsend), secret=SECRET, recorders=[])
    assert [m["type"] for m in drive(app, NAV)] == [
        "http.response.start", "http.response.pathsend"
    ]  # fmt: skip


def test_a_replaced_502_sends_the_page_and_nothing_of_the_app_after_it() -> None:
    pathsend = {"type": "http.response.pathsend", "path": "/srv/www/502.html"}
    app = GracefailMiddleware(raw_app(502, pathsend), secret=SECRET, recorders=[])
    sent = drive(app, NAV)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert b'id="gf-config"' in sent[1]["body"]
    body = {"type": "http.response.body", "body": b"bad gateway", "more_body": False}
    trailers = {"type": "http.response.trailers", "headers": [], "more_trailers": False}
    app = GracefailMiddleware(raw_app(502, body, trailers), secret=SECRET, recorders=[])
    assert [m["type"] for m in drive(app, NAV)] == ["http.response.start", "http.response.body"]
