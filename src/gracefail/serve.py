"""``gracefail serve``: run :mod:`gracefail.gateway` under uvicorn.

Options come from a settings file (``--config``: TOML or JSON, keys are
:class:`gracefail.Config` fields, plus ``routes``), then the environment
(``GRACEFAIL_SECRET``, ``GRACEFAIL_DB``), then the flags, which win.
"""

from __future__ import annotations

import errno
import json
import socket
import tomllib
from pathlib import Path
from typing import Any

import click

from .config import Config, ConfigError, config_from
from .recorders.target import mask_credentials

__all__ = ["serve"]


def _settings(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    text = Path(path).read_bytes()
    try:
        loaded = tomllib.loads(text.decode()) if path.endswith(".toml") else json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None
    if not isinstance(loaded, dict):
        raise click.BadParameter(f"{path}: expected a table of options", param_hint="--config")
    return loaded


def _check_port(host: str, port: int) -> None:
    """Fail with a sentence, not uvicorn's traceback, when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"failed: {exc}"
            raise click.ClickException(
                f"cannot listen on {host}:{port}: the port {reason} (choose another with --port)"
            ) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--store", default=None, help="Event store (path or URL); default GRACEFAIL_DB.")
@click.option("--secret", default=None, help="The app's beacon secret; default GRACEFAIL_SECRET.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              default=None, help="TOML or JSON file of Config fields (and 'routes').")  # fmt: skip
@click.option("--route", "routes", multiple=True, help="Route prefix to label failures with.")
@click.option("--template-dir", type=click.Path(file_okay=False, exists=True), default=None)
@click.option("--brand", default=None, help="Brand name on the page.")
@click.option("--color", default=None, help="Brand accent colour.")
@click.option("--status-page", default=None, help="Status page URL to link.")
@click.option("--retry-after", type=int, default=None, help="Seconds before the first probe.")
def serve(
    host: str,
    port: int,
    store: str | None,
    secret: str | None,
    config_file: str | None,
    routes: tuple[str, ...],
    template_dir: str | None,
    brand: str | None,
    color: str | None,
    status_page: str | None,
    retry_after: int | None,
) -> None:
    """Answer a proxy's error sub-requests with gracefail's page while the app is down."""
    try:
        import uvicorn
    except ImportError:
        raise click.ClickException(
            "gracefail serve needs uvicorn: pip install 'gracefail[gateway]'"
        ) from None
    from .gateway import create_app

    settings = _settings(config_file)
    routes = tuple(settings.pop("routes", ())) + routes
    flags: dict[str, Any] = {
        "store": store,
        "secret": secret,
        "template_dir": template_dir,
        "status_page_url": status_page,
    }
    settings.update({name: value for name, value in flags.items() if value is not None})
    brand_options = dict(settings.pop("brand", {}) or {})
    brand_options.update({k: v for k, v in (("name", brand), ("color", color)) if v is not None})
    if brand_options:
        settings["brand"] = brand_options
    if retry_after is not None:
        settings["retry"] = {**(settings.get("retry") or {}), "retry_after": retry_after}
    try:
        config: Config = config_from(None, settings)
        app = create_app(config, routes=routes)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    _check_port(host, port)
    store = mask_credentials(config.store)
    click.echo(f"gracefail serve: http://{host}:{port}/ store={store}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
