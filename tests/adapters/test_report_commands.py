"""``flask gracefail report`` and ``manage.py gracefail_report``: the options of
``gracefail report``, the app's store by default, a warning for another, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

pytest.importorskip("flask")
pytest.importorskip("django")

from tests.conformance.harness import django_setup

django_setup()

from django.core.management import ManagementUtility, load_command_class  # noqa: E402 - imported once Django is set up (above)
from django.test import override_settings  # noqa: E402 - imported once Django is set up (above)

from gracefail.cli import main  # noqa: E402 - imported once Django is set up (above)
from gracefail.flask import Gracefail  # noqa: E402 - imported once Django is set up (above)
from gracefail.recorders.sqlite import SQLiteRecorder  # noqa: E402 - imported once Django is set up (above)
from tests.apps import common, flask_app  # noqa: E402 - imported once Django is set up (above)
from tests.recorders import scenario  # noqa: E402 - imported once Django is set up (above)

WINDOW = ["--since", scenario.SINCE, "--until", scenario.UNTIL]
OPTIONS = {
    "--store", "--since", "--until", "--route", "--format", "--out", "--compare", "--episode-gap"
}  # fmt: skip


def make_store(path: Path) -> str:
    recorder = SQLiteRecorder(path)
    recorder.record(scenario.events())
    recorder.close()
    return str(path)


def click_flags(command: click.Command) -> set[str]:
    return {flag for param in command.params for flag in param.opts}


def django_flags() -> set[str]:
    parser = load_command_class("gracefail.django", "gracefail_report").create_parser(
        "manage.py", "gracefail_report"
    )
    return {flag for action in parser._actions for flag in action.option_strings}


def manage(*args: str) -> int:
    """Run ``manage.py`` as a shell would: its exit status (output to capsys)."""
    try:
        ManagementUtility(["manage.py", *args]).execute()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# -- the same options everywhere -----------------------------------------------------------


def test_flask_help_lists_the_options(tmp_path: Path) -> None:
    app = flask_app.make_wrapped(store=str(tmp_path / "events.sqlite3"), secret=common.SECRET)
    result = app.test_cli_runner().invoke(args=["gracefail", "report", "--help"])
    assert result.exit_code == 0, result.output
    for option in OPTIONS:
        assert option in result.output
    assert "table|json|csv|html" in result.output


def test_three_commands_have_one_set_of_options() -> None:
    import click

    from gracefail.flask import _cli

    report = _cli.get_command(click.Context(_cli), "report")
    assert report is not None
    assert click_flags(main.commands["report"]) == click_flags(report) == OPTIONS
    assert django_flags() >= OPTIONS


# -- Flask ---------------------------------------------------------------------------------


def test_flask_reads_the_apps_store_and_names_it(tmp_path: Path) -> None:
    store = make_store(tmp_path / "events.sqlite3")
    app = flask_app.make_wrapped(store=store, secret=common.SECRET)
    result = app.test_cli_runner().invoke(args=["gracefail", "report", *WINDOW])
    assert result.exit_code == 0, result.output
    assert f"store: {Path(store).resolve()}" in result.stdout
    assert result.stderr == ""


def test_flask_warns_when_store_is_another(tmp_path: Path) -> None:
    other = make_store(tmp_path / "other.sqlite3")
    app = flask_app.make_wrapped(store=str(tmp_path / "app.sqlite3"), secret=common.SECRET)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["gracefail", "report", "--store", other, "--format", "json",
                                 *WINDOW])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["store"] == str(Path(other).resolve())
    assert result.stderr.splitlines() == [
        f"gracefail: --store {Path(other).resolve()} is not the store this app's settings name "
        f"({(tmp_path / 'app.sqlite3').resolve()}); reading {Path(other).resolve()}"
    ]
    Gracefail.engine(app).flush()


def test_flask_no_warning_for_the_same_store_spelled_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "events.sqlite3")
    monkeypatch.chdir(tmp_path)
    app = flask_app.make_wrapped(store=store, secret=common.SECRET)
    result = app.test_cli_runner().invoke(
        args=["gracefail", "report", "--store", "sqlite:///events.sqlite3", *WINDOW]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_flask_error_is_one_line(tmp_path: Path) -> None:
    app = flask_app.make_wrapped(store=str(tmp_path / "none.sqlite3"), secret=common.SECRET)
    result = app.test_cli_runner().invoke(args=["gracefail", "report"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: no gracefail store at {tmp_path / 'none.sqlite3'} yet: events are written "
        "there once the app has served a failure (or pass --store / set GRACEFAIL_DB)"
    ]


# -- Django --------------------------------------------------------------------------------


def test_django_failure_is_one_command_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "events.sqlite3")
    with override_settings(GRACEFAIL={"store": store, "secret": common.SECRET}):
        code = manage("gracefail_report", "--since", "soon")
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "CommandError: --since 'soon' is not a time: use 24h, 7d, 30m, 2w or an ISO time "
        "such as 2024-05-01T00:00:00Z"
    ]


def test_django_reads_the_settings_store_and_writes_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "events.sqlite3")
    out = tmp_path / "report.csv"
    with override_settings(GRACEFAIL={"store": store, "secret": common.SECRET}):
        code = manage("gracefail_report", "--format", "csv", "--out", str(out), *WINDOW)
    captured = capsys.readouterr()
    assert (code, captured.out, captured.err) == (0, "", f"wrote {out}\n")
    assert f"store,,{Path(store).resolve()}" in out.read_text().splitlines()


def test_django_warns_when_store_is_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_store(tmp_path / "other.sqlite3")
    configured = tmp_path / "app.sqlite3"
    with override_settings(GRACEFAIL={"store": str(configured), "secret": common.SECRET}):
        code = manage("gracefail_report", "--store", other, "--format", "json", *WINDOW)
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["failures"] == 7
    assert captured.err.splitlines() == [
        f"gracefail: --store {Path(other).resolve()} is not the store this app's settings name "
        f"({configured.resolve()}); reading {Path(other).resolve()}"
    ]


def test_the_flask_extension_loads_its_commands_only_when_asked() -> None:
    """An app that serves requests never imports the report's command code."""
    code = (
        "import sys, flask, gracefail.flask\n"
        "assert 'gracefail.report' not in sys.modules, 'report imported'\n"
        "assert 'gracefail.maintenance_cli' not in sys.modules, 'maintenance_cli imported'\n"
        "import click\n"
        "group = gracefail.flask._cli\n"
        "assert group.list_commands(click.Context(group)) == ['maintenance', 'report']\n"
        "assert group.get_command(click.Context(group), 'report').name == 'report'\n"
        "assert 'gracefail.report' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
