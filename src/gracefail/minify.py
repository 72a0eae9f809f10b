"""The page's scripts as served: minified, from a copy shipped in the package.

``assets/recover.js``, ``sw.js`` and ``register.js`` are written to be read (ES5);
what the page inlines and the worker serves is their minified form: calmjs.parse
prints them without comments or spaces, local names shortened. Parsing takes a few
tenths of a second, which the first failure of every process would pay, so the
minified forms are shipped in ``assets/min/``, each with the SHA-256 of the source it
was made from on its first line. :func:`minified` uses the shipped copy when that hash
matches the source, else minifies (an edited checkout) once per process.
``python -m gracefail.minify`` writes the shipped copies again;
``tests/test_minified_assets.py`` fails while one is stale.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from importlib import resources
from pathlib import Path
from typing import Final

__all__ = ["SCRIPTS", "minified", "minify", "shipped_form"]

SCRIPTS: Final = ("recover.js", "sw.js", "register.js")
"""The scripts shipped in minified form."""
_INLINE: Final = frozenset({"recover.js"})  # inlined in the page's <script> element

_HEADER: Final = "/* source-sha256: {} */\n"


def _source(name: str) -> str:
    return (resources.files("gracefail") / "assets" / name).read_text("utf-8")


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def minify(source: str, *, inline: bool = False) -> str:
    """``source`` minified by calmjs.parse (ES5): the slow path, a few tenths of a second.

    ``inline``: the script goes into a page's ``<script>`` element (recover.js)."""
    # Imported here: never paid by ``import gracefail``, nor by a process whose shipped
    # copies are current.
    from calmjs.parse import es5  # type: ignore[import-untyped]  # ships no type hints
    from calmjs.parse.unparsers.es5 import minify_print  # type: ignore[import-untyped]

    result: str = minify_print(es5(source), obfuscate=True, obfuscate_globals=False)
    if inline and ("</" in result or "<!--" in result):
        # Either would end or confuse an inline <script> block.
        raise ValueError("a page script must not contain '</' or '<!--'")
    return result


def shipped_form(name: str) -> str:
    """The text of ``assets/min/<name>`` for the current source: header line, then code."""
    source = _source(name)
    return _HEADER.format(_digest(source)) + minify(source, inline=name in _INLINE) + "\n"


@functools.cache
def minified(name: str) -> str:
    """``assets/<name>`` minified: the shipped copy when it was made from this source."""
    source = _source(name)
    try:
        shipped = (resources.files("gracefail") / "assets" / "min" / name).read_text("utf-8")
    except OSError:
        shipped = ""
    header, _, code = shipped.partition("\n")
    if header + "\n" == _HEADER.format(_digest(source)) and code:
        return code.rstrip("\n")
    return minify(source, inline=name in _INLINE)


def main(argv: list[str] | None = None) -> int:
    """Write ``assets/min/`` again (run from a checkout after editing a script)."""
    folder = Path(__file__).parent / "assets" / "min"
    folder.mkdir(exist_ok=True)
    for name in SCRIPTS:
        (folder / name).write_text(shipped_form(name), encoding="utf-8")
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
