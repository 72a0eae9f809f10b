"""``manage.py gracefail_report``: ``gracefail report`` against this project's store.

The options are those of ``gracefail report`` (one definition in
:mod:`gracefail.report.options`); ``--store`` defaults to ``GRACEFAIL["store"]``,
and naming another store is allowed, with a warning.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ....report import ReportError
from ....report.options import add_arguments, run
from ...conf import get_config


class Command(BaseCommand):
    help = "Error frequency, recovery and time lost to upstream failures, from gracefail's store."
    # Reading the store needs none of the project's checks, and their output would mix
    # with the report's (as for Django's own dbshell).
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser, 'GRACEFAIL["store"]')

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run(options, stdout=self.stdout, stderr=self.stderr, configured=get_config().store)
        except ReportError as exc:
            raise CommandError(str(exc)) from None
