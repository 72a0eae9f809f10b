"""gracefail's Django settings, read each time they are asked for (so ``override_settings`` works).

``GRACEFAIL`` is a dict of :class:`gracefail.Config` fields. ``secret`` defaults to one
derived from ``SECRET_KEY``; ``template_dir`` defaults to the first ``gracefail/`` folder
of Django's template directories that holds a ``page.html`` or a ``locales/`` folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.template import engines

from ..config import Config, ConfigError, framework_config
from ..core import under_test
from ..locales import LOCALE_DIR

__all__ = ["PAGE_TEMPLATE", "get_config", "settings_dict", "template_dir", "testing"]

PAGE_TEMPLATE = "gracefail/page.html"


def settings_dict() -> dict[str, Any]:
    """The ``GRACEFAIL`` setting as a dict; ImproperlyConfigured if it is not one."""
    raw = getattr(settings, "GRACEFAIL", None)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"GRACEFAIL must be a dict of gracefail.Config fields, got {type(raw).__name__}"
        )
    return dict(raw)


def _secret_key() -> str | None:
    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses an empty SECRET_KEY when it is read
        return None
    return str(key) if key else None


def _sources(backend: Any) -> Iterator[str]:
    """File names a template backend would try for PAGE_TEMPLATE, without compiling it."""
    engine = getattr(backend, "engine", None)
    for loader in getattr(engine, "template_loaders", ()):
        for origin in loader.get_template_sources(PAGE_TEMPLATE):
            yield str(origin.name)
    env = getattr(backend, "env", None)  # the Jinja2 backend
    if env is not None and env.loader is not None:
        try:
            yield str(env.loader.get_source(env, PAGE_TEMPLATE)[1])
        except Exception:  # jinja2.TemplateNotFound, or a loader without files
            return


def template_dir() -> str | None:
    """The first ``gracefail/`` folder in Django's template directories with a ``page.html``
    (which may extend ``gracefail/base.html``) or only a ``locales/`` folder (words only)."""
    for backend in engines.all():
        for name in _sources(backend):
            folder = os.path.dirname(name)
            if os.path.isfile(name) or os.path.isdir(os.path.join(folder, LOCALE_DIR)):
                return folder
    return None


def testing() -> bool:
    """Whether Django's test environment is set up (``manage.py test``, pytest-django):
    ``setup_test_environment()`` gives ``django.core.mail`` its ``outbox``."""
    from django.core import mail

    return hasattr(mail, "outbox") or under_test()


def get_config() -> Config:
    """The Config the current settings describe; ImproperlyConfigured naming a bad key."""
    options = settings_dict()
    if not any(str(key).lower() == "template_dir" for key in options):
        found = template_dir()
        if found is not None:
            options["template_dir"] = found
    try:
        return framework_config(
            None,
            options,
            {},
            _secret_key(),
            project_dir=getattr(settings, "BASE_DIR", None),
            debug=bool(settings.DEBUG),
        )
    except ConfigError as exc:
        raise ImproperlyConfigured(f"GRACEFAIL: {str(exc).removeprefix('gracefail: ')}") from exc
