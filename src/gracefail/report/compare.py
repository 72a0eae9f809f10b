"""Period comparison (``--compare previous``): which other window to put beside this one."""

from __future__ import annotations

from typing import Final

from .errors import ReportError
from .model import Window

__all__ = ["COMPARES", "check_compare", "previous_window"]

COMPARES: Final = ("previous",)
"""What ``--compare`` accepts: ``previous``, the same length of time just before the window."""


def check_compare(value: str | None) -> str | None:
    """``value`` if it is one of :data:`COMPARES` (None or empty: no comparison)."""
    if value is None or not value.strip():
        return None
    if value.strip() not in COMPARES:
        raise ReportError(
            f"--compare {value!r} is not one of {', '.join(COMPARES)} "
            "(the same length of time just before the window)"
        )
    return value.strip()


def previous_window(window: Window) -> Window:
    """The window of the same length that ends where ``window`` starts."""
    return Window(window.since - (window.until - window.since), window.since)
