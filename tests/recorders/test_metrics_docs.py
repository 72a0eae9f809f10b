"""The Python examples in docs/metrics.md run as written."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from gracefail.recorders.sqlite import SQLiteRecorder
from tests.conftest import ROOT
from tests.recorders import scenario

DOC = (ROOT / "docs" / "metrics.md").read_text()
BLOCKS = [textwrap.dedent(block) for block in re.findall(r"```python\n(.*?)```", DOC, re.S)]


def test_there_are_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_example_runs(
    code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = SQLiteRecorder(tmp_path / "gracefail.sqlite3")
    recorder.record(scenario.events())
    recorder.close()
    namespace: dict[str, object] = {"__name__": "docs_example"}
    exec(compile(code, "docs/metrics.md", "exec"), namespace)  # noqa: S102 - our own docs
    if "generate(" in code:
        assert "gracefail report" in capsys.readouterr().out
