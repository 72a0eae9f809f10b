"""docs/security.md names, for every threat, the tests that prove its defence: each
named test must exist, so the table cannot drift from the suite."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DOC = ROOT / "docs" / "security.md"
NAMED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")


def rows() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## Threat model", 1)[1].split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| **")]


def test_every_threat_names_a_test_that_exists() -> None:
    missing = []
    for row in rows():
        threat = row.split("|")[1].strip()
        named = NAMED.findall(row)
        if not named and "Not built yet" not in row:
            missing.append(f"{threat}: no test named")
        for path, name in named:
            source = ROOT / path
            if not source.is_file():
                missing.append(f"{threat}: {path} does not exist")
            elif name and not re.search(rf"^(async )?def {name}\b", source.read_text(), re.M):
                missing.append(f"{threat}: {path}::{name} does not exist")
    assert not missing, "\n".join(missing)
    assert len(rows()) >= 14
