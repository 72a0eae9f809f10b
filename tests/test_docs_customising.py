"""docs/customising.md works as written: its theme file and locale file, its words for one
route, and its example for each framework (the two-block theme found where that framework
keeps templates), run here; its tables of strings and blocks are the code's."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gracefail import Config
from gracefail.classify import Failure
from gracefail.core import Engine, RequestView
from tests.conftest import ROOT
from tests.doc_snippets import examples

PAGE = ROOT / "docs" / "customising.md"
TEXT = PAGE.read_text(encoding="utf-8")
FILE = re.compile(r"<!-- file: (\S+) -->\s*```\w*\n(.*?)```", re.S)
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
HEADER = "<span>☎ +1 555 0100</span>"
PAYMENT = "<h1>Your payment may not have gone through</h1>"
SECRET = "docs-customising-0123456789"


def run(label: str, **names: Any) -> dict[str, Any]:
    [block] = examples(TEXT, f": {label}")
    namespace: dict[str, Any] = {"__name__": f"docs_customising_{label}", **names}
    exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def write_files(project: Path, theme: str) -> None:
    """The page's files (theme/page.html, theme/locales/de.json) under ``project/theme``."""
    for path, content in FILE.findall(TEXT):
        target = project / theme / Path(path).relative_to("theme")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


@pytest.fixture(autouse=True)
def _isolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    monkeypatch.setenv("GRACEFAIL_DB", str(tmp_path / "events.sqlite3"))
    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)
    with caplog.at_level(logging.WARNING, logger="gracefail"):
        yield
    # Nothing fell back to the built-in page, and every example carries its secret.
    assert not [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not [r.getMessage() for r in caplog.get_records("call") if "secret" in r.getMessage()]


def assert_themed(body: str) -> None:
    assert HEADER in body, "the two-block theme's header"
    assert PAYMENT in body, "the route's words"
    assert 'id="gf-ls"' in body, "the built-in retry panel is kept"


def test_every_python_example_is_run_here() -> None:
    labels = {marker.strip(" :") for marker, _ in re.findall(
        r"<!-- example([^>]*)-->\s*```python\n(.*?)```", TEXT, re.S)}  # fmt: skip
    assert labels == {"words", "fastapi", "flask", "django", "wsgi"}
    assert [path for path, _ in FILE.findall(TEXT)] == ["theme/page.html", "theme/locales/de.json"]


def test_the_words_for_one_route() -> None:
    settings = run("words")["GRACEFAIL"]
    gracefail = Engine(Config.from_mapping({**settings, "secret": SECRET, "recorders": []}))

    def page(path: str, language: str = "en") -> str:
        view = RequestView("POST", path, "", {**NAV, "accept-language": language})
        return html.unescape(gracefail.respond(Failure(504, "timeout"), view).body.decode())

    english = page("/checkout/pay")
    assert "<h1>Your payment may not have gone through</h1>" in english
    assert "Before you pay again, open Your orders" in english
    assert "Our payment provider did not answer in time." in english
    assert "Unser Zahlungsanbieter hat nicht rechtzeitig geantwortet." in page("/checkout", "de")
    french = page("/checkout", "fr")
    assert gracefail.renderer.locales["fr"]["explain_timeout"] in french, "French keeps its own"
    assert "Your payment" not in page("/cart")


def test_the_theme_and_its_locale_file(tmp_path: Path) -> None:
    write_files(tmp_path, "theme")
    gracefail = Engine(Config(secret=SECRET, recorders=[], template_dir=tmp_path / "theme"))
    view = RequestView("GET", "/", "", {**NAV, "accept-language": "de"})
    text = gracefail.respond(Failure(502, "connection"), view).body.decode()
    assert HEADER in text
    assert "<h1>Diese Seite ist gleich wieder da</h1>" in text
    assert "Warten Sie einen Moment" in text
    assert dict(gracefail.renderer.wording.missing) == {}


@pytest.mark.fastapi
def test_starlette_and_fastapi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    write_files(tmp_path, "theme")
    monkeypatch.chdir(tmp_path)
    app = run("fastapi")["app"]

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/checkout/pay", headers=NAV)

    response = asyncio.run(post())
    assert response.status_code == 504
    assert_themed(response.text)


@pytest.mark.flask
def test_flask_finds_the_theme_in_its_templates_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flask")
    from gracefail.flask import Gracefail

    write_files(tmp_path, "templates/gracefail")
    monkeypatch.chdir(tmp_path)  # an app whose module has no file: its root is here
    app = run("flask")["app"]
    assert Gracefail.engine(app).config.template_dir == str(tmp_path / "templates" / "gracefail")
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        response = client.post("/checkout/pay", headers=NAV)
    assert response.status_code == 504
    assert_themed(response.text)


@pytest.mark.flask
def test_flask_finds_locales_alone_and_keeps_a_named_template_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flask")
    from flask import Flask

    from gracefail.flask import Gracefail

    write_files(tmp_path, "templates/gracefail")
    (tmp_path / "templates" / "gracefail" / "page.html").unlink()
    app = Flask("shop", root_path=str(tmp_path))
    app.config["SECRET_KEY"] = SECRET
    Gracefail(app, recorders=[])
    assert Gracefail.engine(app).renderer.locales["de"]["heading"].startswith("Diese Seite")
    other = Flask("shop", root_path=str(tmp_path))
    other.config.update(SECRET_KEY=SECRET, GRACEFAIL={"template_dir": None})
    Gracefail(other, recorders=[])
    assert Gracefail.engine(other).config.template_dir is None


@pytest.mark.django
def test_django_finds_the_theme_in_its_template_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("django")
    from tests.conformance.harness import django_setup

    django_setup()
    from django.core.checks import run_checks
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpRequest, HttpResponse
    from django.test import override_settings
    from django.urls import path

    from gracefail import UpstreamError
    from gracefail.django.conf import get_config

    def pay(request: HttpRequest) -> HttpResponse:
        raise UpstreamError(504, upstream="payments")

    urls = types.ModuleType("docs_customising_urls")
    urls.urlpatterns = [path("checkout/pay", pay)]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, urls.__name__, urls)
    write_files(tmp_path, "templates/gracefail")
    settings = run("django", BASE_DIR=tmp_path)
    gracefail_settings = {**settings["GRACEFAIL"], "recorders": []}
    with override_settings(
        TEMPLATES=settings["TEMPLATES"], GRACEFAIL=gracefail_settings, ROOT_URLCONF=urls.__name__
    ):
        assert get_config().template_dir == str(tmp_path / "templates" / "gracefail")
        assert [m.id for m in run_checks() if m.id and m.id.startswith("gracefail.E")] == []
        with httpx.Client(
            transport=httpx.WSGITransport(app=get_wsgi_application()), base_url="http://t"
        ) as client:
            response = client.post("/checkout/pay", headers=NAV)
        assert response.status_code == 504
        assert_themed(response.text)
        # A theme that drops an element the script needs: the system check names it.
        page = tmp_path / "templates" / "gracefail" / "page.html"
        page.write_text(
            '{% extends "gracefail/base.html" %}{% block panel %}{% endblock %}', encoding="utf-8"
        )
        [error] = [m for m in run_checks() if m.id == "gracefail.E005"]
        assert 'lacks the elements it drives: id="gf-back"' in error.msg
        # Words only: a gracefail/locales/ folder without a page.html is found too.
        page.unlink()
        assert get_config().template_dir == str(tmp_path / "templates" / "gracefail")
        assert [m.id for m in run_checks() if m.id and m.id.startswith("gracefail.E")] == []


@pytest.mark.wsgi
def test_any_wsgi_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_files(tmp_path, "theme")
    monkeypatch.chdir(tmp_path)
    application = run("wsgi")["application"]
    with httpx.Client(transport=httpx.WSGITransport(app=application), base_url="http://t") as c:
        response = c.post("/checkout/pay", headers=NAV)
        assert c.get("/").text == "ok"
    assert response.status_code == 504
    assert_themed(response.text)


def test_the_strings_table_is_the_english_locale() -> None:
    english = json.loads((ROOT / "src" / "gracefail" / "locales" / "en.json").read_text("utf-8"))
    table = TEXT.split("<!-- strings:", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", table, re.M)
    assert rows == list(english.items())


def test_the_blocks_table_is_base_htmls() -> None:
    base = (ROOT / "src" / "gracefail" / "templates" / "base.html").read_text("utf-8")
    blocks = re.findall(r"\{% block (\w+) %\}", re.sub(r"\{#.*?#\}", "", base, flags=re.S))
    section = TEXT.split("\n## Blocks\n", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", section, re.M) == blocks


def test_the_variables_table_is_what_the_renderer_passes() -> None:
    render = (ROOT / "src" / "gracefail" / "render.py").read_text("utf-8")
    call = render.split("text = template.render(", 1)[1].split("\n        )", 1)[0]
    passed = set(re.findall(r"^\s+(\w+)=", call, re.M))
    section = TEXT.split("\n## Variables\n", 1)[1].split("\n## ", 1)[0]
    documented = {name for cell in re.findall(r"^\| (.*?) \|", section, re.M)
                  for name in re.findall(r"`(\w+)`", cell)}  # fmt: skip
    assert documented == passed
