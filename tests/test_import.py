"""``import gracefail`` imports no web framework, HTTP client or monitoring library.

Checked in a fresh interpreter: this test process has them all imported already.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import gracefail

FORBIDDEN = (
    "starlette",
    "fastapi",
    "django",
    "flask",
    "werkzeug",
    "httpx",
    "requests",
    "aiohttp",
    "urllib3",
    "httpcore",
    "yarl",
    "grpc",
    "prometheus_client",
    "opentelemetry",
    "psycopg",
)

SCRIPT = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
forbidden = set(json.loads(sys.stdin.read()))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in forbidden)))
"""


def imported_after(modules: list[str], cwd: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *modules],
        input=json.dumps(FORBIDDEN),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize(
    "modules",
    [
        pytest.param(["gracefail"], id="gracefail"),
        pytest.param(["gracefail.config"], id="config"),
        pytest.param(["gracefail.core"], id="core"),
        pytest.param(
            [
                "gracefail",
                "gracefail.config",
                "gracefail.core",
                "gracefail.classify",
                "gracefail.negotiate",
                "gracefail.tokens",
                "gracefail.beacon",
                "gracefail.events",
                "gracefail.errors",
            ],
            id="all-core-modules",
        ),
    ],
)
def test_import_pulls_in_no_optional_library(modules: list[str], tmp_path: Path) -> None:
    assert imported_after(modules, tmp_path) == []


def test_public_names() -> None:
    for name in ("Config", "Brand", "RetryPolicy", "UpstreamError", "ConfigError", "__version__"):
        assert name in gracefail.__all__
        assert getattr(gracefail, name) is not None


def test_version_matches_installed_metadata() -> None:
    try:
        installed = importlib.metadata.version("gracefail")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gracefail is not installed (running from a bare checkout)")
    assert gracefail.__version__ == installed


def test_version_is_a_release_string() -> None:
    parts = gracefail.__version__.split(".")
    assert len(parts) >= 3
    assert all(part.isdigit() for part in parts[:2])
