"""The command line: preview, check, export, and ``python -m gracefail``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from gracefail.cli import main


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


def test_check_passes_for_the_built_in_page() -> None:
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert '"variants": 28' in result.output


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
