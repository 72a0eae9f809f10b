"""The ``gracefail`` command (also ``python -m gracefail``)."""

from __future__ import annotations

import http.server
import json
import sys
from pathlib import Path
from typing import Any

import click

from ._version import __version__
from .classify import Failure
from .config import LOCALES, Brand, Config, ConfigError, RetryPolicy
from .render import PAGE_BUDGET, Renderer
from .report import options as report_options
from .serve import serve

__all__ = ["main"]


def _examples_dir() -> Path | None:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "example_apps", here.parent / "_examples"):
        if (candidate / "run_demo.py").is_file():
            return candidate
    return None


def _preview_config(
    template_dir: str | None, brand: str, color: str, status_page: str | None
) -> Config:
    try:
        return Config(
            brand=Brand(name=brand, color=color),
            template_dir=template_dir,
            status_page_url=status_page,
            secret="preview-only-secret-not-for-production",  # noqa: S106 - preview only
            recorders=[],
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _render_preview(config: Config, status: int, method: str, locale: str) -> tuple[bytes, str]:
    renderer = Renderer(config)
    safe = method in ("GET", "HEAD")
    failure = Failure(status=status, cause="preview")
    body, _, csp = renderer.body("html", failure, locale, safe, "preview-incident", "", "/")
    return body, csp or ""


@click.group()
@click.version_option(__version__, prog_name="gracefail")
def main() -> None:
    """gracefail: upstream outages as a page users can live with."""


@main.command()
@click.option("--status", type=click.Choice(["502", "504"]), default="502", show_default=True)
@click.option("--method", type=click.Choice(["GET", "POST"]), default="GET", show_default=True)
@click.option("--locale", type=click.Choice(LOCALES), default="en", show_default=True)
@click.option("--template-dir", type=click.Path(file_okay=False, exists=True), default=None)
@click.option("--brand", default="Acme", show_default=True, help="Brand name shown on the page.")
@click.option("--color", default="#2563eb", show_default=True, help="Brand accent colour.")
@click.option("--status-page", default=None, help="Status page URL to link.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None)
@click.option("--serve", is_flag=True, help="Serve on 127.0.0.1, re-rendering on every reload.")
@click.option("--port", type=int, default=8765, show_default=True)
def preview(
    status: str,
    method: str,
    locale: str,
    template_dir: str | None,
    brand: str,
    color: str,
    status_page: str | None,
    out: str | None,
    serve: bool,
    port: int,
) -> None:
    """Render the page for one status, method and locale, to a file or a local server."""
    config = _preview_config(template_dir, brand, color, status_page)
    if not serve:
        body, _ = _render_preview(config, int(status), method, locale)
        if out:
            Path(out).write_bytes(body)
            click.echo(f"wrote {out} ({len(body)} bytes; budget {PAGE_BUDGET})")
        else:
            sys.stdout.buffer.write(body)
        return

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # Re-render each time, so template edits show on reload.
            try:
                body, csp = _render_preview(config, int(status), method, locale)
            except Exception as exc:
                body, csp = f"template error: {exc}".encode(), ""
            code = int(status) if "_gf=" not in self.path else 503
            self.send_response(code)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            if csp:
                self.send_header("Content-Security-Policy", csp)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            click.echo(f"beacon: {self.rfile.read(min(length, 4096)).decode(errors='replace')}")
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    click.echo(f"previewing the {status} page at http://127.0.0.1:{port}/ (Ctrl+C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.command()
@click.option(
    "--framework", type=click.Choice(["fastapi", "starlette", "flask", "django"]), default="fastapi"
)
@click.option("--port", type=int, default=8000, show_default=True)
def demo(framework: str, port: int) -> None:
    """Run a demo app in front of a flapping upstream on 127.0.0.1."""
    examples = _examples_dir()
    if examples is None:
        raise click.ClickException(
            "the demo apps ship with the source checkout: run `make demo` there"
        )
    sys.path.insert(0, str(examples))
    from run_demo import main as run_demo  # type: ignore[import-not-found]

    run_demo(["--framework", framework, "--port", str(port)])


@main.command()
@click.option("--template-dir", type=click.Path(file_okay=False, exists=True), default=None)
def check(template_dir: str | None) -> None:
    """Validate a configuration's templates: every variant renders within budget."""
    config = _preview_config(template_dir, "Acme", "#2563eb", None)
    try:
        renderer = Renderer(config, strict=True)
    except Exception as exc:
        raise click.ClickException(f"the template does not render: {exc!r}") from exc
    problems = []
    for (status, locale, safe), page in sorted(renderer.pages.items()):
        size = len(page.text.fill(_dummy_values(page.text.slots)).encode())
        if size > PAGE_BUDGET:
            problems.append(f"{status} {locale} {'GET' if safe else 'POST'}: {size} bytes")
    click.echo(json.dumps({"variants": len(renderer.pages), "over_budget": problems}))
    if problems:
        raise SystemExit(1)


@main.command()
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@click.option("--template-dir", type=click.Path(file_okay=False, exists=True), default=None)
@click.option("--brand", default="This site", show_default=True, help="Brand name on the page.")
@click.option("--color", default="#2563eb", show_default=True, help="Brand accent colour.")
@click.option("--status-page", default=None, help="Status page URL to link.")
@click.option("--retry-after", type=int, default=5, show_default=True, help="Seconds.")
def export(
    out: str,
    force: bool,
    template_dir: str | None,
    brand: str,
    color: str,
    status_page: str | None,
    retry_after: int,
) -> None:
    """Write static 502/504 pages (and csp.conf) for a proxy to serve when the app is down."""
    from .export import ExportError, export_pages

    try:
        config = _preview_config(template_dir, brand, color, status_page).replace(
            retry=RetryPolicy(retry_after=retry_after)
        )
        result = export_pages(config, Path(out), force=force)
    except (ExportError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {len(result.files)} files to {out}; see docs/nginx.md")


def _dummy_values(slots: frozenset[str]) -> dict[str, str]:
    return dict.fromkeys(slots, "x" * 22)


@main.command()
@report_options.click_options("GRACEFAIL_DB, else ./gracefail.sqlite3")
def report(**values: Any) -> None:
    """Error frequency and what it cost users, from the event store."""
    report_options.run_click(values)


main.add_command(serve)
