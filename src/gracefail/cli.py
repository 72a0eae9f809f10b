"""The ``gracefail`` command (also ``python -m gracefail``)."""

from __future__ import annotations

import dataclasses
import http.server
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ._version import __version__
from .app_config import Loaded, config_source, load, page_options, with_page_options
from .classify import Failure
from .config import DEFAULT_STORE, LOCALES, Brand, Config, ConfigError
from .demo import run as demo_run
from .maintenance_cli import click_group as maintenance_group
from .recorders.target import parse_store
from .render import PAGE_BUDGET, Renderer
from .report import options as report_options
from .serve import serve

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _examples_dir() -> Path | None:
    """``example_apps/`` when gracefail runs from its source checkout (an editable install)."""
    candidate = Path(__file__).resolve().parents[2] / "example_apps"
    return candidate if (candidate / "run_demo.py").is_file() else None


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
    "--framework",
    type=click.Choice(sorted(demo_run.APPS)),
    default="starlette",
    show_default=True,
    help="The Starlette shop ships in the package; the others with gracefail's source.",
)
@click.option("--port", type=int, default=8000, show_default=True)
def demo(framework: str, port: int) -> None:
    """Run a demo shop in front of a flapping upstream on 127.0.0.1.

    The shop listens on --port and the upstream on the port after it; the upstream is
    down or slow 12 s out of every 30, and the page recovers by itself each time.
    """
    examples = _examples_dir()
    if framework not in demo_run.PACKAGED and examples is None:
        raise click.ClickException(
            f"the {framework} demo is in example_apps/ of gracefail's source, not in the "
            "package: get it with `pip download --no-deps --no-binary :all: gracefail` "
            f"(unpack it, then `make demo FRAMEWORK={framework}` there) or a clone of the "
            "repository. The package has the Starlette demo: `gracefail demo`"
        )
    missing = demo_run.missing_requirements(framework)
    if missing:
        install = [f'"gracefail[{framework}]"', *(name for name in missing if name != framework)]
        raise click.ClickException(
            f"the {framework} demo needs {', '.join(missing)}: pip install {' '.join(install)}"
        )
    demo_run.run(framework, port, apps_dir=examples)


# -- check ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageSize:
    """One variant of the page and its size with a request's values filled in."""

    status: int
    locale: str
    method: str
    size: int


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``gracefail check`` found."""

    source: str
    template: str
    pages: list[PageSize]
    store: str
    recorders: list[str] | None
    secret: bool
    warnings: list[str]
    budget: int = PAGE_BUDGET
    # Per locale, the strings no locale file gives (English is shown): a language a theme
    # adds without every key, or a key a theme adds without every language.
    missing_keys: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    locale_files: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def over_budget(self) -> list[PageSize]:
        return [page for page in self.pages if page.size > self.budget]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.over_budget,
            "checked": self.source,
            "template": self.template,
            "variants": len(self.pages),
            "budget": self.budget,
            "pages": [dataclasses.asdict(page) for page in self.pages],
            "over_budget": [dataclasses.asdict(page) for page in self.over_budget],
            "store": self.store,
            "recorders": self.recorders,
            "secret": self.secret,
            "warnings": self.warnings,
            "missing_keys": self.missing_keys,
        }

    def summary(self) -> str:
        sizes = [page.size for page in self.pages]
        columns = [(status, method) for status in (502, 504) for method in ("GET", "POST")]
        by_key = {(page.locale, page.status, page.method): page.size for page in self.pages}
        head = "  ".join(f"{status} {method}".rjust(8) for status, method in columns)
        rows = [f"    {'locale':<8}{head}"]
        for locale in sorted({page.locale for page in self.pages}, key=_locale_order):
            cells = "  ".join(f"{by_key.get((locale, *column), 0):>8,}" for column in columns)
            rows.append(f"    {locale:<8}{cells}")
        recorders = (
            f"recorders given: {', '.join(self.recorders)} (the store is not used)"
            if self.recorders is not None
            else self.store
        )
        lines = [
            f"checked: {self.source}",
            f"  template  {self.template}",
            f"  pages     {len(self.pages)} variants render, {min(sizes):,} to {max(sizes):,} "
            f"bytes (budget {self.budget:,}):",
            *rows,
            f"  store     {recorders}",
            f"  secret    {'set' if self.secret else 'not set'}",
        ]
        for locale, keys in self.missing_keys.items():
            where = self.locale_files.get(locale, f"no locales/{locale}.json")
            lines.append(
                f"  missing   {locale} ({where}) lacks {len(keys)} string"
                f"{'s' if len(keys) > 1 else ''}, shown in English: {', '.join(keys)}"
            )
        if self.warnings:
            lines += ["warnings:", *(f"  - {warning}" for warning in self.warnings)]
        over = self.over_budget
        if over:
            largest = max(over, key=lambda page: page.size)
            lines.append(
                f"FAILED: {len(over)} of {len(self.pages)} variants are over the budget; the "
                f"largest is {largest.status} {largest.locale} {largest.method}, "
                f"{largest.size:,} bytes"
            )
        else:
            lines.append("OK")
        return "\n".join(lines)


def _describe_store(store: str) -> str:
    try:
        target = parse_store(store)
    except ConfigError as exc:
        return str(exc)
    if target.dialect == "postgresql":
        return f"{target.describe()} (PostgreSQL, not contacted)"
    path = Path(target.location).resolve()
    if path.is_file():
        return f"{path} (SQLite, {path.stat().st_size:,} bytes)"
    return f"{path} (SQLite, created on the first failure)"


def _config_warnings(config: Config) -> list[str]:
    found = []
    if config.secret is None:
        found.append(
            "no secret: each process signs beacon tokens with a random key, so beacons that "
            "reach another worker, or come after a restart, are refused; set GRACEFAIL_SECRET "
            "(the same on every worker)"
        )
    if config.recorders is None and config.store == DEFAULT_STORE:
        found.append(
            f"the store is {DEFAULT_STORE} in the working directory, which depends on where "
            "the server starts; set the store option or GRACEFAIL_DB"
        )
    if config.debug:
        found.append("debug is on: pages show the failure's detail (never in production)")
    return found


def _locale_order(locale: str) -> tuple[int, str]:
    # The shipped locales first, in their order; then those a theme adds.
    return (LOCALES.index(locale) if locale in LOCALES else len(LOCALES), locale)


def _variant_order(item: tuple[tuple[int, str, bool], object]) -> tuple[int, tuple[int, str], bool]:
    (status, locale, safe), _ = item
    return status, _locale_order(locale), not safe


def _check(loaded: Loaded) -> CheckResult:
    config = loaded.config
    try:
        renderer = Renderer(config, strict=True)
    except ConfigError as exc:  # names what to fix: an element, a locale file's line, a route
        raise click.ClickException(str(exc).removeprefix("gracefail: ")) from exc
    except Exception as exc:
        raise click.ClickException(f"the template does not render: {exc!r}") from exc
    pages = [
        PageSize(
            status,
            locale,
            "GET" if safe else "POST",
            len(page.text.fill(_dummy_values(page.text.slots)).encode()),
        )
        for (status, locale, safe), page in sorted(renderer.pages.items(), key=_variant_order)
    ]
    template = (
        str(Path(config.template_dir).resolve() / "page.html")
        if config.template_dir is not None
        else "the built-in page"
    )
    recorders = (
        None
        if config.recorders is None
        else [type(recorder).__name__ for recorder in config.recorders]
    )
    return CheckResult(
        source=loaded.source,
        template=template,
        pages=pages,
        store=_describe_store(config.store),
        recorders=recorders,
        secret=config.secret is not None,
        warnings=loaded.warnings + _config_warnings(config),
        missing_keys={locale: list(keys) for locale, keys in renderer.wording.missing.items()},
        locale_files=dict(renderer.wording.sources),
    )


@main.command()
@config_source
@click.option(
    "--template-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A folder whose page.html replaces the configured one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(settings: str | None, app: str | None, template_dir: str | None, as_json: bool) -> None:
    """Validate a configuration and its template: every page variant renders within budget.

    Without --settings or --app, checks gracefail's defaults (and the environment's).
    """
    loaded = load(settings, app)
    if template_dir is not None:
        try:
            config = loaded.config.replace(template_dir=template_dir)
        except ConfigError as exc:  # Config.messages checked against the folder's locales
            raise click.ClickException(str(exc).removeprefix("gracefail: ")) from exc
        loaded = dataclasses.replace(loaded, config=config)
    result = _check(loaded)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else result.summary())
    if result.over_budget:
        raise SystemExit(1)


@main.command()
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@config_source
@page_options
def export(
    out: str,
    force: bool,
    settings: str | None,
    app: str | None,
    template_dir: str | None,
    brand: str | None,
    color: str | None,
    status_page: str | None,
    retry_after: int | None,
) -> None:
    """Write static 502/504 pages for a proxy to serve when the app is down: the pages,
    csp.conf (nginx), apache.conf (Apache) and haproxy/*.http (HAProxy's errorfile).

    The page is the app's own with --settings or --app; the other options win over it.
    """
    from .export import ExportError, export_pages

    loaded = load(settings, app)
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    config = with_page_options(
        loaded.config,
        template_dir=template_dir,
        brand=brand,
        color=color,
        status_page=status_page,
        retry_after=retry_after,
    )
    try:
        result = export_pages(config, Path(out), force=force)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"wrote {len(result.files)} files to {out} ({config.brand.name}, from {loaded.source}); "
        "see docs/gateway.md"
    )


def _dummy_values(slots: frozenset[str]) -> dict[str, str]:
    return dict.fromkeys(slots, "x" * 22)


@main.command()
@report_options.click_options("GRACEFAIL_DB, else ./gracefail.sqlite3")
def report(**values: Any) -> None:
    """Error frequency and what it cost users, from the event store."""
    report_options.run_click(values)


main.add_command(serve)
main.add_command(maintenance_group())
