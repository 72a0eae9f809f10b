"""The ``gracefail.django`` app: adds gracefail's system checks and management command."""

from __future__ import annotations

from django.apps import AppConfig


class GracefailConfig(AppConfig):
    """Registers the ``gracefail.E00x``/``W00x`` checks when Django is ready."""

    name = "gracefail.django"
    label = "gracefail"
    verbose_name = "gracefail"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - importing registers the checks
