"""Every ready-made theme in templates/ renders every variant within budget, with the
elements the recovery script drives and a CSP that matches its one style and script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gracefail import Config
from gracefail.classify import Failure
from gracefail.core import Engine, RequestView
from gracefail.render import PAGE_BUDGET, Renderer
from tests.conftest import ROOT

THEMES = sorted(p.parent for p in (ROOT / "templates").glob("*/page.html"))
# Every element the recovery script looks up: read from the script, so a theme cannot lag
# behind it (a missing one stops the script at its first use).
SCRIPT_IDS = sorted(
    set(
        re.findall(
            r'(?:byId|getElementById)\("(gf-[a-z-]+)"\)',
            (ROOT / "src" / "gracefail" / "assets" / "recover.js").read_text("utf-8"),
        )
    )
)
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}


def test_there_is_at_least_one_theme() -> None:
    assert THEMES
    assert {"gf-config", "gf-live", "gf-wait", "gf-count", "gf-retry"} <= set(SCRIPT_IDS)


@pytest.mark.parametrize("theme", THEMES, ids=[t.name for t in THEMES])
def test_theme_renders_every_variant(theme: Path) -> None:
    config = Config(secret="theme-secret-0123456789", recorders=[], template_dir=theme)
    renderer = Renderer(config, strict=True)  # a broken theme raises here instead of falling back
    assert len(renderer.pages) == 28
    gracefail = Engine(config)
    for method in ("GET", "POST"):
        reply = gracefail.respond(Failure(502, "connection"), RequestView(method, "/x", "", NAV))
        text = reply.body.decode()
        assert len(reply.body) <= PAGE_BUDGET
        for element in SCRIPT_IDS:
            assert f'id="{element}"' in text, (theme.name, element)
        assert 'role="status"' in text
        assert len(re.findall(r"<style>", text)) == 1
        assert "style=" not in text.replace("<style>", "")
        assert dict(reply.headers)["x-gracefail-incident"] in text
        # What happened, per cause: the theme shows the sentence the renderer chose.
        assert "could not reach a service" in text
        assert text.count('href="/"') >= 1, "the brand links home"
