"""``flask gracefail ...``: the commands, imported only when the ``flask`` command runs one.

:mod:`gracefail.flask` registers a group whose commands come from here on first use, so
an app that only serves requests never imports the report's or maintenance's command
code (tens of milliseconds of start-up).
"""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .maintenance_cli import click_group as maintenance_group
from .report.options import click_options, run_click

__all__ = ["COMMANDS"]


def _store() -> str:
    from .flask import Gracefail

    return Gracefail.engine(current_app).config.store


@click.command(
    "report",
    help="Error frequency and recovery from this app's store (the options of `gracefail report`).",
)
@click_options("this app's store")
@with_appcontext
def report(**values: Any) -> None:
    run_click(values, configured=_store())


maintenance = maintenance_group("this app's store", _store)
for _command in maintenance.commands.values():
    # Each runs with the app's context, as AppGroup's own commands do.
    if _command.callback is not None:
        _command.callback = with_appcontext(_command.callback)

COMMANDS: dict[str, click.Command] = {"maintenance": maintenance, "report": report}
"""The commands of ``flask gracefail``, by name."""
