"""``manage.py gracefail_maintenance on|off|status``: planned maintenance in this project's store.

The options are those of ``gracefail maintenance`` (one definition in
:mod:`gracefail.maintenance_cli`); ``--store`` defaults to ``GRACEFAIL["store"]``. Every
worker with ``GRACEFAIL["maintenance"] = True`` on that store follows within a second.

    python manage.py gracefail_maintenance on --for 30m --message "Upgrading the database"
    python manage.py gracefail_maintenance off
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ....maintenance import MaintenanceError
from ....maintenance_cli import add_arguments, run
from ...conf import get_config


class Command(BaseCommand):
    help = "Planned maintenance: switch the 503 maintenance page on or off, or show its state."
    # Switching needs none of the project's checks (a deploy script runs it mid-deploy).
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser, 'GRACEFAIL["store"]')

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self.stdout.write(run(options, configured=get_config().store), ending="")
        except MaintenanceError as exc:
            raise CommandError(str(exc)) from None
