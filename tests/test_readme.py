"""The README's quickstart works when pasted, installs what it uses, and its Django
settings are complete."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT
from tests.doc_snippets import (
    examples,
    imported_distributions,
    installed_by,
    program_distributions,
    section,
    shell_commands,
)

NAV = {"accept": "text/html,*/*;q=0.8", "sec-fetch-mode": "navigate"}
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRACEFAIL_DB", str(tmp_path / "events.sqlite3"))
    # The quickstart must carry its own secret: without one, gracefail warns at start-up.
    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)


def run(label: str) -> dict[str, Any]:
    [block] = examples(README, label)
    namespace: dict[str, Any] = {"__name__": f"readme_{label.replace(' ', '_')}"}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


async def test_readme_quickstart_serves_the_page(caplog: pytest.LogCaptureFixture) -> None:
    app = run("quickstart")["app"]
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.WARNING, logger="gracefail"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            page = await client.get("/orders", headers=NAV)
            text = await client.get("/orders", headers={"accept": "*/*"})
            problem = await client.get("/orders", headers={"accept": "application/json"})
    assert page.status_code == 502
    assert "Acme" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert text.headers["content-type"].startswith("text/plain")
    assert len(text.text.splitlines()) <= 8
    assert problem.json()["status"] == 502
    assert not [r.getMessage() for r in caplog.records if "secret" in r.getMessage()]


def test_readme_quickstart_installs_what_it_imports_and_runs() -> None:
    quickstart = section(README, "Quickstart")
    commands = shell_commands(quickstart)
    installed = installed_by(commands)
    [code] = examples(quickstart, "quickstart")
    needed = imported_distributions(code) | program_distributions(commands)
    assert "uvicorn" in needed, "the quickstart should say how to run the app"
    assert needed <= installed, f"the quickstart's pip install lacks {needed - installed}"


@pytest.mark.django
def test_readme_django_settings_install_the_app_and_pass_the_checks() -> None:
    pytest.importorskip("django")
    from tests.conformance.harness import django_setup

    django_setup()
    from django.core.checks import run_checks
    from django.core.management import get_commands
    from django.test import override_settings

    readme = run("django settings")
    apps = [app for app in readme["INSTALLED_APPS"] if app is not Ellipsis]
    middleware = [m for m in readme["MIDDLEWARE"] if m is not Ellipsis]
    assert "gracefail.django" in apps
    with override_settings(
        INSTALLED_APPS=apps,
        MIDDLEWARE=middleware,
        GRACEFAIL=readme["GRACEFAIL"],
    ):
        assert "gracefail_report" in get_commands()
        assert [m.id for m in run_checks() if m.id and m.id.startswith("gracefail.")] == []
