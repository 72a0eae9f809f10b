"""The service worker's files (issue 11): the option, what each file is, their headers and
versions, and that the pages the worker caches are the very pages the middleware serves.

How they behave in a browser: tests/browser/test_browser_worker.py. The same files through
every adapter: the ``worker-*`` rows of tests/conformance.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gracefail import Brand, Config, ConfigError
from gracefail.classify import Failure
from gracefail.core import Engine, Reply, RequestView
from gracefail.worker import BUNDLE, CACHE_PREFIX, MARKS, REGISTER, WORKER, head_tag

SECRET = "worker-unit-secret-0123456789"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
SW = "/_gracefail/" + WORKER
REG = "/_gracefail/" + REGISTER
PAGES = "/_gracefail/" + BUNDLE


def engine(**options: Any) -> Engine:
    return Engine(Config(secret=SECRET, recorders=[], **options))


def get(gracefail: Engine, path: str, method: str = "GET", **headers: str) -> Reply:
    assert path in gracefail.worker_paths
    return gracefail.answer_worker(RequestView(method, path, headers=headers))


def settings(reply: Reply) -> dict[str, Any]:
    """The SETTINGS line the script starts with."""
    first = reply.body.decode().split("\n", 1)[0]
    assert first.startswith("var SETTINGS=")
    assert first.endswith(";")
    value: dict[str, Any] = json.loads(first.removeprefix("var SETTINGS=").removesuffix(";"))
    return value


# -- the option ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "scope"),
    [
        pytest.param(True, "/", id="true"),
        pytest.param("/", "/", id="root"),
        pytest.param("/shop/", "/shop/", id="a-folder"),
        pytest.param("/shop/eu-1/", "/shop/eu-1/", id="two-folders"),
    ],
)
def test_the_option_names_the_scope(value: bool | str, scope: str) -> None:
    gracefail = engine(service_worker=value)
    reply = get(gracefail, SW)
    assert dict(reply.headers)["service-worker-allowed"] == scope
    assert settings(get(gracefail, REG))["scope"] == scope


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("shop/", id="relative"),
        pytest.param("/shop", id="no-trailing-slash"),
        pytest.param("//evil.example/", id="another-host"),
        pytest.param("/a b/", id="a-space"),
        pytest.param(1, id="a-number"),
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
    ],
)
def test_a_bad_option_names_itself_and_what_is_allowed(value: object) -> None:
    with pytest.raises(ConfigError) as raised:
        Config(secret=SECRET, service_worker=value)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "service_worker=" in message
    assert "'/shop/'" in message


def test_a_beacon_path_at_the_root_cannot_carry_the_worker() -> None:
    with pytest.raises(ConfigError, match="beacon_path='/beacon' is at the site's root"):
        Config(secret=SECRET, service_worker=True, beacon_path="/beacon")
    # Off, nothing is served there: no /sw.js or /register.js of the app's is shadowed.
    assert engine(beacon_path="/beacon").worker_paths == frozenset()


def test_from_settings_as_django_and_flask_give_them() -> None:
    assert Config.from_mapping({"SERVICE_WORKER": "/app/", "secret": SECRET}).service_worker == (
        "/app/"
    )


def test_the_paths_sit_beside_the_beacon() -> None:
    assert engine(service_worker=True).worker_paths == {SW, REG, PAGES}
    assert engine().worker_paths == {SW, REG}, "off: the worker that removes itself, no pages"
    assert engine(service_worker=True, beacon_path="/gf/in/b").worker_paths == {
        "/gf/in/sw.js",
        "/gf/in/register.js",
        "/gf/in/sw-pages.json",
    }


# -- the files ------------------------------------------------------------------------------------


def test_the_worker_script_headers() -> None:
    reply = get(engine(service_worker=True), SW)
    headers = dict(reply.headers)
    assert reply.status == 200
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["service-worker-allowed"] == "/"
    assert headers["x-content-type-options"] == "nosniff"
    assert int(headers["content-length"]) == len(reply.body)
    assert headers["etag"].startswith('"')
    on = settings(reply)
    assert on["enabled"] is True
    assert on["bundle"] == f"{PAGES}?v={on['version']}"
    assert on["marks"] == MARKS
    assert on["prefix"] == CACHE_PREFIX
    assert "/*" not in reply.body.decode(), "served minified"


def test_unchanged_is_a_304_head_has_no_body_and_other_methods_are_refused() -> None:
    gracefail = engine(service_worker=True)
    etag = dict(get(gracefail, SW).headers)["etag"]
    again = get(gracefail, SW, **{"if-none-match": etag})
    assert (again.status, again.body) == (304, b"")
    assert dict(again.headers)["etag"] == etag
    head = get(gracefail, SW, "HEAD")
    assert (head.status, head.body) == (200, b"")
    assert int(dict(head.headers)["content-length"]) > 1000
    posted = get(gracefail, SW, "POST")
    assert posted.status == 405
    assert dict(posted.headers)["allow"] == "GET, HEAD"


def test_off_the_worker_removes_itself_and_register_removes_it_too() -> None:
    gracefail = engine()
    worker = get(gracefail, SW)
    assert worker.status == 200
    # Allowed whatever scope the worker it replaces had.
    assert dict(worker.headers)["service-worker-allowed"] == "/"
    assert settings(worker) == {"enabled": False, "prefix": CACHE_PREFIX}
    text = worker.body.decode()
    assert "unregister()" in text
    assert "caches.delete" in text
    registering = settings(get(gracefail, REG))
    assert registering["enabled"] is False
    assert registering["worker"] == SW


def test_the_version_follows_the_pages_and_gracefails_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = settings(get(engine(service_worker=True), SW))["version"]
    assert settings(get(engine(service_worker=True), SW))["version"] == first, "stable"
    renamed = settings(get(engine(service_worker=True, brand=Brand(name="Other")), SW))
    assert renamed["version"] != first
    scoped = settings(get(engine(service_worker="/shop/"), SW))
    assert scoped["version"] != first
    monkeypatch.setattr("gracefail.worker.__version__", "99.0.0")
    assert settings(get(engine(service_worker=True), SW))["version"] != first


# -- the pages it caches --------------------------------------------------------------------------


def bundle(gracefail: Engine, accept_language: str = "en") -> dict[str, Any]:
    reply = get(gracefail, PAGES, **{"accept-language": accept_language})
    headers = dict(reply.headers)
    assert reply.status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["vary"] == "Accept-Language"
    value: dict[str, Any] = json.loads(reply.body)
    return value


@pytest.mark.parametrize(
    ("header", "locale"),
    [("es-ES,es;q=0.9", "es"), ("pt-BR", "pt-BR"), ("zh-CN", "zh-Hans"), ("xx", "en"), ("", "en")],
)
def test_the_pages_are_in_the_browsers_locale(header: str, locale: str) -> None:
    gracefail = engine(service_worker=True)
    found = bundle(gracefail, header)
    assert found["locale"] == locale
    assert found["version"] == settings(get(gracefail, SW))["version"]
    assert set(found["pages"]) == {"502", "504"}
    assert f'<html lang="{locale}">' in found["pages"]["502"]["html"]


@pytest.mark.parametrize(("status", "cause"), [(502, "connection"), (504, "timeout")])
def test_the_cached_page_is_the_middlewares_own(status: int, cause: str) -> None:
    gracefail = engine(service_worker=True, status_page_url="https://status.example.com")
    cached = bundle(gracefail)["pages"][str(status)]
    served = gracefail.respond(
        Failure(status, cause),
        RequestView("GET", "/shop/cart", "a=1&b=<2>", {**NAV, "x-request-id": "req-7"}),
    )
    served_headers = dict(served.headers)
    token = json.loads(
        re.search(r'id="gf-config">(.*?)</script>', served.body.decode()).group(1)  # type: ignore[union-attr]
    )["token"]
    # Filled as the worker fills it: the same bytes, and the same CSP.
    filled = (
        cached["html"]
        .replace(MARKS["incident"], served_headers["x-gracefail-incident"])
        .replace(MARKS["token"], token)
        .replace(MARKS["url"], html.escape("/shop/cart?a=1&b=<2>"))
    )
    assert filled.encode() == served.body
    assert cached["csp"] == served_headers["content-security-policy"]


def test_the_csp_allows_exactly_the_inline_script_and_style() -> None:
    for page in bundle(engine(service_worker=True))["pages"].values():
        blocks = re.findall(r"<(script|style)\b([^>]*)>(.*?)</\1>", page["html"], re.S)
        hashed = [body for tag, attrs, body in blocks if "application/json" not in attrs]
        assert len(hashed) == 2
        for body in hashed:
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in page["csp"]


def test_the_pages_carry_marks_and_no_request_value() -> None:
    for page in bundle(engine(service_worker=True))["pages"].values():
        text = page["html"]
        assert text.count(MARKS["token"]) == 1
        assert text.count(MARKS["url"]) == 1
        assert text.count(MARKS["incident"]) >= 2  # the footer and the script's config
        assert '"safe":true' in text, "navigations are GETs: the page that probes itself"


def test_pages_are_not_served_with_the_option_off() -> None:
    assert PAGES not in engine().worker_paths


# -- the tag --------------------------------------------------------------------------------------


def test_the_tag_loads_register_js_beside_the_beacon() -> None:
    assert head_tag() == f'<script src="{REG}" defer></script>'
    assert head_tag(Config(secret=SECRET, beacon_path="/x/y/b")) == (
        '<script src="/x/y/register.js" defer></script>'
    )
    assert head_tag("/a&b/beacon") == '<script src="/a&amp;b/register.js" defer></script>'
    assert hasattr(head_tag(), "__html__"), "templates do not escape it again"


def test_the_flask_templates_get_gracefail_head() -> None:
    flask = pytest.importorskip("flask")
    from gracefail.flask import Gracefail

    app = flask.Flask("worker_tag")
    app.config["GRACEFAIL"] = {"secret": SECRET, "recorders": [], "beacon_path": "/gf/beacon"}
    Gracefail(app)
    with app.app_context():
        rendered = flask.render_template_string("<head>{{ gracefail_head() }}</head>")
    assert rendered == '<head><script src="/gf/register.js" defer></script></head>'


# -- the scripts parse ----------------------------------------------------------------------------


def node() -> str:
    found = shutil.which("node") or ("/usr/bin/node" if os.path.exists("/usr/bin/node") else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is needed to check the worker's scripts (apt-get install nodejs)")
        pytest.skip("node is not installed")
    return found


@pytest.mark.parametrize("option", [True, False], ids=["on", "off"])
@pytest.mark.parametrize("path", [SW, REG], ids=["sw.js", "register.js"])
def test_the_scripts_are_valid_javascript(path: str, option: bool, tmp_path: Path) -> None:
    script = tmp_path / "script.js"
    script.write_bytes(get(engine(service_worker=option), path).body)
    checked = subprocess.run([node(), "--check", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


# -- the docs' example ----------------------------------------------------------------------------


async def test_the_docs_example_serves_the_tag_and_the_worker() -> None:
    pytest.importorskip("starlette")
    import httpx

    from tests.conftest import ROOT
    from tests.doc_snippets import examples

    text = (ROOT / "docs" / "service-worker.md").read_text("utf-8")
    [code] = examples(text, "tests/test_worker.py")
    namespace: dict[str, Any] = {}
    exec(compile(code, "service-worker.md", "exec"), namespace)  # noqa: S102 - our own docs
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/")
        assert '<script src="/_gracefail/register.js" defer></script>' in page.text
        worker = await client.get("/_gracefail/sw.js")
        assert worker.status_code == 200
        assert worker.headers["service-worker-allowed"] == "/"
