"""What several commands share: where a configuration comes from (gracefail's defaults,
a Django settings module or an app) and the options that change the page.

``gracefail check``, ``export`` and ``serve`` take ``--settings``/``--app`` and read the
app's own configuration, so brand and colour are never typed twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import operator
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .config import Config, ConfigError
from .core import Engine

__all__ = ["DEFAULTS", "Loaded", "config_source", "load", "page_options", "with_page_options"]

F = TypeVar("F", bound=Callable[..., Any])


# -- where a configuration comes from: the defaults, Django settings or an app -------------

DEFAULTS = "the defaults and the environment (GRACEFAIL_SECRET, GRACEFAIL_DB)"


@dataclass(frozen=True, slots=True)
class Loaded:
    """A configuration, where it came from, and the warnings loading it raised."""

    config: Config
    source: str
    warnings: list[str]


@contextlib.contextmanager
def _importable_here() -> Iterator[None]:
    """The working directory on ``sys.path`` while the user's modules are imported, as
    ``python -m`` and ``manage.py`` would have it."""
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        yield
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _django_config(module: str) -> Config:
    try:
        import django
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        raise click.UsageError("--settings needs Django: pip install 'gracefail[django]'") from None
    if settings.configured and getattr(settings, "SETTINGS_MODULE", None) != module:
        raise click.UsageError(f"Django settings other than {module} are already configured")
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    with _importable_here():
        try:
            django.setup()
            from .django.conf import get_config

            return get_config()
        except (ImportError, ImproperlyConfigured) as exc:
            raise click.ClickException(f"Django settings {module}: {exc}") from None


def _import_object(spec: str) -> object:
    """``module:attr``, or ``module:factory()`` to call an application factory."""
    module_name, _, attr = spec.partition(":")
    name = attr.removesuffix("()")
    if not module_name or not name:
        raise click.BadParameter(
            f"{spec!r}: expected MODULE:ATTR such as shop.app:app", param_hint="--app"
        )
    with _importable_here():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise click.ClickException(f"cannot import {module_name}: {exc}") from None
        try:
            found: object = operator.attrgetter(name)(module)
        except AttributeError:
            raise click.ClickException(f"{module_name} has no attribute {name!r}") from None
        return found() if attr.endswith("()") and callable(found) else found


def _find_engine(app: object) -> Engine | None:
    """The engine of the first GracefailMiddleware (ASGI or WSGI) in ``app``'s stack."""
    todo, seen = [app], set()
    while todo:
        layer = todo.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        engine = getattr(layer, "engine", None)
        if isinstance(engine, Engine):
            return engine
        stack = getattr(layer, "middleware_stack", None)
        build = getattr(layer, "build_middleware_stack", None)
        if stack is None and callable(build):
            # Starlette and FastAPI build their middleware (add_middleware's) on the
            # first request; building it here runs no request.
            stack = build()
        todo += [
            inner
            for inner in (stack, getattr(layer, "app", None), getattr(layer, "wsgi_app", None))
            if inner is not None
        ]
    return None


def _app_config(spec: str) -> Config:
    app = _import_object(spec)
    flask = sys.modules.get("flask")
    if flask is not None and isinstance(app, flask.Flask):
        from .flask import EXTENSION_KEY, Gracefail

        if EXTENSION_KEY in app.extensions:
            return Gracefail.engine(app).config
    engine = _find_engine(app)  # an app.wsgi_app wrapped by hand is found here too
    if engine is None:
        raise click.ClickException(
            f"{spec} has no GracefailMiddleware: expected a Flask app with Gracefail(app), "
            "or an ASGI or WSGI app wrapped in (or adding) gracefail's middleware"
        )
    return engine.config


def load(settings: str | None, app: str | None) -> Loaded:
    """The configuration ``--settings`` or ``--app`` names; else gracefail's defaults."""
    if settings and app:
        raise click.UsageError("give --settings or --app, not both")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if settings:
                config, source = _django_config(settings), f"Django settings {settings}"
            elif app:
                config, source = _app_config(app), f"the app {app}"
            else:
                config, source = Config(), DEFAULTS
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    return Loaded(config, source, [str(warning.message) for warning in caught])


def config_source(command: F) -> F:
    """``--settings`` and ``--app``: the options of the app's own configuration."""
    command = click.option(
        "--app",
        metavar="MODULE:ATTR",
        default=None,
        help="A Flask app, or an ASGI/WSGI app with GracefailMiddleware, "
        "such as shop.app:app (or shop.app:create_app()): use its configuration.",
    )(command)
    return click.option(
        "--settings",
        metavar="MODULE",
        default=None,
        help="A Django settings module, such as shop.settings: use its GRACEFAIL.",
    )(command)


def page_options(command: F) -> F:
    """The options of the page shared by ``export`` and ``serve``; None keeps the base's."""
    for option in reversed(
        [
            click.option("--template-dir", type=click.Path(file_okay=False, exists=True),
                         default=None, help="A folder whose page.html replaces the page."),
            click.option("--brand", default=None,
                         help="Brand name [default: the app's, else This site]."),
            click.option("--color", default=None,
                         help="Accent colour [default: the app's, else #2563eb]."),
            click.option("--status-page", default=None,
                         help="Status page URL [default: the app's]."),
            click.option("--retry-after", type=int, default=None,
                         help="Seconds before the first probe [default: the app's, else 5]."),
        ]
    ):  # fmt: skip
        command = option(command)
    return command


def with_page_options(
    base: Config,
    *,
    template_dir: str | None,
    brand: str | None,
    color: str | None,
    status_page: str | None,
    retry_after: int | None,
) -> Config:
    """``base`` with the page options that were given; a UsageError naming a bad one."""
    changes: dict[str, Any] = {}
    if brand is not None or color is not None:
        changes["brand"] = dataclasses.replace(
            base.brand, name=brand or base.brand.name, color=color or base.brand.color
        )
    if status_page is not None:
        changes["status_page_url"] = status_page
    if template_dir is not None:
        changes["template_dir"] = template_dir
    if retry_after is not None:
        changes["retry"] = dataclasses.replace(base.retry, retry_after=retry_after)
    try:
        return base.replace(**changes) if changes else base
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
