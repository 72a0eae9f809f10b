"""The command line: preview, check, export, and ``python -m gracefail``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import gracefail
from gracefail.cli import main
from gracefail.config import LOCALES
from tests.conftest import ROOT


def test_preview_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    result = CliRunner().invoke(
        main,
        ["preview", "--status", "504", "--locale", "ja", "--method", "POST", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert '<html lang="ja"' in text
    assert '"status":504' in text
    assert '"safe":false' in text


def test_preview_rejects_a_bad_colour_naming_it() -> None:
    result = CliRunner().invoke(main, ["preview", "--color", "pink"])
    assert result.exit_code == 2
    assert "brand.color" in result.output


def test_check_summarises_what_it_checked_for_people(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRACEFAIL_DB", str(tmp_path / "events.sqlite3"))
    monkeypatch.setenv("GRACEFAIL_SECRET", "check-secret-0123456789")
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("checked: the defaults and the environment")
    assert "  template  the built-in page" in lines
    assert "28 variants render" in result.output
    assert re.search(r"^    ja +[0-9,]+ +[0-9,]+ +[0-9,]+ +[0-9,]+$", result.output, re.M)
    assert f"  store     {tmp_path / 'events.sqlite3'} (SQLite" in result.output
    assert "  secret    set" in lines
    assert "warnings:" not in lines
    assert lines[-1] == "OK"
    assert "{" not in result.output


def test_check_json_is_for_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)
    result = CliRunner().invoke(main, ["check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert report["variants"] == len(report["pages"]) == 28
    assert {page["locale"] for page in report["pages"]} == set(LOCALES)
    assert all(0 < page["size"] <= report["budget"] for page in report["pages"])
    assert report["over_budget"] == []
    assert report["secret"] is False
    assert any(warning.startswith("no secret") for warning in report["warnings"])


def test_check_fails_for_pages_over_budget(tmp_path: Path) -> None:
    built_in = Path(gracefail.__file__).parent / "templates" / "base.html"  # a whole page
    page = built_in.read_text(encoding="utf-8").replace("</body>", f"<p>{'x' * 6000}</p></body>")
    (tmp_path / "page.html").write_text(page, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "--template-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"  template  {tmp_path / 'page.html'}" in result.output
    assert result.output.splitlines()[-1].startswith("FAILED: 28 of 28 variants are over")


def test_check_fails_for_a_broken_template(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("{% if %}")
    result = CliRunner().invoke(main, ["check", "--template-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "does not render" in result.output


def test_export_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "pages"
    first = CliRunner().invoke(main, ["export", "--out", str(out), "--brand", "Acme"])
    assert first.exit_code == 0, first.output
    assert "Acme" in (out / "502.html").read_text(encoding="utf-8")
    again = CliRunner().invoke(main, ["export", "--out", str(out)])
    assert again.exit_code == 1
    assert "--force" in again.output
    forced = CliRunner().invoke(main, ["export", "--out", str(out), "--force"])
    assert forced.exit_code == 0


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gracefail", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("preview", "check", "export", "report", "demo"):
        assert command in result.stdout


# -- the app's own configuration: --app (Flask, ASGI, WSGI) and --settings (Django) -------

FLASK_APP = """
    from flask import Flask
    from gracefail.flask import Gracefail

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "a-long-enough-secret-key-for-tests"
    app.config["GRACEFAIL"] = {
        "brand": {"name": "Flask Shop", "color": "#b91c1c"},
        "status_page_url": "https://status.flask.example",
        "retry": {"retry_after": 7},
    }
    Gracefail(app)

    def create_app():
        return app
"""

FASTAPI_APP = """
    from fastapi import FastAPI
    from gracefail import Brand
    from gracefail.asgi import GracefailMiddleware

    app = FastAPI()
    app.add_middleware(
        GracefailMiddleware,
        brand=Brand(name="Fast Shop", color="#0f766e"),
        retry={"retry_after": 9, "base": 1.0},
        secret="a-long-enough-secret-for-tests",
    )
"""

STARLETTE_WRAPPED = """
    from starlette.applications import Starlette
    from gracefail.asgi import GracefailMiddleware

    app = GracefailMiddleware(Starlette(), brand={"name": "Wrapped Shop"})
"""

WSGI_WRAPPED = """
    from gracefail.wsgi import GracefailMiddleware

    def inner(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    application = GracefailMiddleware(inner, brand={"name": "Plain Shop"})
"""


def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """A module written into a fresh working directory; its (unique) name."""
    name = f"shop_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


@pytest.mark.flask
def test_export_takes_a_flask_apps_brand_and_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flask")
    module = project(tmp_path, monkeypatch, FLASK_APP)
    result = CliRunner().invoke(main, ["export", "--out", "pages", "--app", f"{module}:app"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "pages" / "502.html").read_text(encoding="utf-8")
    assert "Flask Shop" in page
    assert "#b91c1c" in page
    assert "https://status.flask.example" in page
    assert 'Retry-After "7"' in (tmp_path / "pages" / "csp.conf").read_text()
    assert f"from the app {module}:app" in result.output


@pytest.mark.flask
def test_export_flags_win_over_the_apps_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flask")
    module = project(tmp_path, monkeypatch, FLASK_APP)
    result = CliRunner().invoke(
        main,
        [
            *("export", "--out", "pages", "--app", f"{module}:create_app()"),
            *("--brand", "Acme", "--retry-after", "3"),
        ],
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "pages" / "502.html").read_text(encoding="utf-8")
    assert "Acme" in page
    assert "Flask Shop" not in page
    assert "#b91c1c" in page, "the app's colour stays: only the name was given"
    assert 'Retry-After "3"' in (tmp_path / "pages" / "csp.conf").read_text()


@pytest.mark.parametrize(
    ("source", "attr", "brand"),
    [
        pytest.param(FASTAPI_APP, "app", "Fast Shop", id="fastapi-add-middleware"),
        pytest.param(STARLETTE_WRAPPED, "app", "Wrapped Shop", id="starlette-wrapped"),
        pytest.param(WSGI_WRAPPED, "application", "Plain Shop", id="wsgi-wrapped"),
    ],
)
def test_export_finds_the_middleware_in_an_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, attr: str, brand: str
) -> None:
    pytest.importorskip("fastapi")
    module = project(tmp_path, monkeypatch, source)
    result = CliRunner().invoke(main, ["export", "--out", "pages", "--app", f"{module}:{attr}"])
    assert result.exit_code == 0, result.output
    assert brand in (tmp_path / "pages" / "504.html").read_text(encoding="utf-8")


def test_export_says_what_is_wrong_with_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = project(tmp_path, monkeypatch, "app = object()\n")
    runner = CliRunner()
    cases = {
        "no-colon": (["--app", module], "expected MODULE:ATTR"),
        "missing-module": (["--app", "no_such_module_here:app"], "cannot import"),
        "missing-attr": (["--app", f"{module}:nothing"], "has no attribute 'nothing'"),
        "no-middleware": (["--app", f"{module}:app"], "has no GracefailMiddleware"),
        "both": (["--app", f"{module}:app", "--settings", "x"], "not both"),
    }
    for case, (args, message) in cases.items():
        result = runner.invoke(main, ["export", "--out", "pages", *args])
        assert result.exit_code != 0, case
        assert message in result.output, (case, result.output)
    assert not (tmp_path / "pages").exists()


@pytest.mark.flask
def test_check_reads_a_flask_app_and_lists_its_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flask")
    monkeypatch.delenv("GRACEFAIL_DB", raising=False)
    short_key = FLASK_APP.replace("a-long-enough-secret-key-for-tests", "short")
    module = project(tmp_path, monkeypatch, short_key)
    result = CliRunner().invoke(main, ["check", "--app", f"{module}:app", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["checked"] == f"the app {module}:app"
    assert report["store"].startswith(str(tmp_path / "instance" / "gracefail.sqlite3"))
    assert any("SECRET_KEY is shorter than 16" in warning for warning in report["warnings"])


DJANGO_SETTINGS = """
    from pathlib import Path

    BASE_DIR = Path(__file__).resolve().parent.parent
    SECRET_KEY = "a-long-enough-secret-key-for-tests"
    DEBUG = True
    INSTALLED_APPS = ["gracefail.django"]
    MIDDLEWARE = ["gracefail.django.GracefailMiddleware"]
    GRACEFAIL = {
        "brand": {"name": "Django Shop", "color": "#1d4ed8"},
        "retry": {"retry_after": 8},
    }
"""


def gracefail_command(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in a fresh process (Django's settings are set up once per process), with
    a developer's environment (no GRACEFAIL_DB)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "GRACEFAIL_"))
    }
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run(
        [sys.executable, "-m", "gracefail", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.django
def test_export_and_check_read_django_settings(tmp_path: Path) -> None:
    pytest.importorskip("django")
    (tmp_path / "djshop").mkdir()
    (tmp_path / "djshop" / "__init__.py").write_text("")
    (tmp_path / "djshop" / "settings.py").write_text(textwrap.dedent(DJANGO_SETTINGS))
    export = gracefail_command(
        tmp_path, "export", "--out", "pages", "--settings", "djshop.settings"
    )
    assert export.returncode == 0, export.stderr
    assert "Django Shop" in (tmp_path / "pages" / "502.html").read_text(encoding="utf-8")
    assert 'Retry-After "8"' in (tmp_path / "pages" / "csp.conf").read_text()

    check = gracefail_command(tmp_path, "check", "--settings", "djshop.settings")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("checked: Django settings djshop.settings")
    assert f"  store     {tmp_path / 'gracefail.sqlite3'} (SQLite" in check.stdout
    assert "debug is on" in check.stdout, "DEBUG = True turns gracefail's debug on"

    missing = gracefail_command(tmp_path, "check", "--settings", "djshop.nowhere")
    assert missing.returncode == 1
    assert "Django settings djshop.nowhere" in missing.stderr
