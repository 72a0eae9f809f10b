"""The opt-in service worker: the third place gracefail answers from, in the browser.

With ``Config.service_worker`` on, every adapter serves three files from the beacon
path's folder (``/_gracefail/`` by default), before the app sees the request:

* ``sw.js``: the worker (``Service-Worker-Allowed`` set to its scope, ``no-cache``).
  On a GET navigation that fails for want of any answer, or that gets a 502/503/504
  without ``X-Gracefail-Incident`` (a CDN's or load balancer's page), it shows the
  branded page it cached; it touches nothing else (``assets/sw.js`` says what it never
  does);
* ``register.js``: the script healthy pages load to install it; :func:`head_tag` writes
  the ``<script>`` element (the Flask extension makes it the Jinja global
  ``gracefail_head()``, Django has ``{% load gracefail %}{% gracefail_head %}``);
* ``sw-pages.json``: what the worker caches at install: the 502 and 504 pages for the
  browser's locale, the very bytes the middleware renders (placeholders where the
  incident, token and URL go) with their Content-Security-Policy.

Everything is rendered when the engine starts: a request is a dict lookup. The worker
script carries a version, a hash of gracefail's version and of every byte the worker
would cache: a new gracefail or a changed page makes a new ``sw.js``, which the browser
installs in place of the old one, with its own cache.

With the option off (the default), ``sw.js`` is a worker that deletes gracefail's caches
and unregisters itself, and ``register.js`` removes the worker from the page that loads
it: turning the option off removes the worker from every browser at its next visit. The
page bundle is not served then.

The worker's page has no beacon token (no server saw the failure it shows, so none
could sign one): like the exported pages, it sends no beacons, and a server would refuse
unsigned ones. docs/service-worker.md says why they are not counted apart.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from markupsafe import Markup

from ._version import __version__
from .classify import Failure
from .config import Config
from .minify import minified
from .negotiate import language_key, negotiate_locale
from .render import MAX_ECHOED_URL

if TYPE_CHECKING:
    from .render import Renderer

__all__ = [
    "BUNDLE",
    "CACHE_PREFIX",
    "REGISTER",
    "WORKER",
    "Answer",
    "Worker",
    "head_tag",
    "worker_folder",
    "worker_scope",
]

WORKER: Final = "sw.js"
REGISTER: Final = "register.js"
BUNDLE: Final = "sw-pages.json"
# Every Cache Storage name gracefail's worker uses starts with this (and its version).
CACHE_PREFIX: Final = "gracefail-worker:"
DEFAULT_BEACON_PATH: Final = "/_gracefail/beacon"
# Where the per-request values go in a cached page: the worker replaces them. Private-use
# characters, which no template, escaper or URL produces.
MARKS: Final = {
    "incident": "\ue000gf-worker-incident\ue001",
    "token": "\ue000gf-worker-token\ue001",
    "url": "\ue000gf-worker-url\ue001",
}
# What the worker's page says happened: no answer (network error, 502, 503) is the story of
# a service that could not be reached; 504, of one that did not answer in time.
PAGES: Final = ((502, "connection"), (504, "timeout"))
_JS_TYPE: Final = "text/javascript; charset=utf-8"

Answer = tuple[int, list[tuple[str, str]], bytes]
"""(status, headers with lower-case names, body): what the engine turns into its Reply."""


def worker_folder(beacon_path: str) -> str:
    """The folder the worker's files are served from: the beacon path's (with a slash)."""
    return beacon_path.rsplit("/", 1)[0] + "/"


def worker_scope(config: Config) -> str | None:
    """The scope the worker is registered for (``/`` for ``True``), or None when off."""
    option = config.service_worker
    if option is False:
        return None
    return "/" if option is True else str(option)


def head_tag(config: Config | str | None = None) -> Markup:
    """``<script src="/_gracefail/register.js" defer></script>`` for a healthy page's head.

    ``config`` is the app's :class:`~gracefail.Config` or its ``beacon_path`` (the worker's
    files are beside it); by default ``/_gracefail/beacon``. For Starlette and FastAPI
    templates: ``templates.env.globals["gracefail_head"] = head_tag``, then
    ``{{ gracefail_head() }}``. Keep the tag after turning the option off: the script then
    removes the worker from browsers that have it.
    """
    if isinstance(config, Config):
        beacon_path = config.beacon_path
    else:
        beacon_path = config or DEFAULT_BEACON_PATH
    source = html.escape(worker_folder(beacon_path) + REGISTER)
    return Markup(f'<script src="{source}" defer></script>')  # noqa: S704 - escaped above


def _asset(name: str) -> str:
    return (resources.files("gracefail") / "assets" / name).read_text("utf-8")


def _script(name: str, settings: Mapping[str, Any]) -> bytes:
    line = json.dumps(settings, separators=(",", ":"), sort_keys=True)
    return f"var SETTINGS={line};\n{minified(name)}\n".encode()


@dataclass(frozen=True, slots=True)
class _File:
    """One prepared answer: body, content type, and the headers only it has."""

    body: bytes
    content_type: str
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


class Worker:
    """The worker's files for one Config, prepared once (see the module docs).

    ``paths`` are the request paths it answers (empty when the option is off and the beacon
    path sits at the site's root: no worker can have been installed from there, and the
    app's own ``/sw.js`` must not be shadowed).
    """

    def __init__(self, config: Config, renderer: Renderer):
        self.config = config
        self._renderer = renderer
        self._folder = folder = worker_folder(config.beacon_path)
        self.scope = worker_scope(config)
        self.enabled = self.scope is not None
        self.locales = tuple(renderer.locales)
        self.bundle_path = folder + BUNDLE
        files = (folder + WORKER, folder + REGISTER)
        if self.enabled:
            self.paths = frozenset([*files, self.bundle_path])
        elif folder == "/":
            self.paths = frozenset()
        else:
            self.paths = frozenset(files)
        self._locale_cache: dict[str, str] = {}
        # Made at the first request for one of the files (prepare()): minifying the
        # scripts and rendering every locale's pages is no start-up cost of an app
        # that never serves them.
        self._files: dict[str, _File] | None = None
        self._bundles: dict[str, _File] = {}
        self._version: str | None = None

    @property
    def version(self) -> str:
        """The worker's version: its script, scope and pages hashed ("off" when off)."""
        self.prepare()
        assert self._version is not None
        return self._version

    def prepare(self) -> dict[str, _File]:
        """The files, made once (two threads making them at once make the same bytes)."""
        if self._files is not None:
            return self._files
        config, folder = self.config, self._folder
        bundles: dict[str, bytes] = {}
        settings: dict[str, Any] = {"enabled": False, "prefix": CACHE_PREFIX}
        if self.enabled:
            pages = {locale: self._pages(self._renderer, locale) for locale in self.locales}
            digest = hashlib.sha256(__version__.encode())
            digest.update(minified(WORKER).encode())
            digest.update(json.dumps([self.scope, pages], sort_keys=True).encode())
            version = digest.hexdigest()[:16]
            bundle_url = f"{folder}{BUNDLE}?v={version}"
            bundles = {
                locale: json.dumps(
                    {"version": version, "locale": locale, "pages": by_status},
                    ensure_ascii=True,
                    separators=(",", ":"),
                ).encode()
                for locale, by_status in pages.items()
            }
            settings.update(
                enabled=True,
                version=version,
                bundle=bundle_url,
                marks=MARKS,
                maxUrl=MAX_ECHOED_URL,
                retryAfter=config.retry.retry_after,
            )
        else:
            version = "off"
        self._bundles = {
            locale: _File(body, "application/json", (("vary", "Accept-Language"),))
            for locale, body in bundles.items()
        }
        # Off, the worker that removes itself must be allowed whatever scope the one it
        # replaces had: the whole site.
        worker_headers = (("service-worker-allowed", self.scope or "/"),)
        files = {
            folder + WORKER: _File(_script(WORKER, settings), _JS_TYPE, worker_headers),
            folder + REGISTER: _File(
                _script(
                    REGISTER,
                    {
                        "enabled": self.enabled,
                        "worker": folder + WORKER,
                        "scope": self.scope or "/",
                        "prefix": CACHE_PREFIX,
                    },
                ),
                _JS_TYPE,
            ),
        }
        self._version = version
        self._files = files
        return files

    def _pages(self, renderer: Renderer, locale: str) -> dict[str, dict[str, str]]:
        """The 502 and 504 GET pages of ``locale`` with the worker's marks, and their CSPs."""
        pages: dict[str, dict[str, str]] = {}
        for status, cause in PAGES:
            body, _, csp = renderer.body(
                "html",
                Failure(status, cause),
                locale,
                True,
                MARKS["incident"],
                MARKS["token"],
                MARKS["url"],
            )
            pages[str(status)] = {"html": body.decode(), "csp": csp or ""}
        return pages

    def file_size(self, name: str) -> int:
        """The size in bytes of ``sw.js`` or ``register.js`` as served."""
        return len(self.prepare()[self._folder + name].body)

    def _locale(self, headers: Mapping[str, str]) -> str:
        key = language_key(headers.get("accept-language"))
        locale = self._locale_cache.get(key)
        if locale is None:
            locale = negotiate_locale(key, self.locales, self.config.default_locale)
            if len(self._locale_cache) >= 512:
                self._locale_cache.clear()
            self._locale_cache[key] = locale
        return locale

    def answer(self, method: str, path: str, headers: Mapping[str, str]) -> Answer:
        """The answer to a request for one of :attr:`paths` (``headers``: the request's,
        lower-case names)."""
        if method not in ("GET", "HEAD"):
            body = b"use GET\n"
            return (
                405,
                [
                    ("content-type", "text/plain; charset=utf-8"),
                    ("content-length", str(len(body))),
                    ("allow", "GET, HEAD"),
                    ("cache-control", "no-store"),
                ],
                body,
            )
        files = self.prepare()
        if path == self.bundle_path and self._bundles:
            prepared: _File | None = self._bundles[self._locale(headers)]
            cache = "no-store"
        else:
            prepared = files.get(path)
            # The browser checks sw.js for a new version on navigations: no-cache makes it
            # ask, and the ETag lets the answer be a 304 while nothing changed.
            cache = "no-cache"
        if prepared is None:
            # The path in another spelling (percent-encoded): not one of the files.
            body = b"not found\n"
            return (
                404,
                [
                    ("content-type", "text/plain; charset=utf-8"),
                    ("content-length", str(len(body))),
                    ("cache-control", "no-store"),
                ],
                body,
            )
        etag = prepared.etag
        answer_headers = [
            ("content-type", prepared.content_type),
            ("cache-control", cache),
            ("etag", etag),
            ("x-content-type-options", "nosniff"),
            *prepared.extra,
        ]
        if etag in headers.get("if-none-match", ""):
            return 304, answer_headers, b""
        answer_headers.append(("content-length", str(len(prepared.body))))
        return 200, answer_headers, b"" if method == "HEAD" else prepared.body
