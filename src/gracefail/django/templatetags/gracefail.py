"""``{% load gracefail %}`` then ``{% gracefail_head %}`` in a healthy page's ``<head>``.

It writes ``<script src="/_gracefail/register.js" defer></script>`` (beside
``GRACEFAIL["beacon_path"]``), the script that installs gracefail's service worker when
``GRACEFAIL["service_worker"]`` is on, and removes it once the option is off: keep the
tag after turning the option off. Needs ``"gracefail.django"`` in ``INSTALLED_APPS``.
"""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from gracefail.django.conf import settings_dict
from gracefail.worker import DEFAULT_BEACON_PATH, head_tag

__all__ = ["gracefail_head", "register"]

register = template.Library()


@register.simple_tag
def gracefail_head() -> SafeString:
    """The ``<script>`` element that installs (or removes) gracefail's service worker."""
    # Read each time, like the rest of the settings (override_settings works); the value
    # was validated when the middleware started, and is escaped here anyway.
    options = {str(key).lower(): value for key, value in settings_dict().items()}
    beacon_path = options.get("beacon_path")
    if not isinstance(beacon_path, str):
        beacon_path = DEFAULT_BEACON_PATH
    return mark_safe(str(head_tag(beacon_path)))  # noqa: S308 - head_tag escapes the path
