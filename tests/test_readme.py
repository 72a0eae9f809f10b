"""The README's quickstart works when pasted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT

NAV = {"accept": "text/html,*/*;q=0.8", "sec-fetch-mode": "navigate"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRACEFAIL_DB", str(tmp_path / "events.sqlite3"))


def quickstart() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    [block] = re.findall(r"<!-- example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    namespace: dict[str, Any] = {"__name__": "readme_quickstart"}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


async def test_readme_quickstart_serves_the_page() -> None:
    app = quickstart()["app"]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = await client.get("/orders", headers=NAV)
        text = await client.get("/orders", headers={"accept": "*/*"})
        problem = await client.get("/orders", headers={"accept": "application/json"})
    assert page.status_code == 502
    assert "Acme" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert text.headers["content-type"].startswith("text/plain")
    assert len(text.text.splitlines()) <= 8
    assert problem.json()["status"] == 502
