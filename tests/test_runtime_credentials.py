"""Credentials in a store's DSN are never shown: reprs, failure logs, the report, errors.

Issue 12, defect 8: ``postgresql://gf@db/gf?password=...`` showed its password in
``repr(recorder)`` and in every failure log line (only a URL's user-info password was
masked).
"""

from __future__ import annotations

import logging
import time

import pytest

from gracefail.config import ConfigError
from gracefail.events import ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders.target import StoreTarget, mask_credentials, parse_store
from gracefail.report.errors import ReportError
from gracefail.report.reader import describe_store, open_store
from tests.apps.common import free_port

SECRET = "s3cr3t-VALUE"


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        pytest.param(
            f"postgresql://gf@db/gf?password={SECRET}",
            "postgresql://gf@db/gf?password=***",
            id="query-password",
        ),
        pytest.param(
            f"postgresql://gf:{SECRET}@db:5432/gf", "postgresql://gf:***@db:5432/gf", id="userinfo"
        ),
        pytest.param(
            f"postgresql://gf:p@{SECRET}@db/gf", "postgresql://gf:***@db/gf", id="userinfo-with-at"
        ),
        pytest.param(
            f"postgres://db/gf?sslmode=require&sslpassword={SECRET}&application_name=x",
            "postgres://db/gf?sslmode=require&sslpassword=***&application_name=x",
            id="sslpassword-among-others",
        ),
        pytest.param(
            f"postgresql://db/gf?Client_Secret={SECRET}#x",
            "postgresql://db/gf?Client_Secret=***#x",
            id="secret-any-case",
        ),
        pytest.param(
            f"postgresql://db/gf?sslkey=/etc/{SECRET}.pem",
            "postgresql://db/gf?sslkey=***",
            id="key",
        ),
        pytest.param(
            f"host=db password={SECRET} user=gf", "host=db password=*** user=gf", id="libpq"
        ),
        pytest.param(
            f"host=db password = '{SECRET} \\' x' user=gf",
            "host=db password=*** user=gf",
            id="libpq-quoted",
        ),
        pytest.param("postgresql://gf@db/gf?sslmode=require", None, id="nothing-to-mask"),
    ],
)
def test_mask_credentials(dsn: str, shown: str | None) -> None:
    assert mask_credentials(dsn) == (dsn if shown is None else shown)
    assert StoreTarget("postgresql", dsn).describe() == mask_credentials(dsn)


def test_postgres_recorder_repr_hides_a_query_password() -> None:
    pytest.importorskip("psycopg")
    from gracefail.recorders.postgres import PostgresRecorder

    recorder = PostgresRecorder(f"postgresql://gf@db/gf?password={SECRET}")
    assert SECRET not in repr(recorder)
    assert SECRET not in recorder.where
    assert "password=***" in repr(recorder)


def test_failure_log_lines_hide_a_query_password(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("psycopg")
    from gracefail.recorders.postgres import PostgresRecorder

    dsn = f"postgresql://gf@127.0.0.1:{free_port()}/gf?password={SECRET}&sslpassword={SECRET}"
    recorder = PostgresRecorder(dsn, connect_timeout=1, retry_first=0.01, retry_cap=0.02)
    pipeline = Pipeline([recorder], 100)
    caplog.set_level(logging.DEBUG, logger="gracefail")
    for n in range(3):
        pipeline.put(ServerEvent(time.time(), f"i{n}", 502, "connection", "GET", "/", "html"))
        assert pipeline.flush(10)
        time.sleep(0.03)
    pipeline.close()
    assert pipeline.failed_events == 3
    assert any("failed; its events are dropped" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text  # messages and tracebacks, as a handler prints them


def test_report_names_the_store_without_credentials() -> None:
    dsn = f"postgresql://gf@db/gf?password={SECRET}"
    assert SECRET not in describe_store(dsn)
    assert describe_store(dsn) == "postgresql://gf@db/gf?password=***"


def test_report_connection_error_hides_credentials() -> None:
    pytest.importorskip("psycopg")
    dsn = f"postgresql://gf:{SECRET}@127.0.0.1:{free_port()}/gf?sslpassword={SECRET}"
    with pytest.raises(ReportError) as caught, open_store(dsn):
        pass
    assert "cannot connect to postgresql://gf:***@127.0.0.1" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_rejected_store_is_named_without_credentials() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_store(f"mysql://gf:{SECRET}@db/gf?password={SECRET}")
    assert SECRET not in str(caught.value)
    assert "mysql://gf:***@db/gf?password=***" in str(caught.value)
