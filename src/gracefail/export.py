"""Static copies of the page for a proxy to serve when the app process itself is down.

``gracefail export --out DIR`` writes, for every proxy at once:

* ``502.html`` and ``504.html`` (the default locale; other locales under
  ``DIR/<locale>/``): the pages, for nginx, Apache and Caddy to serve as files; beside
  each, ``502.html.gz`` and, with the ``brotli`` package, ``502.html.br``: the same page
  compressed, for nginx's ``gzip_static`` and ``brotli_static`` (and Caddy's
  ``precompressed``) to send to the clients that take them;
* ``csp.conf``: nginx ``add_header`` lines: the Content-Security-Policy whose hashes
  match the exported script and style, ``Cache-Control: no-store``, ``Retry-After``;
* ``apache.conf``: the same headers as Apache ``Header always set`` lines, and the
  pages' content type, to ``Include`` in the ``<Directory>`` that serves them;
* ``haproxy/502.http``, ``503.http`` and ``504.http``: whole HTTP responses (status
  line, headers, blank line, page) for HAProxy's ``errorfile`` (default locale only:
  HAProxy picks an errorfile by status, not by language). ``503.http`` carries the
  502 page: HAProxy answers 503 when no server is up or connecting failed, which is
  the app process being down.

The exported page recovers by itself like the live one; it carries no beacon token,
so its beacons are refused (and never retried). A HAProxy file that would not fit in
HAProxy's default buffer is still written, with a warning in ``Exported.warnings``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .classify import Failure
from .config import LOCALES, Config
from .render import Renderer, brotli_module

__all__ = ["HAPROXY_ROOM", "ExportError", "Exported", "export_pages", "haproxy_response"]

STATIC_INCIDENT = "proxy"
HTML_TYPE: Final = "text/html; charset=utf-8"
# status -> (reason phrase, the page it carries).
HAPROXY_PAGES: Final = {
    502: ("Bad Gateway", 502),
    503: ("Service Unavailable", 502),
    504: ("Gateway Timeout", 504),
}
# HAProxy keeps an errorfile as one HTX message in a buffer of tune.bufsize (16384 by
# default), of which tune.maxrewrite (1024) must stay free, or it warns at start-up
# that http-after-response rules may fail on it (past the whole buffer, `haproxy -c`
# refuses the file). HTX stores each header 4 bytes larger than its text (a block header
# instead of ": " and CRLF), and about 90 bytes more for the start line and the message
# (measured with HAProxy 2.6); HAPROXY_OVERHEAD leaves a margin above that.
HAPROXY_ROOM: Final = 16384 - 1024
HAPROXY_OVERHEAD: Final = 128


class ExportError(Exception):
    """The export would overwrite files, or cannot write them."""


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote, and what a proxy might not accept."""

    files: list[Path]
    csp: str
    warnings: list[str] = field(default_factory=list)


def haproxy_size(response: bytes) -> int:
    """What ``response`` takes in HAProxy's buffer, an estimate a little above the real."""
    head = response.split(b"\r\n\r\n", 1)[0]
    headers = head.count(b"\r\n")  # the status line ends with the first CRLF
    return len(response) + 4 * headers + HAPROXY_OVERHEAD


def haproxy_response(status: int, body: bytes, headers: list[tuple[str, str]]) -> bytes:
    """One raw HTTP/1.1 response for HAProxy's ``errorfile``: its own Content-Length and
    ``Connection: close`` added to ``headers``."""
    reason = HAPROXY_PAGES[status][0]
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def _headers(config: Config, csp: str) -> list[tuple[str, str]]:
    """The headers of the exported page: the middleware's for an HTML reply, less the
    incident id and Vary (one page for every client)."""
    return [
        ("Content-Type", HTML_TYPE),
        ("Cache-Control", "no-store"),
        ("Retry-After", str(config.retry.retry_after)),
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
    ]


def _apache_conf(headers: list[tuple[str, str]]) -> bytes:
    lines = [
        "# Include inside the <Directory> that serves gracefail's exported pages (mod_headers).",
        f'ForceType "{HTML_TYPE}"',
    ]
    lines += [f'Header always set {name} "{value}"' for name, value in headers[1:]]
    return ("\n".join(lines) + "\n").encode()


def export_pages(config: Config, out: Path, *, force: bool = False) -> Exported:
    """Write the static pages into ``out``; refuse to overwrite unless ``force``."""
    renderer = Renderer(config, strict=True)
    targets: dict[Path, bytes] = {}
    csp = ""
    for locale in LOCALES:
        folder = out if locale == config.default_locale else out / locale
        for status in (502, 504):
            body, _, page_csp = renderer.body(
                "html", Failure(status, "proxy"), locale, True, STATIC_INCIDENT, "", "/"
            )
            path = folder / f"{status}.html"
            targets[path] = body
            targets[path.with_name(path.name + ".gz")] = gzip.compress(body, 9, mtime=0)
            brotli = brotli_module()
            if brotli is not None:
                targets[path.with_name(path.name + ".br")] = brotli.compress(body, quality=11)
            csp = page_csp or csp
    targets[out / "csp.conf"] = (
        "# Include inside the location that serves gracefail's exported pages.\n"
        f'add_header Content-Security-Policy "{csp}" always;\n'
        'add_header Cache-Control "no-store" always;\n'
        f'add_header Retry-After "{config.retry.retry_after}" always;\n'
    ).encode()
    headers = _headers(config, csp)
    targets[out / "apache.conf"] = _apache_conf(headers)
    warnings = []
    for status, (_, page) in HAPROXY_PAGES.items():
        path = out / "haproxy" / f"{status}.http"
        targets[path] = response = haproxy_response(status, targets[out / f"{page}.html"], headers)
        if (size := haproxy_size(response)) > HAPROXY_ROOM:
            warnings.append(
                f"{path} needs about {size} bytes of HAProxy's buffer, more than the "
                f"{HAPROXY_ROOM} its defaults leave (tune.bufsize 16384 less tune.maxrewrite "
                "1024): set tune.bufsize 32768 in HAProxy's global section, or make the page "
                "smaller"
            )
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; pass --force to overwrite")
    try:
        for path, data in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"cannot write {exc.filename}: {exc.strerror}") from exc
    return Exported(files=sorted(targets), csp=csp, warnings=warnings)
