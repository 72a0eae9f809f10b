"""One table of minimum framework versions, and the errors it gives."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from gracefail._compat import MINIMUM_VERSIONS, check_version, require
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("name", "found", "ok"),
    [
        pytest.param("django", "4.1.13", False, id="django-4.1"),
        pytest.param("django", "4.2", True, id="django-4.2"),
        pytest.param("django", "5.2.19", True, id="django-5.2"),
        pytest.param("flask", "2.2.5", False, id="flask-2.2"),
        pytest.param("flask", "2.3.0rc1", True, id="flask-2.3rc"),
        pytest.param("starlette", "0.36.3", False, id="starlette-0.36"),
        pytest.param("fastapi", "0.110.1", True, id="fastapi-0.110"),
        pytest.param("fastapi", "0.99.0", False, id="fastapi-0.99"),
    ],
)
def test_check_version(name: str, found: str, ok: bool) -> None:
    if ok:
        check_version(name, found)
        return
    framework = MINIMUM_VERSIONS[name]
    with pytest.raises(ImportError) as caught:
        check_version(name, found)
    message = str(caught.value)
    assert f"gracefail needs {framework.distribution} {framework.minimum} or newer" in message
    assert f"found {found}" in message
    assert f"gracefail[{framework.extra}]" in message


def test_require_accepts_the_installed_frameworks() -> None:
    for name, framework in MINIMUM_VERSIONS.items():
        pytest.importorskip(framework.module)
        require(name)


def test_pyproject_extras_match_the_table() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for framework in MINIMUM_VERSIONS.values():
        pins = [p for p in extras[framework.extra] if p.lower().startswith(framework.module)]
        assert pins == [f"{framework.distribution}>={framework.minimum}"], framework


def test_noxfile_tests_each_minimum() -> None:
    noxfile = (ROOT / "noxfile.py").read_text()
    assert "MINIMUM_VERSIONS" in noxfile
    assert re.search(r"from gracefail\._compat import MINIMUM_VERSIONS", noxfile)


def test_import_gracefail_imports_no_framework(without: Any) -> None:
    for blocked in ("django", "flask", "starlette", "fastapi", "werkzeug"):
        assert without(blocked, "gracefail, gracefail.wsgi, gracefail.asgi") == "imported"
