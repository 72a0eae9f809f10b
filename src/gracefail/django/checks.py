"""System checks, active when ``gracefail.django`` is in ``INSTALLED_APPS``.

========================  =======================================================
``gracefail.E001``        ``GRACEFAIL`` has an unknown key or a bad value.
``gracefail.E002``        ``GracefailMiddleware`` is not in ``MIDDLEWARE``.
``gracefail.E003``        it is listed after a middleware that answers requests itself
                          (redirects, URL resolution) before gracefail sees them.
``gracefail.E004``        no secret to sign beacon tokens (``GRACEFAIL["secret"]``,
                          ``GRACEFAIL_SECRET`` or ``SECRET_KEY``).
``gracefail.E005``        the page template (``template_dir`` or a ``gracefail/page.html``
                          in Django's template directories) does not render.
``gracefail.W001``        a middleware listed after it has ``process_exception``: Django
                          asks that one first, so it may answer upstream failures itself.
``gracefail.W002``        it is listed more than once.
========================  =======================================================
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..config import Config
from ..render import Renderer
from .conf import get_config

__all__ = ["check_gracefail"]

MIDDLEWARE_PATHS = frozenset(
    ("gracefail.django.GracefailMiddleware", "gracefail.django.middleware.GracefailMiddleware")
)
# Middleware that can answer a request without calling the rest of the stack.
ANSWERS_FIRST = frozenset(
    (
        "django.middleware.common.CommonMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.middleware.cache.FetchFromCacheMiddleware",
        "django.middleware.cache.CacheMiddleware",
    )
)
_HINT = "List 'gracefail.django.GracefailMiddleware' right after SecurityMiddleware."


def _middleware_checks(middleware: list[str]) -> list[CheckMessage]:
    positions = [i for i, path in enumerate(middleware) if path in MIDDLEWARE_PATHS]
    if not positions:
        return [
            Error("gracefail's middleware is not in MIDDLEWARE.", hint=_HINT, id="gracefail.E002")
        ]
    messages: list[CheckMessage] = []
    first = positions[0]
    if len(positions) > 1:
        messages.append(
            CheckWarning(
                "GracefailMiddleware is listed more than once; only the first one acts.",
                hint="Remove the other entries.",
                id="gracefail.W002",
            )
        )
    early = [path for path in middleware[:first] if path in ANSWERS_FIRST]
    if early:
        messages.append(
            Error(
                f"GracefailMiddleware is listed after {', '.join(early)}, which can answer "
                "requests (redirects, cached pages, URL resolution) before gracefail sees "
                "them: beacons would go through the URLconf and their 502/504 pass unchanged.",
                hint=_HINT,
                id="gracefail.E003",
            )
        )
    for path in middleware[first + 1 :]:
        if path in MIDDLEWARE_PATHS:
            continue
        try:
            handles = hasattr(import_string(path), "process_exception")
        except ImportError:
            continue  # Django's own checks report middleware that cannot be imported
        if handles:
            messages.append(
                CheckWarning(
                    f"{path} comes after GracefailMiddleware and has process_exception: Django "
                    "calls it first, so an upstream failure it answers never gets the page.",
                    hint="Move GracefailMiddleware below it, or return None from its "
                    "process_exception for upstream failures.",
                    id="gracefail.W001",
                )
            )
    return messages


def _template_checks(config: Config) -> list[CheckMessage]:
    try:
        Renderer(config, strict=True)
    except Exception as exc:  # any template fault: Jinja2 syntax, missing variable, size
        return [
            Error(
                f"gracefail's page template in {config.template_dir} does not render: {exc}",
                hint="It is a Jinja2 template; run `gracefail check --template-dir DIR`.",
                id="gracefail.E005",
            )
        ]
    return []


@register(Tags.compatibility)
def check_gracefail(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """gracefail's settings and middleware placement (see the module docs)."""
    messages = _middleware_checks(list(getattr(settings, "MIDDLEWARE", None) or []))
    try:
        config = get_config()
    except ImproperlyConfigured as exc:
        messages.append(
            Error(
                str(exc),
                hint="GRACEFAIL keys are gracefail.Config fields; see docs/django.md.",
                id="gracefail.E001",
            )
        )
        return messages
    if config.secret is None:
        messages.append(
            Error(
                "gracefail has no secret to sign beacon tokens, so beacons sent to another "
                "worker or after a restart are refused.",
                hint="Set SECRET_KEY, GRACEFAIL['secret'] or the GRACEFAIL_SECRET variable.",
                id="gracefail.E004",
            )
        )
    if config.template_dir is not None:
        messages += _template_checks(config)
    return messages
