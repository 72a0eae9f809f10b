"""``maintenance on|off|status``: one set of commands for ``gracefail``, Flask and Django.

``gracefail maintenance`` and ``flask gracefail maintenance`` are click groups
(:func:`click_group`); ``manage.py gracefail_maintenance`` is an argparse command
(:func:`add_arguments`, then :func:`run`). All three check their input the same way
and call :mod:`gracefail.maintenance`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import click

from . import maintenance
from .config import _store_default

__all__ = ["ACTIONS", "add_arguments", "click_group", "run"]

ACTIONS = ("on", "off", "status")

_STORE_HELP = "File path, sqlite:///file.db or postgresql://... [default: {}]"
_FOR_HELP = "How long it lasts: 30m, 2h, 90s, 1h30m (the planned end is now plus this)."
_UNTIL_HELP = "When it ends: an ISO time, UTC if no offset (2026-05-01T22:30:00Z)."
_MESSAGE_HELP = f"What the page tells users (at most {maintenance.MAX_MESSAGE} characters)."
_BY_HELP = "Who switched it on, as status shows it [default: user@host]."


def run(values: Mapping[str, Any], configured: str | None = None) -> str:
    """Do what ``values`` (by option dest, ``action`` among them) ask; the text to print.

    ``configured`` is the store an app's settings name (Flask, Django): the default of
    ``--store``. Raises :class:`gracefail.maintenance.MaintenanceError`, one line.
    """
    action = values.get("action")
    store: str | os.PathLike[str] = values.get("store") or configured or _store_default()
    if action == "on":
        span, until = values.get("duration"), values.get("until")
        if span and until:
            raise maintenance.MaintenanceError(
                "--for and --until cannot be used together: give one of them"
            )
        state = maintenance.switch_on(
            store,
            duration=maintenance.parse_duration(span) if span else None,
            ends=maintenance.parse_end(until) if until else None,
            message=values.get("message") or "",
            set_by=values.get("by") or None,
        )
        return maintenance.format_status(state)
    if action == "off":
        ended = maintenance.switch_off(store)
        if ended is None or ended.ended():
            return "maintenance: off (it was not on)\n"
        return "maintenance: off\n"
    if action == "status":
        current = maintenance.status(store)
        if values.get("as_json"):
            shown = current.to_json() if current is not None else {"on": False}
            return json.dumps(shown) + "\n"
        return maintenance.format_status(current)
    raise maintenance.MaintenanceError(f"unknown action {action!r}: use on, off or status")


def add_arguments(parser: argparse.ArgumentParser, store_default: str) -> None:
    """The same options for an argparse parser (a Django command's)."""
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument(
        "--store", dest="store", metavar="URL", help=_STORE_HELP.format(store_default)
    )
    parser.add_argument("--for", dest="duration", metavar="SPAN", help=_FOR_HELP)
    parser.add_argument("--until", dest="until", metavar="ISO", help=_UNTIL_HELP)
    parser.add_argument("--message", dest="message", metavar="TEXT", help=_MESSAGE_HELP)
    parser.add_argument("--by", dest="by", metavar="NAME", help=_BY_HELP)
    parser.add_argument("--json", dest="as_json", action="store_true", help="status as JSON")


def _invoke(values: Mapping[str, Any], configured: str | None) -> None:
    try:
        click.echo(run(values, configured), nl=False)
    except maintenance.MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None


def click_group(
    store_default: str = "GRACEFAIL_DB, else ./gracefail.sqlite3",
    configured: Callable[[], str | None] = lambda: None,
) -> click.Group:
    """The ``maintenance`` group; ``configured`` gives the app's store, if any, when run."""
    store = click.option("--store", metavar="URL", help=_STORE_HELP.format(store_default))

    @click.group(name="maintenance")
    def group() -> None:
        """Planned maintenance: a 503 page for everyone but allowed staff and networks."""

    @group.command(name="on")
    @store
    @click.option("--for", "duration", metavar="SPAN", help=_FOR_HELP)
    @click.option("--until", metavar="ISO", help=_UNTIL_HELP)
    @click.option("--message", metavar="TEXT", help=_MESSAGE_HELP)
    @click.option("--by", metavar="NAME", help=_BY_HELP)
    def on(**values: Any) -> None:
        """Switch maintenance on (every worker and the gateway follow within a second)."""
        _invoke({"action": "on", **values}, configured())

    @group.command(name="off")
    @store
    def off(**values: Any) -> None:
        """Switch maintenance off."""
        _invoke({"action": "off", **values}, configured())

    @group.command(name="status")
    @store
    @click.option("--json", "as_json", is_flag=True, help="As JSON.")
    def status(**values: Any) -> None:
        """Whether maintenance is on, since when, until when, and its message."""
        _invoke({"action": "status", **values}, configured())

    return group
