"""``{% load gracefail %}{% gracefail_head %}`` (issue 11), and the worker's files through
Django's middleware with ``GRACEFAIL["service_worker"]``."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("django")

from tests.conformance.harness import django_setup

django_setup()

from django.template import Context, Template  # noqa: E402 - imported once Django is set up (above)
from django.test import Client, override_settings  # noqa: E402 - imported once Django is set up (above)

pytestmark = pytest.mark.django

SECRET = "worker-django-secret-0123456789"
TEMPLATE = "<head>{% load gracefail %}{% gracefail_head %}</head>"


def render() -> str:
    return Template(TEMPLATE).render(Context({}))


def test_the_tag_loads_register_js() -> None:
    assert render() == '<head><script src="/_gracefail/register.js" defer></script></head>'


@override_settings(GRACEFAIL={"BEACON_PATH": "/hooks/gf/beacon", "secret": SECRET})
def test_the_tag_follows_the_beacon_path_setting() -> None:
    assert render() == '<head><script src="/hooks/gf/register.js" defer></script></head>'


@override_settings(GRACEFAIL={"beacon_path": 42, "secret": SECRET})
def test_a_setting_that_is_not_a_path_falls_back_to_the_default() -> None:
    # The middleware refuses it at start-up; the tag never writes it into a page.
    assert "/_gracefail/register.js" in render()


@override_settings(GRACEFAIL={"service_worker": True, "secret": SECRET, "recorders": []})
def test_the_middleware_serves_the_worker_before_the_app() -> None:
    client = Client()
    worker = client.get("/_gracefail/sw.js")
    assert worker.status_code == 200
    assert worker["service-worker-allowed"] == "/"
    assert worker["content-type"] == "text/javascript; charset=utf-8"
    pages = client.get("/_gracefail/sw-pages.json", HTTP_ACCEPT_LANGUAGE="fr")
    assert pages.status_code == 200
    assert json.loads(pages.content)["locale"] == "fr"
