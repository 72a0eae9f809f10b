"""``manage.py gracefail_report``: ``gracefail report`` against this project's store.

Options are those of ``gracefail report``; ``--store`` defaults to ``GRACEFAIL["store"]``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...._adapters import ReportUnavailable, run_report
from ...conf import get_config

# (option, help) forwarded to `gracefail report` when given.
FORWARDED = (
    ("--since", "start of the window: 24h, 7d or an ISO time (default 24h)"),
    ("--until", "end of the window: an ISO time (default now)"),
    ("--route", "only this route template"),
    ("--format", "table, json, csv or html (default table)"),
    ("--out", "write to this file instead of standard output"),
)


class Command(BaseCommand):
    help = "Error frequency, recovery and time lost to upstream failures, from gracefail's store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", help="event store URL or path (default: GRACEFAIL store)")
        for option, text in FORWARDED:
            parser.add_argument(option, help=text)

    def handle(self, *args: Any, **options: Any) -> None:
        argv = ["--store", options["store"] or get_config().store]
        for option, _ in FORWARDED:
            value = options.get(option.lstrip("-"))
            if value is not None:
                argv += [option, value]
        try:
            code = run_report(argv)
        except ReportUnavailable as exc:
            raise CommandError(str(exc), returncode=2) from None
        if code:
            raise CommandError(f"gracefail report exited with {code}", returncode=code)
