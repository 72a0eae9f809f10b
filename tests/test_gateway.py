"""The gateway's protocol, in process: ingress-nginx headers, the path form, bad input."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gracefail import Config, ConfigError
from gracefail.events import ClientEvent, ServerEvent
from gracefail.gateway import create_app
from tests.apps.common import ListRecorder

SECRET = "gateway-and-app-share-this-secret"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}


async def ask(app: Any, path: str = "/", method: str = "GET", **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as client:
        return await client.request(method, path, headers=headers)


def gateway(**options: Any) -> tuple[Any, ListRecorder]:
    recorder = ListRecorder()
    options.setdefault("routes", ["/shop/", "/api/"])
    return create_app(Config(secret=SECRET, recorders=[recorder]), **options), recorder


def served(app: Any, recorder: ListRecorder) -> list[ServerEvent]:
    app.engine.flush()
    return [e for e in recorder.events if isinstance(e, ServerEvent)]


@pytest.mark.parametrize(
    ("code", "status", "cause"),
    [
        pytest.param("502", 502, "app_unreachable", id="502"),
        pytest.param("503", 503, "app_unavailable", id="503"),
        pytest.param("504", 504, "app_timeout", id="504"),
        pytest.param("404", 502, "unexpected_code", id="other-code"),
        pytest.param("5o2", 502, "unknown_code", id="garbage"),
    ],
)
async def test_ingress_nginx_headers(code: str, status: int, cause: str) -> None:
    app, recorder = gateway()
    response = await ask(
        app,
        "/",
        **NAV,
        **{
            "x-code": code,
            "x-original-uri": "/shop/cart?step=2",
            "x-request-id": "req-123",
            "x-namespace": "prod",
            "x-service-name": "shop",
        },
    )
    assert response.status_code == status
    assert response.headers["x-gracefail-incident"] == "req-123"
    assert response.headers["cache-control"] == "no-store"
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    assert 'id="gf-config"' in response.text
    (event,) = served(app, recorder)
    # A 503 carries the 502 page; its cause keeps it apart in the report.
    recorded = 504 if status == 504 else 502
    assert (event.source, event.status, event.cause) == ("gateway", recorded, cause)
    assert (event.route, event.upstream) == ("/shop/", "prod/shop")


async def test_x_format_negotiates_like_the_middleware() -> None:
    app, _ = gateway()
    problem = await ask(app, "/", **{"x-code": "504", "x-format": "application/json"})
    assert problem.headers["content-type"].startswith("application/problem+json")
    assert problem.json()["status"] == 504
    text = await ask(app, "/", **{"x-code": "502", "accept": "*/*"})
    assert text.headers["content-type"].startswith("text/plain")
    head = await ask(app, "/", method="HEAD", **{"x-code": "502", **NAV})
    assert (head.status_code, head.content) == (502, b"")


async def test_path_form_and_no_code() -> None:
    app, recorder = gateway()
    assert (await ask(app, "/504", **NAV)).status_code == 504
    assert (await ask(app, "/anything", **NAV)).status_code == 502
    first, second = served(app, recorder)
    assert (first.status, first.cause) == (504, "app_timeout")
    assert (second.cause, second.route) == ("unknown_code", None)


async def test_hostile_original_uri_and_format_are_never_echoed() -> None:
    app, recorder = gateway()
    evil = '/shop/"><script>alert(1)</script>?q=<img src=x onerror=alert(2)>'
    for fmt in ("text/html", "application/json", "text/plain"):
        response = await ask(
            app, "/", **{"x-code": "502", "x-original-uri": evil, "x-format": fmt}
        )
        assert "<script>alert" not in response.text
        assert "<img src=x" not in response.text
    assert {e.route for e in served(app, recorder)} == {"/shop/"}


async def test_probes_are_counted_as_probes() -> None:
    app, recorder = gateway()
    await ask(app, "/", **{"x-code": "502", "x-gracefail-probe": "1", **NAV})
    (event,) = served(app, recorder)
    assert event.probe is True


async def test_beacons_queued_during_the_outage_are_accepted_here_and_by_the_app() -> None:
    """The page's token is signed with the shared secret: the gateway takes its beacon
    while the app is down, and the app's middleware takes the next after recovery."""
    from gracefail.asgi import GracefailMiddleware
    from tests.apps.asgi_app import make_app

    app, recorder = gateway()
    page = await ask(app, "/", **{"x-code": "502", "x-original-uri": "/shop/", **NAV})
    config = json.loads(page.text.split('id="gf-config"', 1)[1].split(">", 1)[1].split("<", 1)[0])
    beacon = {"kind": "shown", "token": config["token"], "attempt": 0, "elapsed_ms": 10,
              "locale": "en"}  # fmt: skip
    body = json.dumps(beacon)
    headers = {"content-type": "text/plain;charset=UTF-8", "origin": "http://shop.example"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as client:
        accepted = await client.post("/_gracefail/beacon", content=body, headers=headers)
    assert accepted.status_code == 204, accepted.text
    app.engine.flush()
    assert any(isinstance(e, ClientEvent) and e.kind == "shown" for e in recorder.events)
    app_recorder = ListRecorder()
    middleware = GracefailMiddleware(make_app(), secret=SECRET, recorders=[app_recorder])
    recovered = json.dumps({**beacon, "kind": "recovered", "elapsed_ms": 900})
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as client:
        later = await client.post("/_gracefail/beacon", content=recovered, headers=headers)
    assert later.status_code == 204, later.text


def test_missing_secret_and_bad_routes_fail_at_start_up() -> None:
    with pytest.raises(ConfigError, match="secret"):
        create_app(Config(secret=None, recorders=[]))
    with pytest.raises(ConfigError, match="routes"):
        create_app(Config(secret=SECRET, recorders=[]), routes=["shop"])


async def test_path_form_without_the_original_url_keeps_the_page_on_its_own_address() -> None:
    """Traefik sends ``GET /502`` and no URL: the no-script retry link must not lead to
    ``/502`` on the app, and there is no route to label."""
    app, recorder = gateway()
    page = await ask(app, "/502", **NAV)
    assert page.status_code == 502
    assert 'href="/502' not in page.text
    assert 'href=""' in page.text
    (event,) = served(app, recorder)
    assert event.route is None


def test_serve_fails_with_a_sentence_on_a_busy_port_or_without_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from click.testing import CliRunner

    from gracefail.cli import main

    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)
    runner = CliRunner()
    no_secret = runner.invoke(main, ["serve", "--port", "0"])
    assert no_secret.exit_code == 2
    assert "needs secret=" in no_secret.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = runner.invoke(main, ["serve", "--port", str(port), "--secret", SECRET])
    assert taken.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in taken.output
    assert "Traceback" not in taken.output


def test_serve_reads_the_apps_own_configuration(tmp_path: Any) -> None:
    """``gracefail serve --app``: the app's brand on the page and the app's secret on the
    token, so nothing is typed twice and the app accepts the page's beacons."""
    import sys

    from tests.apps.common import free_port
    from tests.conftest import start_server, stop

    pytest.importorskip("starlette")
    (tmp_path / "shop.py").write_text(
        "from starlette.applications import Starlette\n"
        "from gracefail.asgi import GracefailMiddleware\n"
        f"app = GracefailMiddleware(Starlette(), secret={SECRET!r}, recorders=[],\n"
        "                           brand={'name': 'Acme Shop'})\n"
    )
    port = free_port()
    proc = start_server(
        [sys.executable, "-m", "gracefail", "serve", "--app", "shop:app", "--port", str(port),
         "--store", str(tmp_path / "gateway.sqlite3")],
        port, cwd=tmp_path,
    )  # fmt: skip
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/", headers={**NAV, "x-code": "502"})
    finally:
        stop(proc)
    assert page.status_code == 502
    assert "Acme Shop" in page.text
    config = json.loads(page.text.split('id="gf-config"', 1)[1].split(">", 1)[1].split("<", 1)[0])
    from gracefail.tokens import TokenSigner

    assert TokenSigner(SECRET, 3600).verify(config["token"]).status == 502
