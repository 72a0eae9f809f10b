"""The oldest framework releases gracefail supports, in one table, and the check that uses it.

The adapters call :func:`require` when they are imported, so a missing or too-old
framework fails at start-up with what to install, not later with an ``AttributeError``.
``noxfile.py`` reads the same table to test each lowest release next to the latest.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator
from importlib import metadata
from typing import Final, NamedTuple

__all__ = ["MINIMUM_VERSIONS", "Framework", "check_version", "importing", "require"]


class Framework(NamedTuple):
    """One supported framework: import name, PyPI name, oldest release, pip extra."""

    module: str
    distribution: str
    minimum: str
    extra: str


MINIMUM_VERSIONS: Final[dict[str, Framework]] = {
    "django": Framework("django", "Django", "4.2", "django"),
    "flask": Framework("flask", "Flask", "2.3", "flask"),
    "starlette": Framework("starlette", "starlette", "0.37", "starlette"),
    "fastapi": Framework("fastapi", "fastapi", "0.110", "fastapi"),
}

_RELEASE: Final = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def _release(version: str) -> tuple[int, int, int]:
    match = _RELEASE.match(version)
    if match is None:
        return (0, 0, 0)
    major, minor, micro = (int(part or 0) for part in match.groups())
    return (major, minor, micro)


def check_version(name: str, found: str) -> None:
    """Raise ImportError if release ``found`` of framework ``name`` is older than supported."""
    framework = MINIMUM_VERSIONS[name]
    if _release(found) < _release(framework.minimum):
        raise ImportError(
            f"gracefail needs {framework.distribution} {framework.minimum} or newer "
            f"(found {found}): pip install -U 'gracefail[{framework.extra}]'"
        )


@contextlib.contextmanager
def importing(name: str) -> Iterator[None]:
    """Wrap an adapter's framework imports: a missing framework says what to install,
    and one older than supported says so, before the adapter goes on."""
    try:
        yield
    except ImportError:
        require(name)  # the framework itself is missing or too old: say what to install
        raise  # something else is missing
    require(name)


def require(name: str) -> None:
    """Raise ImportError saying what to install unless framework ``name`` is usable."""
    framework = MINIMUM_VERSIONS[name]
    try:
        importlib.import_module(framework.module)
    except ImportError as exc:
        raise ImportError(
            f"gracefail.{name} needs {framework.distribution}, which is not installed: "
            f"pip install 'gracefail[{framework.extra}]'"
        ) from exc
    try:
        found = metadata.version(framework.distribution)
    except metadata.PackageNotFoundError:
        return  # vendored or run from a checkout: nothing to compare
    check_version(name, found)
