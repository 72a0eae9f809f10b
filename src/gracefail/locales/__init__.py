"""The page's words: the shipped locales, and a theme's own in ``template_dir/locales/``.

Each locale is one JSON object of strings, named by its language tag (``de.json``,
``pt-BR.json``). A theme's file with a shipped locale's name overrides single strings of
it; a file with another name adds a language. A theme may also add keys of its own (the
labels of its navigation, say), which its templates read as ``t.<key>``. Whatever a
locale does not say, English says: the page never shows a key instead of words.

This module reads files and nothing else; it imports no other part of gracefail, so the
configuration (which checks ``Config.messages`` against these keys) and the renderer
can both use it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

__all__ = ["LOCALE_DIR", "LocaleError", "Wording", "load", "placeholders", "read_locale"]

# The folder of a template_dir whose JSON files add or override locales.
LOCALE_DIR: Final = "locales"
# A BCP 47 language tag as the page's <html lang> and Accept-Language use it.
_TAG: Final = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
_PLACEHOLDER: Final = re.compile(r"\{[a-z_]+\}")


class LocaleError(ValueError):
    """A locale file gracefail cannot use; the message names the file (and line)."""


def placeholders(text: str) -> frozenset[str]:
    """The ``{name}`` placeholders in a string: ``{brand}``, ``{code}``, ``{s}``."""
    return frozenset(_PLACEHOLDER.findall(text))


def read_locale(path: str | os.PathLike[str], text: str | None = None) -> dict[str, str]:
    """One locale file's strings; LocaleError naming the file, and the line if it is JSON's."""
    name = os.fspath(path)
    try:
        if text is None:
            text = Path(name).read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LocaleError(
            f"gracefail: {name}, line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LocaleError(f"gracefail: cannot read {name}: {exc}") from None
    if not isinstance(data, dict):
        raise LocaleError(f'gracefail: {name}: expected a JSON object {{"key": "text", ...}}')
    wrong = [key for key, value in data.items() if not isinstance(value, str)]
    if wrong:
        raise LocaleError(f"gracefail: {name}: the values of {', '.join(wrong)} are not strings")
    return data


@functools.cache
def _shipped(names: tuple[str, ...]) -> Mapping[str, Mapping[str, str]]:
    folder = resources.files("gracefail") / LOCALE_DIR
    return {
        name: read_locale(
            f"gracefail/locales/{name}.json", (folder / f"{name}.json").read_text("utf-8")
        )
        for name in names
    }


def _theme(
    template_dir: str | os.PathLike[str], shipped: Sequence[str]
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """A theme's locale files: strings and file name, by locale name."""
    folder = Path(template_dir) / LOCALE_DIR
    if not folder.is_dir():
        return {}, {}
    canonical = {name.lower(): name for name in shipped}
    found: dict[str, dict[str, str]] = {}
    sources: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")):
        if not _TAG.fullmatch(path.stem):
            raise LocaleError(
                f"gracefail: {path}: the file's name is not a language tag "
                "(expected names such as de.json, pt-BR.json, nl.json)"
            )
        name = canonical.get(path.stem.lower(), path.stem)
        if name in found:
            raise LocaleError(f"gracefail: {path}: a second file for the locale {name}")
        found[name] = read_locale(path)
        sources[name] = str(path)
    return found, sources


@dataclass(frozen=True, slots=True)
class Wording:
    """Every locale's strings, complete (English fills any gap), for one template_dir.

    ``names``: the shipped locales, then those a theme adds (sorted). ``keys``: every key
    any locale has. ``missing``: per locale, the keys neither gracefail nor the theme
    translates (English is shown for them): what ``gracefail check`` reports.
    ``sources``: the theme's file of each locale it has one for.
    """

    table: Mapping[str, Mapping[str, str]]
    names: tuple[str, ...]
    keys: frozenset[str]
    missing: Mapping[str, tuple[str, ...]]
    sources: Mapping[str, str]

    def canonical(self, locale: str) -> str | None:
        """``locale`` as this wording spells it (``pt-br`` -> ``pt-BR``), or None."""
        lowered = locale.lower()
        return next((name for name in self.names if name.lower() == lowered), None)


def load(shipped: Sequence[str], template_dir: str | os.PathLike[str] | None) -> Wording:
    """The wording the page uses: ``shipped`` locales, with ``template_dir/locales/`` on top."""
    base = _shipped(tuple(shipped))
    theme, sources = _theme(template_dir, shipped) if template_dir is not None else ({}, {})
    english = {**base["en"], **theme.get("en", {})}
    names = (*shipped, *sorted(name for name in theme if name not in base))
    table: dict[str, dict[str, str]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    for name in names:
        own = {**base.get(name, {}), **theme.get(name, {})}
        table[name] = {**english, **own}
        gaps = tuple(sorted(set(english) - set(own)))
        if gaps:
            missing[name] = gaps
    return Wording(table, names, frozenset(english), missing, sources)
