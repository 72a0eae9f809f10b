"""Django integration: ``gracefail.django.GracefailMiddleware`` and the ``gracefail.django`` app.

Set-up::

    INSTALLED_APPS = [..., "gracefail.django"]     # system checks, gracefail_report command
    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "gracefail.django.GracefailMiddleware",     # high: before CommonMiddleware
        ...
    ]
    GRACEFAIL = {"status_page_url": "https://status.acme.example", "brand": {"name": "Acme"}}

``GRACEFAIL`` keys are :class:`gracefail.Config` fields (either case; nested dicts
for ``brand`` and ``retry``). A bad key or value raises ``ImproperlyConfigured``
naming it (and the ``gracefail.E001`` check reports it). ``secret`` defaults to one
derived from ``SECRET_KEY``. A ``gracefail/page.html`` found by Django's template
loaders replaces the built-in page (it is a Jinja2 template, rendered by gracefail).
"""

from __future__ import annotations

from .._compat import importing

with importing("django"):
    from .middleware import GracefailMiddleware

__all__ = ["GracefailMiddleware"]
