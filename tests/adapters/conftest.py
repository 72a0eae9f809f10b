"""Fixtures for the adapter tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import ROOT

BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r} or name.startswith({blocked!r} + "."):
            raise ImportError("No module named " + repr(name))
        return None
sys.meta_path.insert(0, Blocker())
try:
    import {module}
except ImportError as exc:
    print(exc)
else:
    print("imported")
"""


@pytest.fixture
def without() -> Callable[[str, str], str]:
    """``without(framework, module)``: what importing ``module`` says when ``framework`` is gone.

    Runs in a fresh interpreter whose imports of ``framework`` fail, as if not installed.
    """

    def run(blocked: str, module: str) -> str:
        code = BLOCKER.format(blocked=blocked, module=module)
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
            check=True,
        )  # fmt: skip
        return done.stdout.strip()

    return run
