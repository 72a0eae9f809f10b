"""Config.store parsing, the lazy recorder imports, and what the store choice builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gracefail import Config, ConfigError
from gracefail.core import Engine
from gracefail.recorders import PostgresRecorder, SQLiteRecorder, store_recorder
from gracefail.recorders.target import StoreTarget, parse_store

SECRET = "test-secret-0123456789abcdef"


@pytest.mark.parametrize(
    ("store", "dialect", "location"),
    [
        pytest.param("gracefail.sqlite3", "sqlite", "gracefail.sqlite3", id="file"),
        pytest.param("/var/lib/app/gf.db", "sqlite", "/var/lib/app/gf.db", id="absolute-file"),
        pytest.param("sqlite:///relative.db", "sqlite", "relative.db", id="sqlite-relative"),
        pytest.param("sqlite:///data/x.db", "sqlite", "data/x.db", id="sqlite-relative-dir"),
        pytest.param("sqlite:////absolute.db", "sqlite", "/absolute.db", id="sqlite-absolute"),
        pytest.param("sqlite:////a%20b/x.db", "sqlite", "/a b/x.db", id="sqlite-quoted"),
        pytest.param(
            "postgresql://u:p@db:5432/metrics", "postgresql", "postgresql://u:p@db:5432/metrics",
            id="postgresql",
        ),
        pytest.param("postgres://db/m", "postgresql", "postgresql://db/m", id="postgres-alias"),
        pytest.param(
            "postgresql+psycopg://db/m", "postgresql", "postgresql://db/m", id="sqlalchemy-driver"
        ),
    ],
)  # fmt: skip
def test_parse_store(store: str, dialect: str, location: str) -> None:
    assert parse_store(store) == StoreTarget(dialect, location)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "store",
    [
        pytest.param("mysql://db/x", id="other-database"),
        pytest.param("sqlite://", id="no-path"),
        pytest.param("sqlite:///:memory:", id="memory"),
        pytest.param("sqlite:///", id="empty-path"),
        pytest.param("  ", id="blank"),
    ],
)
def test_bad_stores_fail_at_start_up(store: str) -> None:
    with pytest.raises(ConfigError, match=r"store=.* is not valid; expected a file path"):
        Engine(Config(secret=SECRET, store=store))


def test_path_objects_are_file_paths(tmp_path: Path) -> None:
    assert parse_store(tmp_path / "gf.db") == StoreTarget("sqlite", str(tmp_path / "gf.db"))
    # A path object is never read as a URL (its slashes are already collapsed).
    assert parse_store(Path("sqlite:///x.db")) == StoreTarget("sqlite", "sqlite:/x.db")
    home = parse_store(Path("~/gf.db")).location
    assert not home.startswith("~")
    assert home.endswith("gf.db")
    recorder = store_recorder(tmp_path / "sub" / "gf.db")
    assert isinstance(recorder, SQLiteRecorder)
    assert recorder.path == str(tmp_path / "sub" / "gf.db")
    with pytest.raises(ConfigError, match="is not valid"):
        parse_store(b"/bytes.db")  # type: ignore[arg-type]


def test_store_recorder_builds_the_right_recorder() -> None:
    assert isinstance(store_recorder("sqlite:///x.db"), SQLiteRecorder)
    recorder = store_recorder("postgresql://app:pw-secret@127.0.0.1:1/db")
    assert isinstance(recorder, PostgresRecorder)
    assert "pw-secret" not in repr(recorder)


def test_passwords_are_hidden_in_descriptions() -> None:
    url = StoreTarget("postgresql", "postgresql://app:s3cret@db/m").describe()
    assert url == "postgresql://app:***@db/m"
    keywords = StoreTarget("postgresql", "host=db password=s3cret dbname=m").describe()
    assert "s3cret" not in keywords


def test_store_module_keeps_its_names() -> None:
    # Readers of the store (the report) import these from gracefail.recorders.store.
    from gracefail.recorders import connected, schema, store, target

    assert store.parse_store is target.parse_store
    assert store.StoreTarget is target.StoreTarget
    assert (store.FAILURES, store.PAGE_EVENTS) == (schema.FAILURES, schema.PAGE_EVENTS)
    assert store.MIGRATIONS is schema.MIGRATIONS
    assert store.StoreUnavailable is connected.StoreUnavailable
    assert store.Backoff is connected.Backoff
    for name in store.__all__:
        assert hasattr(store, name), name


def test_importing_gracefail_pulls_in_no_exporter() -> None:
    code = (
        "import sys, gracefail, gracefail.recorders, gracefail.core, gracefail.report, "
        "gracefail.asgi, gracefail.guard\n"
        "from gracefail.recorders import SQLiteRecorder, StatsdRecorder\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('prometheus_client', 'opentelemetry', 'psycopg')]\n"
        "assert not heavy, heavy\n"
        "from gracefail.recorders import PrometheusRecorder\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_unknown_recorder_name() -> None:
    import gracefail.recorders as recorders

    with pytest.raises(AttributeError, match="no attribute 'KafkaRecorder'"):
        recorders.KafkaRecorder  # noqa: B018 - the attribute access is the test
