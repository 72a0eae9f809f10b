"""gracefail export: the files each proxy reads, and what HAProxy's buffer holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gracefail import Config, RetryPolicy
from gracefail import export as export_module
from gracefail.cli import main
from gracefail.export import HAPROXY_ROOM, export_pages, haproxy_size

CONFIG = Config(recorders=[], secret="s" * 20, retry=RetryPolicy(retry_after=7))


def parse(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, body = response.split(b"\r\n\r\n", 1)
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert len(headers) == len(lines), "a header appears twice"
    return status, headers, body


@pytest.mark.parametrize(
    ("status", "line", "page"),
    [
        pytest.param(502, "HTTP/1.1 502 Bad Gateway", "502.html", id="502"),
        pytest.param(503, "HTTP/1.1 503 Service Unavailable", "502.html", id="503-502-page"),
        pytest.param(504, "HTTP/1.1 504 Gateway Timeout", "504.html", id="504"),
    ],
)
def test_haproxy_errorfiles_are_whole_responses(
    tmp_path: Path, status: int, line: str, page: str
) -> None:
    result = export_pages(CONFIG, tmp_path)
    response = (tmp_path / "haproxy" / f"{status}.http").read_bytes()
    first, headers, body = parse(response)
    assert first == line
    assert body == (tmp_path / page).read_bytes()
    assert headers == {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Retry-After": "7",
        "Content-Security-Policy": result.csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Length": str(len(body)),
        "Connection": "close",
    }
    assert haproxy_size(response) <= HAPROXY_ROOM
    assert result.warnings == []


def test_apache_conf_carries_the_same_headers(tmp_path: Path) -> None:
    result = export_pages(CONFIG, tmp_path)
    lines = (tmp_path / "apache.conf").read_text().splitlines()
    assert 'ForceType "text/html; charset=utf-8"' in lines
    assert f'Header always set Content-Security-Policy "{result.csp}"' in lines
    assert 'Header always set Cache-Control "no-store"' in lines
    assert 'Header always set Retry-After "7"' in lines
    assert 'Header always set X-Content-Type-Options "nosniff"' in lines
    # The CSP is the one nginx's csp.conf carries.
    assert result.csp == (tmp_path / "csp.conf").read_text().split('"')[1]


def test_an_errorfile_too_large_for_haproxy_is_written_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_module, "HAPROXY_ROOM", 4096)
    result = export_pages(CONFIG, tmp_path)
    assert len(result.warnings) == 3
    assert "tune.bufsize 32768" in result.warnings[0]
    assert (tmp_path / "haproxy" / "502.http").exists()
    output = CliRunner().invoke(main, ["export", "--out", str(tmp_path / "cli")])
    assert output.exit_code == 0
    assert output.output.count("warning: ") == 3
