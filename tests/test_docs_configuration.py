"""The docs' option defaults are the code's: docs/configuration.md is generated from the
dataclasses, and every retry default written elsewhere agrees with ``RetryPolicy()``."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from gracefail import Config, RetryPolicy
from tests.conftest import ROOT

# Written by `make bench`, which reports the values it measured, defaults or not.
NOT_CHECKED = {"performance.md"}
PAGES = [
    ROOT / "README.md",
    *sorted(path for path in (ROOT / "docs").glob("*.md") if path.name not in NOT_CHECKED),
]
# `retry_after=5`, "base": 4, cap: 62 ...
RETRY_NUMBER = re.compile(
    r"\b(retry_after|base|cap|give_up_after)\b[\"'`]?\s*[=:]\s*([0-9][0-9_]*(?:\.[0-9]+)?)"
)
RETRY_ROW = re.compile(r"\|\s*`?retry`?\s*\|")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "_generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_generated_from_the_dataclasses() -> None:
    page = ROOT / "docs" / "configuration.md"
    assert page.is_file(), "run python docs/_generate.py"
    assert page.read_text(encoding="utf-8") == generator().render(), (
        "docs/configuration.md is out of date: run python docs/_generate.py"
    )


def test_the_reference_does_not_depend_on_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = generator()
    before = module.render()
    monkeypatch.setenv("GRACEFAIL_DB", "/elsewhere/events.db")
    monkeypatch.setenv("GRACEFAIL_SECRET", "a-secret-that-must-not-be-printed")
    after = module.render()
    assert after == before
    assert "a-secret-that-must-not-be-printed" not in after


def test_every_config_field_has_its_line() -> None:
    _, lines = generator().field_docs(Config)
    assert set(lines) == {field.name for field in dataclasses.fields(Config)}
    assert all(lines.values())
    assert generator().undocumented(Config) == ([], [])


def test_an_undocumented_field_stops_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass
    class Options:
        """Options.

        Attributes:
            colour: documented.
            removed: a field that is gone.
        """

        colour: str = "red"
        size: int = 3  # added without its line

    module = generator()
    assert module.undocumented(Options) == (["size"], ["removed"])
    monkeypatch.setattr(module, "SECTIONS", ((Options, ""),))
    with pytest.raises(ValueError, match=r"no line for size; lines for removed, which are not"):
        module.render()


def test_docs_pages_named_in_field_lines_are_links() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    [row] = [line for line in page.splitlines() if line.startswith("| `messages` |")]
    assert "[customising.md](customising.md)" in row


def stated_retry_defaults(text: str) -> Iterator[tuple[int, str, float]]:
    """Retry numbers on lines that state defaults: options-table rows for `retry`, and
    lines saying "default"."""
    for number, line in enumerate(text.splitlines(), 1):
        if RETRY_ROW.match(line) or "default" in line.lower():
            for name, value in RETRY_NUMBER.findall(line):
                yield number, name, float(value.replace("_", ""))


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_retry_defaults_in_the_docs_are_retry_policys(page: Path) -> None:
    defaults = dataclasses.asdict(RetryPolicy())
    wrong = [
        f"{page.name}:{number}: {name}={value:g}, but RetryPolicy().{name} == {defaults[name]}"
        for number, name, value in stated_retry_defaults(page.read_text(encoding="utf-8"))
        if value != defaults[name]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_readme_states_every_retry_default() -> None:
    # Keeps the check above from passing on a README that stopped stating them.
    found = {name for _, name, _ in stated_retry_defaults((ROOT / "README.md").read_text())}
    assert found == {field.name for field in dataclasses.fields(RetryPolicy)}
