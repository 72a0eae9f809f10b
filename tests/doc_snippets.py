"""What the README and docs pages show: their tested examples, and whether the install
commands beside an example install everything it imports and runs."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from functools import cache

from tests.conftest import ROOT

# A block the tests run: <!-- example: ... --> then a ```python fence.
EXAMPLE = re.compile(r"<!-- example([^>]*)-->\s*```python\n(.*?)```", re.S)
SHELL = re.compile(r"```sh\n(.*?)```", re.S)


def examples(text: str, label: str = "") -> list[str]:
    """The example blocks whose marker contains ``label``."""
    return [code for marker, code in EXAMPLE.findall(text) if label in marker]


def section(text: str, heading: str) -> str:
    """The text under a ``## heading`` line, up to the next ``## `` heading."""
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def shell_commands(text: str) -> list[list[str]]:
    """Every command of the ```sh blocks, split into words, comments dropped."""
    commands = []
    for block in SHELL.findall(text):
        for line in block.splitlines():
            words = line.split("#", 1)[0].split()
            if words:
                commands.append([word.strip("'\"") for word in words])
    return commands


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return normalise(match[0])


@cache
def _gracefail_requirements() -> dict[str, set[str]]:
    """gracefail's dependencies (key "") and each extra's, from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = {"": {_requirement_name(r) for r in project["dependencies"]}}
    for extra, requirements in project["optional-dependencies"].items():
        found[extra] = {_requirement_name(r) for r in requirements}
    return found


def installed_by(commands: list[list[str]]) -> set[str]:
    """The distributions ``pip install`` commands install (gracefail's extras expanded)."""
    installed: set[str] = set()
    for words in commands:
        if words[:2] != ["pip", "install"]:
            continue
        for word in words[2:]:
            if word.startswith("-"):
                continue
            name = _requirement_name(word)
            installed.add(name)
            if name == "gracefail":
                installed |= _gracefail_requirements()[""]
                extras = re.search(r"\[(.*)\]", word)
                for extra in extras[1].split(",") if extras else ():
                    installed |= _gracefail_requirements()[extra.strip()]
    return installed


def imported_distributions(code: str) -> set[str]:
    """The distributions (other than gracefail) whose modules ``code`` imports."""
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    providers = importlib.metadata.packages_distributions()
    found = set()
    for module in modules - set(sys.stdlib_module_names) - {"gracefail"}:
        assert module in providers, f"no installed distribution provides {module!r}"
        found |= {normalise(name) for name in providers[module]}
    return found


def program_distributions(commands: list[list[str]]) -> set[str]:
    """The distributions whose console scripts the (non-pip) commands run."""
    scripts = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")}
    found = set()
    for words in commands:
        if words[0] in ("pip", "python", "gracefail"):
            continue
        assert words[0] in scripts, f"{words[0]!r} is not an installed program"
        dist = scripts[words[0]].dist
        assert dist is not None
        found.add(normalise(dist.name))
    return found
