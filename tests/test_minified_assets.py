"""The minified scripts shipped in the package are those of the current sources."""

from __future__ import annotations

import sys
from importlib import resources

import pytest

from gracefail import minify


@pytest.mark.parametrize("name", minify.SCRIPTS)
def test_shipped_copy_is_current(name: str) -> None:
    shipped = (resources.files("gracefail") / "assets" / "min" / name).read_text("utf-8")
    assert shipped == minify.shipped_form(name), (
        f"assets/min/{name} is stale: run `python -m gracefail.minify`"
    )


@pytest.mark.parametrize("name", minify.SCRIPTS)
def test_served_form_is_the_minified_source(name: str) -> None:
    source = (resources.files("gracefail") / "assets" / name).read_text("utf-8")
    assert minify.minified(name) == minify.minify(source, inline=name == "recover.js")


def test_a_current_copy_needs_no_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the shipped copy current, serving the page never imports calmjs.parse."""
    monkeypatch.setitem(sys.modules, "calmjs.parse", None)  # importing it would fail
    minify.minified.cache_clear()
    try:
        code = minify.minified("recover.js")
    finally:
        minify.minified.cache_clear()
    assert code.startswith("(function")
    assert "</" not in code


def test_a_stale_copy_is_not_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """An edited source (a checkout) is minified afresh, not served from the old copy."""
    edited = minify._source("register.js") + "\n// edited\nvar edited = 1;\n"
    monkeypatch.setattr(minify, "_source", lambda name: edited)
    minify.minified.cache_clear()
    try:
        code = minify.minified("register.js")
    finally:
        minify.minified.cache_clear()
    assert "edited" in code
