"""The framework version matrix: each adapter against its lowest supported and latest release.

``python -m nox`` (run by ``make test`` after the main pytest run) builds one virtualenv
per (framework, version) with uv, installs gracefail from a built wheel (not the
checkout), pins the framework, and runs only the conformance and adapter tests
marked for it. The lowest versions come from ``gracefail._compat.MINIMUM_VERSIONS``,
the one table the adapters check at import; "latest" is whatever the newest
release is that installs on this Python.

``python -m nox -l`` lists the sessions; ``python -m nox -s "tests(django-lowest)"``
runs one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
from gracefail._compat import MINIMUM_VERSIONS  # noqa: E402 - needs src/ on the path

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

COMMON = [
    "pytest>=8", "pytest-asyncio>=0.23", "httpx>=0.27", "uvicorn>=0.29", "gunicorn>=22",
    "trio>=0.23",
]  # fmt: skip
# Each framework's adapter tests besides the conformance suite, and the marks selecting them.
TESTS = {
    "django": (["tests/adapters/test_django.py"], "django"),
    "flask": (["tests/adapters/test_flask.py", "tests/adapters/test_wsgi.py"], "flask or wsgi"),
    "starlette": ([], "starlette"),
    "fastapi": ([], "fastapi"),
}
# Flask 2.3 came with Werkzeug 2.3: test the pair its users had.
WITH_LOWEST = {"flask": ["Werkzeug==2.3.*"]}
SESSIONS = [(name, which) for name in TESTS for which in ("lowest", "latest")]


def _pin(name: str, which: str) -> str:
    framework = MINIMUM_VERSIONS[name]
    if which == "lowest":
        return f"{framework.distribution}=={framework.minimum}.*"
    return framework.distribution


@nox.session(tags=["matrix"])
@nox.parametrize(("framework", "which"), SESSIONS, ids=[f"{n}-{w}" for n, w in SESSIONS])
def tests(session: nox.Session, framework: str, which: str) -> None:
    """Conformance and adapter tests of one framework at one version."""
    files, marks = TESTS[framework]
    extras = WITH_LOWEST.get(framework, []) if which == "lowest" else []
    session.env["UV_PYTHON_DOWNLOADS"] = "never"  # use this machine's Python, fetch none
    # The brotli extra: the conformance rows ask for brotli-encoded pages too.
    session.install(".[brotli]", _pin(framework, which), *extras, *COMMON)
    distribution = MINIMUM_VERSIONS[framework].distribution
    session.run(
        "python", "-c",
        f"import importlib.metadata as m; print('{distribution}', m.version('{distribution}'))",
    )  # fmt: skip
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marks,
        "tests/conformance", "tests/adapters/test_docs.py", *files,
        env={"GRACEFAIL_DB": os.path.join(session.create_tmp(), "events.sqlite3")},
    )  # fmt: skip
