"""Static copies of the page for a proxy to serve when the app process itself is down.

``gracefail export --out DIR`` writes ``502.html`` and ``504.html`` (the default
locale; other locales under ``DIR/<locale>/``) and ``csp.conf``, an nginx
``add_header`` line carrying the Content-Security-Policy whose hashes match the
exported script and style. The exported page recovers by itself like the live
one; it carries no beacon token, so its beacons are refused (and never retried).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .classify import Failure
from .config import LOCALES, Config
from .render import Renderer

__all__ = ["ExportError", "export_pages"]

STATIC_INCIDENT = "proxy"


class ExportError(Exception):
    """The export would overwrite files, or cannot write them."""


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote."""

    files: list[Path]
    csp: str


def export_pages(config: Config, out: Path, *, force: bool = False) -> Exported:
    """Write the static pages into ``out``; refuse to overwrite unless ``force``."""
    renderer = Renderer(config, strict=True)
    targets: dict[Path, bytes] = {}
    csp = ""
    for locale in LOCALES:
        folder = out if locale == config.default_locale else out / locale
        for status in (502, 504):
            body, _, page_csp = renderer.body(
                "html", Failure(status, "proxy"), locale, True, STATIC_INCIDENT, "", "/"
            )
            targets[folder / f"{status}.html"] = body
            csp = page_csp or csp
    targets[out / "csp.conf"] = (
        "# Include inside the location that serves gracefail's exported pages.\n"
        f'add_header Content-Security-Policy "{csp}" always;\n'
        'add_header Cache-Control "no-store" always;\n'
        f'add_header Retry-After "{config.retry.retry_after}" always;\n'
    ).encode()
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; pass --force to overwrite")
    try:
        for path, data in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"cannot write {exc.filename}: {exc.strerror}") from exc
    return Exported(files=sorted(targets), csp=csp)
