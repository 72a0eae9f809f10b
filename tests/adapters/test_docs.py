"""The docs' examples run: each framework page's ``<!-- example -->`` block is executed
and the app it builds must serve the page for an upstream failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT
from tests.doc_snippets import examples, imported_distributions, installed_by, shell_commands

DOCS = ROOT / "docs"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
PAGES = ["flask.md", "wsgi.md", "starlette-fastapi.md", "django.md"]


def example(page: str) -> dict[str, Any]:
    """Run the page's example block; its globals."""
    blocks = examples((DOCS / page).read_text(encoding="utf-8"))
    assert len(blocks) == 1, f"{page} should have exactly one tested example"
    namespace: dict[str, Any] = {"__name__": f"docs_{Path(page).stem.replace('-', '_')}"}
    exec(compile(blocks[0], str(DOCS / page), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


@pytest.fixture(autouse=True)
def _isolated_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    # The examples use the default store; keep it out of the checkout.
    monkeypatch.setenv("GRACEFAIL_DB", str(tmp_path / "events.sqlite3"))
    # Each example carries its secret (or the framework's SECRET_KEY): without one,
    # gracefail warns at start-up that beacons will not survive a restart.
    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)
    with caplog.at_level(logging.WARNING, logger="gracefail"):
        yield
    records = caplog.get_records("call")
    assert not [r.getMessage() for r in records if "secret" in r.getMessage()]


def wsgi_get(app: Any, path: str, headers: dict[str, str] = NAV) -> httpx.Response:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        return client.get(path, headers=headers)


@pytest.mark.flask
def test_flask_page() -> None:
    pytest.importorskip("flask")
    app = example("flask.md")["app"]
    response = wsgi_get(app, "/orders/7")
    assert response.status_code == 504
    assert "Acme" in response.text
    assert "https://status.acme.example" in response.text
    problem = wsgi_get(app, "/orders/7", {"accept": "application/json"}).json()
    assert problem["status"] == 504


@pytest.mark.wsgi
def test_wsgi_page() -> None:
    application = example("wsgi.md")["application"]
    response = wsgi_get(application, "/prices")
    assert response.status_code == 502
    assert "Acme" in response.text
    assert wsgi_get(application, "/").text == "hello"


@pytest.mark.fastapi
def test_starlette_fastapi_page() -> None:
    pytest.importorskip("fastapi")
    app = example("starlette-fastapi.md")["app"]

    async def get(headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/orders/3", headers=headers)

    response = asyncio.run(get(NAV))
    assert response.status_code == 502
    assert "Acme" in response.text
    assert asyncio.run(get({"accept": "application/json"})).json()["status"] == 502


@pytest.mark.django
def test_django_page() -> None:
    pytest.importorskip("django")
    from tests.conformance.harness import django_setup

    django_setup()
    from django.core.checks import run_checks
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings

    settings = example("django.md")
    assert "gracefail.django" in settings["INSTALLED_APPS"]
    with override_settings(MIDDLEWARE=settings["MIDDLEWARE"], GRACEFAIL=settings["GRACEFAIL"]):
        assert [m.id for m in run_checks() if m.id and m.id.startswith("gracefail.")] == []
        response = wsgi_get(get_wsgi_application(), "/fail/upstream-502")
    assert response.status_code == 502
    assert "Acme" in response.text


@pytest.mark.parametrize("page", PAGES)
def test_each_page_installs_what_its_example_imports(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    installed = installed_by(shell_commands(text))
    needed = set().union(*(imported_distributions(code) for code in examples(text)))
    assert needed <= installed, f"{page}'s pip install lacks {needed - installed}"


# What each adapter decides by itself, which its page must say: where the store lands,
# that tests record nothing, what a short SECRET_KEY does, and Django's DEBUG.
DEFAULTS_DOCUMENTED = {
    "django.md": ["follows `DEBUG`", "`BASE_DIR", "record_in_tests", "shorter than 16"],
    "flask.md": ["instance folder", "`TESTING`", "record_in_tests", "shorter than 16"],
    "starlette-fastapi.md": ["working directory", "record_in_tests"],
    "wsgi.md": ["working directory", "record_in_tests"],
}


@pytest.mark.parametrize("page", PAGES)
def test_each_page_says_what_its_adapter_decides(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    missing = [words for words in DEFAULTS_DOCUMENTED[page] if words not in text]
    assert not missing, f"{page} does not say {missing}"
    assert "`pathlib.Path`" in text, f"{page} should say that store takes a pathlib.Path"


@pytest.mark.parametrize("page", PAGES)
def test_each_page_covers_install_setup_options_and_templates(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    for heading in ("## Install", "## Set up", "## Override the page"):
        assert heading in text, f"{page} lacks {heading!r}"
    assert "## Options" in text or "## Settings" in text
    assert "template_dir" in text
