"""The report commands' options, defined once for all three.

``gracefail report`` and ``flask gracefail report`` are click commands
(:func:`click_options`, then :func:`run_click`); ``manage.py gracefail_report``
is an argparse one (:func:`add_arguments`, then :func:`run`). So the three list
the same options with the same help, and read the store the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from ..config import _store_default
from . import COMPARES, FORMATS, ReportError, generate
from .reader import describe_store, same_store

__all__ = ["add_arguments", "click_options", "run", "run_click", "store_warning"]

F = TypeVar("F", bound=Callable[..., Any])


class Stream(Protocol):
    """Where the commands write: a text stream, click's or Django's."""

    def write(self, text: str, /) -> object:
        """Write ``text`` (the commands always end it with a newline)."""


@dataclass(frozen=True, slots=True)
class _Option:
    flag: str
    dest: str
    help: str
    metavar: str | None = None
    default: str | None = None
    choices: tuple[str, ...] | None = None


def _options(store_default: str) -> tuple[_Option, ...]:
    return (
        _Option(
            "--store",
            "store",
            "File path, sqlite:///file.db or postgresql://... "
            f"[default: {store_default}]",
            metavar="URL",
        ),
        _Option(
            "--since", "since", "Start of the window: 24h, 7d, 30m, 2w or an ISO time.",
            metavar="SPAN|ISO", default="24h",
        ),
        _Option(
            "--until", "until", "End of the window: an ISO time, UTC if no offset "
            "[default: now]", metavar="ISO",
        ),
        _Option("--route", "route", "Only this route template, e.g. /items/{id}.",
                metavar="TEMPLATE"),
        _Option("--format", "fmt", "Output format.", default="table", choices=FORMATS),
        _Option(
            "--compare", "compare", "Put another window beside this one: previous, the same "
            "length of time just before it.", choices=COMPARES,
        ),
        _Option(
            "--episode-gap", "episode_gap", "Quiet minutes that end an outage episode.",
            metavar="MINUTES", default="5",
        ),
        _Option("--out", "out", "Write to this file instead of standard output.",
                metavar="FILE"),
    )  # fmt: skip


def click_options(store_default: str) -> Callable[[F], F]:
    """Add the report's options to a click command; ``store_default`` says what --store is."""

    def decorate(command: F) -> F:
        for option in reversed(_options(store_default)):
            command = click.option(
                option.flag,
                option.dest,
                default=option.default,
                type=click.Choice(option.choices) if option.choices else None,
                metavar=option.metavar,
                show_default=option.default is not None,
                help=option.help,
            )(command)
        return command

    return decorate


def add_arguments(parser: argparse.ArgumentParser, store_default: str) -> None:
    """Add the report's options to an argparse parser (a Django command's)."""
    for option in _options(store_default):
        shown = f" [default: {option.default}]" if option.default is not None else ""
        parser.add_argument(
            option.flag,
            dest=option.dest,
            default=option.default,
            choices=option.choices,
            metavar=option.metavar,
            help=option.help + shown,
        )


def store_warning(given: str | None, configured: str | None) -> str | None:
    """The warning for a ``--store`` that is not the store the app's settings name."""
    if not given or configured is None or same_store(given, configured):
        return None
    try:
        return (
            f"gracefail: --store {describe_store(given)} is not the store this app's settings "
            f"name ({describe_store(configured)}); reading {describe_store(given)}"
        )
    except ReportError:
        return None  # the report itself says what is wrong with either


def run(
    values: Mapping[str, Any],
    *,
    stdout: Stream,
    stderr: Stream,
    configured: str | None = None,
) -> None:
    """Make the report the options ask for (``values`` by option dest).

    ``configured`` is the store an app's settings name (Flask, Django): it is the
    default of --store, and a --store naming another gets a warning on ``stderr``.
    Without it, --store defaults to ``GRACEFAIL_DB``, else ``./gracefail.sqlite3``.
    Raises :class:`ReportError` with a one-line message.
    """
    given = values.get("store")
    warning = store_warning(given, configured)
    if warning:
        stderr.write(warning + "\n")
    text = generate(
        given or configured or _store_default(),
        since=values.get("since"),
        until=values.get("until"),
        route=values.get("route"),
        fmt=values.get("fmt") or "table",
        compare=values.get("compare"),
        episode_gap=values.get("episode_gap"),
    )
    out = values.get("out")
    if not out:
        stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror or exc}") from None
    stderr.write(f"wrote {out}\n")


class _Echo:
    def __init__(self, err: bool):
        self.err = err

    def write(self, text: str, /) -> None:
        click.echo(text, nl=False, err=self.err)


def run_click(values: Mapping[str, Any], configured: str | None = None) -> None:
    """:func:`run` for a click command: its streams, and errors as click's one-line message."""
    try:
        run(values, stdout=_Echo(err=False), stderr=_Echo(err=True), configured=configured)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
