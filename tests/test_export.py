"""gracefail export: the files each proxy reads, and what HAProxy's buffer holds."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import brotli
import httpx
import pytest
from click.testing import CliRunner

from gracefail import Config, RetryPolicy
from gracefail import export as export_module
from gracefail.cli import main
from gracefail.config import LOCALES
from gracefail.export import HAPROXY_ROOM, export_pages, haproxy_size
from tests.conftest import ROOT, free_port, require_binary, start_server, stop

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


def test_every_page_has_gzip_and_brotli_copies(tmp_path: Path) -> None:
    result = export_pages(CONFIG, tmp_path)
    pages = sorted(tmp_path.rglob("*.html"))
    assert len(pages) == 2 * len(LOCALES)
    for page in pages:
        body = page.read_bytes()
        packed = page.with_name(page.name + ".gz").read_bytes()
        assert gzip.decompress(packed) == body
        assert packed[4:8] == bytes(4), "no mtime: the same page exports to the same bytes"
        assert len(packed) < len(body) / 2
        squeezed = page.with_name(page.name + ".br").read_bytes()
        assert brotli.decompress(squeezed) == body
        assert len(squeezed) < len(packed)
    assert {path.suffix for path in result.files} >= {".html", ".gz", ".br"}
    # A second export refuses to overwrite any of them.
    (tmp_path / "502.html").unlink()
    with pytest.raises(export_module.ExportError, match="--force"):
        export_pages(CONFIG, tmp_path)


BROTLI_MODULE = Path("/usr/lib/nginx/modules/ngx_http_brotli_static_module.so")


def test_nginx_sends_the_compressed_copies(tmp_path: Path) -> None:
    # integrations/nginx/gracefail.conf in a real nginx with the app down: a client that
    # takes gzip gets 502.html.gz as it is on disk, one that takes brotli (with ngx_brotli's
    # static module) 502.html.br, one that takes neither the page.
    nginx = require_binary("/usr/sbin/nginx", "apt-get install nginx-light")
    pages = tmp_path / "pages"
    export_pages(CONFIG, pages)
    listen, app_port = free_port(), free_port()
    snippet = (ROOT / "integrations" / "nginx" / "gracefail.conf").read_text()
    snippet = snippet.replace("127.0.0.1:8000", f"127.0.0.1:{app_port}")
    snippet = snippet.replace("/var/www/gracefail", str(pages))
    brotli_static = BROTLI_MODULE.exists()
    if not brotli_static and os.environ.get("CI"):
        pytest.fail(
            "nginx's brotli_static module is missing: "
            "apt-get install libnginx-mod-http-brotli-static (make test does, as root)"
        )
    if brotli_static:
        snippet = snippet.replace("# brotli_static on;", "brotli_static on;  ")
    head = f"load_module {BROTLI_MODULE};\n" if brotli_static else ""
    head += "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{head}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n"
        f" proxy_temp_path {tmp_path}/proxy;\n fastcgi_temp_path {tmp_path}/fcgi;\n"
        f" uwsgi_temp_path {tmp_path}/uwsgi;\n scgi_temp_path {tmp_path}/scgi;\n"
        f" server {{\n  listen 127.0.0.1:{listen};\n{snippet}\n }}\n}}\n"
    )
    check = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proxy = start_server([nginx, "-c", str(conf)], listen)
    try:
        page = (pages / "502.html").read_bytes()
        codings = [("gzip, deflate", "gzip"), ("identity", None)]
        if brotli_static:
            codings.append(("gzip, deflate, br, zstd", "br"))
        for header, coding in codings:
            with httpx.Client() as client:
                request = client.build_request(
                    "GET",
                    f"http://127.0.0.1:{listen}/orders?id=3",
                    headers={"accept": "text/html", "accept-encoding": header},
                )
                reply = client.send(request, stream=True)
                raw = b"".join(reply.iter_raw())
                reply.close()
            assert reply.status_code == 502
            assert reply.headers.get("content-encoding") == coding
            assert reply.headers["cache-control"] == "no-store"
            assert "script-src 'sha256-" in reply.headers["content-security-policy"]
            if coding is None:
                assert raw == page
            else:
                assert (
                    raw == (pages / f"502.html.{'gz' if coding == 'gzip' else 'br'}").read_bytes()
                )
                assert "accept-encoding" in reply.headers["vary"].lower()
    finally:
        stop(proxy)
