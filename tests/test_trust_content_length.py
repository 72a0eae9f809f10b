"""Issue 12: a Content-Length that is not ASCII digits is a 400 on every adapter.

``"²".isdigit()`` is true and ``int("²")`` raises: the beacon endpoint answered 500,
even to methods it refuses. httpx's WSGI transport cannot carry such a header, so
the WSGI adapters get a hand-made environ here, and the ASGI ones (and the gateway)
the raw header bytes; the conformance table has an ASCII row for every adapter.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest

from tests.apps import common

BEACON_PATH = "/_gracefail/beacon"
# Superscript two, Arabic-Indic three, full-width one, a fraction: str.isdigit() (or
# int()) says yes to some, and none is a Content-Length.
NOT_ASCII = ["²", "٣", "\uff11", "½", "12²"]
ASCII_BAD = ["12abc", "+5", "-1", "0x10", "1e3", "5, 5", "1 2"]


def options() -> dict[str, Any]:
    return {"secret": common.SECRET, "recorders": [common.ListRecorder()]}


@pytest.mark.parametrize("value", NOT_ASCII + ASCII_BAD)
def test_only_ascii_digits_are_a_length(value: str) -> None:
    from gracefail.views import MALFORMED, content_length

    assert content_length({"content-length": value}) == MALFORMED


@pytest.mark.parametrize(
    ("value", "length"),
    [("0", 0), ("42", 42), (" 42 ", 42), ("", None), ("9" * 400, 10**18), ("007", 7)],
)
def test_lengths(value: str, length: int | None) -> None:
    from gracefail.views import content_length

    assert content_length({"content-length": value}) == length


def test_absent() -> None:
    from gracefail.views import content_length

    assert content_length({}) is None


# -- every adapter ---------------------------------------------------------------------------


def _werkzeug() -> Any:
    pytest.importorskip("werkzeug")
    from gracefail.wsgi import GracefailMiddleware
    from tests.apps import wsgi_app

    return GracefailMiddleware(wsgi_app.make_app(), **options())


def _flask() -> Any:
    pytest.importorskip("flask")
    from tests.apps import flask_app

    return flask_app.make_wrapped(**options())


@pytest.fixture
def django_settings() -> Iterator[Callable[[str], None]]:
    overrides: list[Any] = []

    def use(urlconf: str) -> None:
        pytest.importorskip("django")
        from tests.conformance.harness import django_setup

        django_setup()
        from django.test.utils import override_settings

        override = override_settings(GRACEFAIL=options(), ROOT_URLCONF=urlconf)
        override.enable()
        overrides.append(override)

    yield use
    for override in overrides:
        override.disable()


def _call_wsgi(app: Any, method: str, length: str) -> tuple[int, bytes]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        {
            "REQUEST_METHOD": method,
            "PATH_INFO": BEACON_PATH,
            "CONTENT_TYPE": "text/plain;charset=UTF-8",
            "CONTENT_LENGTH": length,
            "wsgi.input": io.BytesIO(common.beacon_body()),
        }
    )
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(statuses[0].split()[0]), body


@pytest.mark.parametrize("method", ["POST", "GET", "PUT"])
@pytest.mark.parametrize("length", NOT_ASCII)
@pytest.mark.parametrize("adapter", ["werkzeug", "flask", "django-wsgi"])
def test_wsgi_adapters_answer_400(
    adapter: str, length: str, method: str, django_settings: Callable[[str], None]
) -> None:
    if adapter == "django-wsgi":
        django_settings("tests.apps.django_project.urls_sync")
        from django.core.wsgi import get_wsgi_application

        app = get_wsgi_application()
    else:
        app = _werkzeug() if adapter == "werkzeug" else _flask()
    status, body = _call_wsgi(app, method, length)
    assert status == 400, body
    assert b"Content-Length" in body


def _asgi_app(adapter: str, django_settings: Callable[[str], None]) -> Any:
    if adapter == "starlette":
        pytest.importorskip("starlette")
        from tests.apps import starlette_app

        return starlette_app.make_wrapped(**options())
    if adapter == "fastapi":
        pytest.importorskip("fastapi")
        from tests.apps import fastapi_app

        return fastapi_app.make_wrapped(**options())
    if adapter == "gateway":
        pytest.importorskip("starlette")
        from gracefail.gateway import create_app

        return create_app(**options())
    django_settings("tests.apps.django_project.urls_async")
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("length", NOT_ASCII)
@pytest.mark.parametrize("adapter", ["starlette", "fastapi", "django-asgi", "gateway"])
async def test_asgi_adapters_answer_400(
    adapter: str, length: str, method: str, django_settings: Callable[[str], None]
) -> None:
    if adapter == "gateway" and method == "GET":
        pytest.skip("the gateway answers every GET with the page (it is the error backend)")
    app = _asgi_app(adapter, django_settings)
    try:
        raw = length.encode("latin-1")  # what a server decodes back to ``length``
    except UnicodeEncodeError:
        raw = length.encode()
    headers = {"content-type": "text/plain;charset=UTF-8", "content-length": raw}
    async with common.asgi_client(app) as client:
        request = httpx.Request(
            method, "http://testserver" + BEACON_PATH, headers=headers, content=b""
        )
        response = await client.send(request)
    assert response.status_code == 400, response.text
    assert "Content-Length" in response.text
