"""``gracefail maintenance on|off|status``: what it prints, and bad input as clear errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gracefail import maintenance
from gracefail.cli import main


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["maintenance", *args])
    return result.exit_code, result.output


def test_on_status_off(tmp_path: Path) -> None:
    store = str(tmp_path / "gf.sqlite3")
    code, out = invoke("on", "--store", store, "--for", "1h30m", "--message", "New database",
                       "--by", "deploy")  # fmt: skip
    assert code == 0, out
    assert out.startswith("maintenance: on since ")
    assert "set by deploy" in out
    assert "(in 1 h 29 min" in out or "(in 1 h 30 min" in out
    assert "message: New database" in out
    code, out = invoke("status", "--store", store, "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["on"] is True
    assert shown["message"] == "New database"
    assert shown["ends"].endswith("Z")
    assert 5390 < shown["remaining_s"] <= 5400
    code, out = invoke("off", "--store", store)
    assert (code, out) == (0, "maintenance: off\n")
    assert invoke("status", "--store", store) == (0, "maintenance: off\n")
    assert invoke("status", "--store", store, "--json") == (0, '{"on": false}\n')
    assert invoke("off", "--store", store) == (0, "maintenance: off (it was not on)\n")


def test_until_an_iso_time_without_offset_is_utc(tmp_path: Path) -> None:
    store = str(tmp_path / "gf.sqlite3")
    end = time.time() + 7200
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(end))
    code, out = invoke("on", "--store", store, "--until", text)
    assert code == 0, out
    state = maintenance.status(store)
    assert state is not None
    assert state.ends is not None
    assert abs(state.ends - end) < 1.0


def test_the_store_defaults_to_gracefail_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "env.sqlite3"
    monkeypatch.setenv("GRACEFAIL_DB", str(store))
    assert invoke("on")[0] == 0
    assert maintenance.status(str(store)) is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--for", "30m", "--until", "2099-01-01T00:00:00Z"),
                     "--for and --until cannot be used together", id="for-and-until"),
        pytest.param(("--for", "-5m"), "is not a duration", id="negative"),
        pytest.param(("--for", "soon"), "is not a duration", id="unparsable"),
        pytest.param(("--for", "0m"), "must be longer than zero", id="zero"),
        pytest.param(("--until", "tomorrow"), "is not a time", id="bad-until"),
        pytest.param(("--until", "2020-01-01T00:00:00Z"), "is in the past", id="past"),
        pytest.param(("--message", "x" * 501), "at most 500", id="long-message"),
        pytest.param(("--message", "a\x1b[31mb"), "control characters", id="control"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error_and_changes_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    store = str(tmp_path / "gf.sqlite3")
    code, out = invoke("on", "--store", store, *args)
    assert code == 1
    assert out.startswith("Error: "), out
    assert message in out, out
    assert maintenance.status(store) is None


def test_a_store_that_cannot_be_reached_is_an_error(tmp_path: Path) -> None:
    code, out = invoke("on", "--store", "postgresql://gf:s3cret@127.0.0.1:9/gf", "--for", "5m")
    assert code == 1
    assert "could not switch maintenance on" in out
    assert "nothing changed" in out
    assert "s3cret" not in out
    code, out = invoke("status", "--store", "mysql://nope")
    assert code == 1
    assert "Error: " in out
