"""The Django middleware, settings, system checks and management command."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("django")

from tests.conformance.harness import django_setup, find

django_setup()

from asgiref.sync import iscoroutinefunction  # noqa: E402 - imported once Django is set up (above)
from django.core.asgi import get_asgi_application  # noqa: E402 - imported once Django is set up (above)
from django.core.checks import run_checks  # noqa: E402 - imported once Django is set up (above)
from django.core.exceptions import ImproperlyConfigured  # noqa: E402 - imported once Django is set up (above)
from django.core.management import call_command  # noqa: E402 - imported once Django is set up (above)
from django.core.management.base import CommandError  # noqa: E402 - imported once Django is set up (above)
from django.core.wsgi import get_wsgi_application  # noqa: E402 - imported once Django is set up (above)
from django.test import AsyncClient, Client, override_settings  # noqa: E402 - imported once Django is set up (above)

from gracefail.django import GracefailMiddleware  # noqa: E402 - imported once Django is set up (above)
from gracefail.django.conf import get_config  # noqa: E402 - imported once Django is set up (above)
from gracefail.events import ServerEvent  # noqa: E402 - imported once Django is set up (above)
from gracefail.wsgi import GracefailMiddleware as WSGIMiddleware  # noqa: E402 - imported once Django is set up (above)
from tests.apps import common  # noqa: E402 - imported once Django is set up (above)

pytestmark = pytest.mark.django

NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
ASYNC_URLS = "tests.apps.django_project.urls_async"
BASE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "gracefail.django.GracefailMiddleware",
    "django.middleware.common.CommonMiddleware",
]


@pytest.fixture
def recorder() -> Iterator[common.ListRecorder]:
    recorder = common.ListRecorder()
    with override_settings(GRACEFAIL={"secret": common.SECRET, "recorders": [recorder]}):
        yield recorder


def engine_of(handler: Any) -> Any:
    return find(handler._middleware_chain, GracefailMiddleware, "get_response").engine


def gracefail_checks() -> list[str]:
    return sorted(m.id for m in run_checks() if m.id and m.id.startswith("gracefail."))


def wsgi_client(app: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver")


def asgi_get(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(path, headers=headers)

    return asyncio.run(go())


# -- the middleware -------------------------------------------------------------------------


def test_django_test_client(recorder: common.ListRecorder) -> None:
    response = Client().get("/fail/upstream-502", headers=NAV)
    assert response.status_code == 502
    assert response["content-type"] == "text/html; charset=utf-8"
    assert response["x-gracefail-incident"] in response.content.decode()


@override_settings(ROOT_URLCONF=ASYNC_URLS)
async def test_django_async_test_client(recorder: common.ListRecorder) -> None:
    response = await AsyncClient().get("/fail/httpx-read-timeout", headers=NAV)
    assert response.status_code == 504
    assert (await AsyncClient().get("/ok")).content == b"hello"


@override_settings(ROOT_URLCONF=ASYNC_URLS)
def test_async_views_run_on_the_event_loop_thread(recorder: common.ListRecorder) -> None:
    handler = get_asgi_application()
    middleware = find(handler._middleware_chain, GracefailMiddleware, "get_response")
    assert middleware.async_mode
    assert iscoroutinefunction(middleware)
    response = asgi_get(handler, "/thread")
    assert response.text == str(threading.get_ident()), "no thread hop for async views"


def test_sync_mode_under_wsgi(recorder: common.ListRecorder) -> None:
    handler = get_wsgi_application()
    middleware = find(handler._middleware_chain, GracefailMiddleware, "get_response")
    assert not middleware.async_mode
    assert GracefailMiddleware.sync_capable
    assert GracefailMiddleware.async_capable


def test_beacon_is_answered_without_the_urlconf(recorder: common.ListRecorder) -> None:
    with (
        override_settings(ROOT_URLCONF="tests.apps.django_project.no_such_urls"),
        wsgi_client(get_wsgi_application()) as client,
    ):
        beacon = client.post(
            "/_gracefail/beacon", content=b"{}", headers={"sec-fetch-site": "cross-site"}
        )
        assert beacon.status_code == 403
        with pytest.raises(ModuleNotFoundError):
            client.get("/ok")


def test_template_from_django_template_dirs(tmp_path: Path, recorder: common.ListRecorder) -> None:
    (tmp_path / "gracefail").mkdir()
    (tmp_path / "gracefail" / "page.html").write_text(
        "<!doctype html><title>{{ brand.name }}</title>"
        "{% if safe %}<p>Our own page {{ status }}</p>{% endif %}<p>{{ incident }}</p>",
        encoding="utf-8",
    )
    templates = [
        {"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [str(tmp_path)]}
    ]
    with override_settings(TEMPLATES=templates):
        assert get_config().template_dir == str(tmp_path / "gracefail")
        with wsgi_client(get_wsgi_application()) as client:
            response = client.get("/fail/upstream-502", headers=NAV)
        assert gracefail_checks() == ["gracefail.W001"]
    assert "Our own page 502" in response.text
    assert get_config().template_dir is None


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param({"status_page_ur": "https://s.example"},
                     "GRACEFAIL: unknown option 'status_page_ur'; did you mean 'status_page_url'",
                     id="unknown-key"),
        pytest.param({"brand": {"nme": "Acme"}},
                     "GRACEFAIL: unknown option 'brand.nme'; did you mean 'brand.name'",
                     id="nested-key"),
        pytest.param({"retry": {"retry_after": -1}}, "retry.retry_after=-1", id="bad-value"),
        pytest.param("acme", "GRACEFAIL must be a dict", id="not-a-dict"),
    ],
)  # fmt: skip
def test_bad_settings_raise_improperly_configured(setting: Any, message: str) -> None:
    with override_settings(GRACEFAIL=setting):
        with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(")):
            get_wsgi_application()
        assert gracefail_checks() == ["gracefail.E001", "gracefail.W001"]


def test_keys_in_either_case_and_nested_dicts() -> None:
    setting = {"STATUS_PAGE_URL": "https://status.acme.example", "Brand": {"NAME": "Acme"},
               "retry": {"Retry_After": 7}, "recorders": []}  # fmt: skip
    with override_settings(GRACEFAIL=setting):
        config = get_config()
    assert (config.status_page_url, config.brand.name, config.retry.retry_after) == (
        "https://status.acme.example",
        "Acme",
        7,
    )


def test_secret_derived_from_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)
    with override_settings(GRACEFAIL={"recorders": []}):
        derived = get_config().secret
        with override_settings(SECRET_KEY="another-key-0123456789abcdefghij"):
            other = get_config().secret
    assert isinstance(derived, str)
    assert len(derived) == 64
    assert derived != other
    with override_settings(GRACEFAIL={"secret": common.SECRET, "recorders": []}):
        assert get_config().secret == common.SECRET


# -- system checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        pytest.param(BASE_MIDDLEWARE, [], id="clean"),
        pytest.param(BASE_MIDDLEWARE[:1] + BASE_MIDDLEWARE[2:], ["gracefail.E002"], id="missing"),
        pytest.param([BASE_MIDDLEWARE[0], BASE_MIDDLEWARE[2], BASE_MIDDLEWARE[1]],
                     ["gracefail.E003"], id="after-common"),
        pytest.param([*BASE_MIDDLEWARE, "tests.apps.django_project.middleware.AppErrorMiddleware"],
                     ["gracefail.W001"], id="exception-handler-below"),
        pytest.param([*BASE_MIDDLEWARE, "gracefail.django.middleware.GracefailMiddleware"],
                     ["gracefail.W002"], id="twice"),
    ],
)  # fmt: skip
def test_middleware_checks(middleware: list[str], expected: list[str]) -> None:
    with override_settings(MIDDLEWARE=middleware, GRACEFAIL={"recorders": []}):
        assert gracefail_checks() == expected


def test_check_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)
    with override_settings(SECRET_KEY="", MIDDLEWARE=BASE_MIDDLEWARE, GRACEFAIL={}):
        assert gracefail_checks() == ["gracefail.E004"]


def test_check_broken_template(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("{% if %}", encoding="utf-8")
    setting = {"template_dir": str(tmp_path), "recorders": []}
    with override_settings(MIDDLEWARE=BASE_MIDDLEWARE, GRACEFAIL=setting):
        [message] = [m for m in run_checks() if m.id == "gracefail.E005"]
    assert str(tmp_path) in message.msg


# -- stacks ---------------------------------------------------------------------------------


def test_two_django_middlewares_warn_and_serve_one_page(recorder: common.ListRecorder) -> None:
    twice = [*BASE_MIDDLEWARE, "gracefail.django.middleware.GracefailMiddleware"]
    with override_settings(MIDDLEWARE=twice):
        handler = get_wsgi_application()
        with wsgi_client(handler) as client:
            with pytest.warns(RuntimeWarning, match="second"):
                response = client.get("/fail/upstream-502", headers=NAV)
            replaced = client.get("/app-status/502", headers=NAV)
        engine_of(handler).flush()
    assert response.text.count("<html") == 1
    assert replaced.text.count("<html") == 1
    causes = [e.cause for e in recorder.events if isinstance(e, ServerEvent)]
    assert causes == ["upstream_error", "app_response"], "one event per request"


def test_wsgi_middleware_around_django_wins(recorder: common.ListRecorder) -> None:
    outer_recorder = common.ListRecorder()
    handler = get_wsgi_application()
    outer = WSGIMiddleware(handler, secret=common.SECRET, recorders=[outer_recorder])
    with wsgi_client(outer) as client:
        with pytest.warns(RuntimeWarning, match="second"):
            response = client.get("/fail/connection-refused", headers=NAV)
        replaced = client.get("/app-status/504", headers=NAV)
    outer.engine.flush()
    engine_of(handler).flush()
    assert (response.status_code, response.text.count("<html")) == (502, 1)
    assert (replaced.status_code, replaced.text.count("<html")) == (504, 1)
    assert [e.cause for e in outer_recorder.events] == ["connection", "app_response"]
    assert recorder.events == []


# -- management command ---------------------------------------------------------------------


def test_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "events.sqlite3")
    with override_settings(GRACEFAIL={"store": store, "secret": common.SECRET}):
        handler = get_wsgi_application()
        with wsgi_client(handler) as client:
            client.get("/fail/upstream-504", headers=NAV)
        engine_of(handler).flush()
        if importlib.util.find_spec("gracefail.report") is None:
            with pytest.raises(CommandError, match="the report needs gracefail's event store"):
                call_command("gracefail_report")
            return
        capsys.readouterr()
        call_command("gracefail_report", "--format", "json")
    report = json.loads(capsys.readouterr().out)
    assert (report["failures"], report["by_route"][0]["route"]) == (1, "/fail/<str:kind>")


def test_missing_django_says_what_to_install(without: Any) -> None:
    assert "pip install 'gracefail[django]'" in without("django", "gracefail.django")
