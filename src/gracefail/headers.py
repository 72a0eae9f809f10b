"""Header constants shared by the engine and every adapter (no imports: cheap to load)."""

from __future__ import annotations

from typing import Final

__all__ = ["BANNER"]

BANNER: Final = ("x-gracefail-maintenance", "on")
"""The header an allowed request's response carries while planned maintenance is on."""
