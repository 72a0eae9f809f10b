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

from .app_config import config_source, load, page_options, with_page_options
from .config import ConfigError, config_from
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
@config_source
@page_options
def serve(
    host: str,
    port: int,
    store: str | None,
    secret: str | None,
    config_file: str | None,
    routes: tuple[str, ...],
    settings: str | None,
    app: str | None,
    template_dir: str | None,
    brand: str | None,
    color: str | None,
    status_page: str | None,
    retry_after: int | None,
) -> None:
    """Answer a proxy's error sub-requests with gracefail's page while the app is down.

    The configuration is the app's own with --settings or --app (its secret, store and
    page), else gracefail's defaults and the environment; then --config's fields, then
    the flags.
    """
    try:
        import uvicorn
    except ImportError:
        raise click.ClickException(
            "gracefail serve needs uvicorn: pip install 'gracefail[gateway]'"
        ) from None
    from .gateway import create_app

    loaded = load(settings, app)
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    file_options = _settings(config_file)
    routes = tuple(file_options.pop("routes", ())) + routes
    flags = {"store": store, "secret": secret}
    file_options.update({name: value for name, value in flags.items() if value is not None})
    try:
        base = config_from(loaded.config, file_options)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    config = with_page_options(
        base,
        template_dir=template_dir,
        brand=brand,
        color=color,
        status_page=status_page,
        retry_after=retry_after,
    )
    try:
        gateway = create_app(config, routes=routes)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    _check_port(host, port)
    shown = mask_credentials(config.store)
    click.echo(f"gracefail serve: http://{host}:{port}/ store={shown} ({loaded.source})", err=True)
    uvicorn.run(gateway, host=host, port=port, log_level="warning", lifespan="on")
