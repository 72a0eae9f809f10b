"""What a request meets during planned maintenance: who passes, and the 503 the others get.

:class:`MaintenanceGate` is built once per engine when ``Config.maintenance`` is on.
The adapters ask :meth:`MaintenanceGate.on` on every request: one clock reading and
one comparison while maintenance is off (see :class:`gracefail.maintenance.MaintenanceWatch`).
Only while it is on is the request looked at: its path against ``maintenance_paths``,
its client address (through ``trusted_proxies``, as for beacons) against
``maintenance_allow``, and the adapter's own user check (Django staff, a Flask
callable). Allowed requests reach the app and carry ``X-Gracefail-Maintenance: on``.

The page is the failure page's: the same Jinja environment and ``base.html`` (through a
theme's ``page.html`` when ``Config.template_dir`` has one that extends it, or the theme's
own ``maintenance.html``), the same ``page.css``, brand, status link and locales, chosen
from ``Accept-Language`` as the failure page's are. Each variant (locale, safe method,
with or without a planned end, with or without a message) is rendered once, at its first
use, with placeholders where a request's values go; a request only splices in its
incident id, URL, end and message, each escaped for where it lands. One self-contained
document: inline style and script allowed by hash, no request to another URL.

It shows the planned end in the reader's local time (the script formats an ISO time; the
server guesses no time zone), and probes first at the planned end plus a random share of
``SPREAD`` seconds, so the pages waiting for one end do not all return in the same
second; then with capped, fully jittered backoff. Pages of unsafe methods never
resubmit: they probe the health URL and say when the site is back.

Problem+json and plain text stay English (their fields are for programs and terminals).
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import json
import logging
import math
import re
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from markupsafe import Markup, escape

from .config import LOCALES, Config
from .guard import client_address
from .headers import BANNER
from .locales import LocaleError, Wording
from .locales import load as load_wording
from .maintenance import MAX_MESSAGE, Maintenance, MaintenanceWatch
from .negotiate import language_key, negotiate_locale
from .render import (
    MAX_ECHOED_URL,
    PAGE_BUDGET,
    PageBody,
    Slotted,
    environment,
    page_css,
    script_safe,
)

if TYPE_CHECKING:
    import jinja2  # imported when a template is first compiled: 30-100 ms

__all__ = ["BANNER", "SPREAD", "MaintenanceGate", "first_probe_delay"]

log = logging.getLogger("gracefail")


SPREAD: Final = 60
"""Seconds over which the pages waiting for one planned end come back (uniformly):
10,000 pages put about 167 (1.7%) in the busiest second."""

TEMPLATE: Final = "maintenance.html"
"""The template's name: a theme's ``template_dir/maintenance.html`` replaces the built-in one."""

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# (locale, safe, has an end, has a message)
_Key = tuple[str, bool, bool, bool]

# Placeholders: private-use characters that no template filter or escaper touches (the
# render module's convention; its own set is private to it).
_INCIDENT: Final = "\ue000incident\ue001"
_URL_ATTR: Final = "\ue000url-attr\ue001"
_MESSAGE: Final = "\ue000message\ue001"
_ENDS: Final = "\ue000ends\ue001"
_ENDS_UTC: Final = "\ue000ends-utc\ue001"
_RETRY_AFTER: Final = "\ue000retry-after\ue001"
_REFRESH: Final = "\ue000refresh\ue001"
_SLOT: Final = re.compile("\ue000[a-z-]+\ue001")
_SCRIPT_BLOCK: Final = re.compile(
    r"<script(?![^>]*application/json)[^>]*>(.*?)</script>", re.S | re.I
)
_STYLE_BLOCK: Final = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
# The element the built-in maintenance.html's main block carries: without it in the page,
# the theme's page.html is a whole page of its own, which has no room for maintenance.
_MARK: Final = 'data-gf="maintenance"'
# The shortest <noscript> refresh of a GET page: a no-script reader still comes back.
NOSCRIPT_FLOOR: Final = 30
_LOCALE_CACHE: Final = 512
# The most bytes a message adds escaped: MAX_MESSAGE characters of up to 6 bytes (&quot;).
_LONGEST_MESSAGE: Final = MAX_MESSAGE * 6

# Reads its settings from the JSON block, formats the end in local time, and probes.
_SCRIPT: Final = r"""(function () {
  "use strict";
  var settings = JSON.parse(document.getElementById("gf-config").textContent);
  var status = document.getElementById("gf-live");
  var endNode = document.getElementById("gf-end");
  var endMs = settings.ends ? Date.parse(settings.ends) : null;
  if (endNode && endMs) {
    // The reader's own conventions when they speak the page's language, else the page's.
    var lang = typeof navigator !== "undefined" && navigator.language;
    if (!lang || lang.split("-")[0] !== settings.locale.split("-")[0]) {
      lang = settings.locale;
    }
    try {
      endNode.textContent = new Date(endMs).toLocaleString(lang,
        {dateStyle: "medium", timeStyle: "short"});
    } catch (error) {
      endNode.textContent = new Date(endMs).toLocaleString();
    }
  }
  var attempt = 0;
  var late = false;
  function say(text) { if (status) { status.textContent = text; } }
  function backoff() {
    var ceiling = Math.min(settings.cap, settings.base * Math.pow(2, attempt));
    attempt += 1;
    return Math.random() * ceiling * 1000;
  }
  function firstDelay() {
    var spreadMs = Math.random() * settings.spread * 1000;
    if (endMs) { return Math.max(0, endMs - Date.now()) + spreadMs; }
    return settings.retryAfter * 1000 + spreadMs;
  }
  // The page is served at the URL that failed: that is where it returns.
  var here = location.pathname + location.search;
  function probe() {
    var target = settings.safe ? here : settings.health;
    var mark = (target.indexOf("?") < 0 ? "?" : "&") + "_gf=" + Date.now();
    fetch(target + mark, {cache: "no-store", credentials: "same-origin",
      headers: {"X-Gracefail-Probe": "1"}}).then(function (response) {
      if (response.status < 500) {
        if (settings.safe) { location.replace(here); return; }
        say(settings.backUnsafe);
        return;
      }
      retry();
    }, retry);
  }
  function retry() {
    if (endMs && Date.now() > endMs && !late) { late = true; say(settings.late); }
    setTimeout(probe, backoff());
  }
  setTimeout(probe, firstDelay());
})();"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def first_probe_delay(remaining: float | None, retry_after: int, draw: float) -> float:
    """The page's first wait in seconds (``draw`` uniform in [0, 1)), as its script computes it."""
    base = retry_after if remaining is None else max(0.0, remaining)
    return base + draw * SPREAD


class MaintenanceGate:
    """Who passes during maintenance, and the reply for the others (see the module)."""

    def __init__(self, config: Config, *, watch: MaintenanceWatch | None = None):
        self.config = config
        if watch is None:
            watch = MaintenanceWatch(config.store)
            # One read at start-up, so the first requests see the state.
            watch.refresh()
        self.watch = watch
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in config.maintenance_allow
        )
        self.paths: tuple[str, ...] = tuple(config.maintenance_paths)
        self.trusted: Sequence[str] = config.trusted_proxies
        # Built at the first page: an app that never goes into maintenance pays nothing.
        self._lock = threading.Lock()
        self._wording: Wording | None = None
        self._template: jinja2.Template | None = None
        self._template_name = TEMPLATE
        self._pages: dict[_Key, PageBody] = {}
        self._hashes: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self._csp: str | None = None
        self._locales: dict[str, str] = {}

    # -- who passes ---------------------------------------------------------------

    def on(self) -> Maintenance | None:
        """The maintenance that is on, or None: what every request asks (no I/O)."""
        return self.watch.current()

    def allows(self, path: str, peer: str | None, headers: Mapping[str, str]) -> bool:
        """Whether a request passes by its path or its client's network."""
        for prefix in self.paths:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return True
        if not self.networks:
            return False
        client = client_address(peer, headers, self.trusted)
        if client is None:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def retry_after(self, state: Maintenance, client: str | None, now: float) -> int:
        """Seconds to the planned end plus this client's own share of the spread (a client
        keeps its share: it is a hash of its address); without an end, the policy's wait."""
        remaining = state.remaining(now)
        if remaining is None:
            return self.config.retry.retry_after
        share = zlib.crc32((client or "").encode()) % SPREAD
        return math.ceil(remaining) + share

    # -- the page's words and variants ------------------------------------------------

    @property
    def wording(self) -> Wording:
        """Every locale's strings: the shipped ones and a theme's (``template_dir/locales``)."""
        if self._wording is None:
            try:
                wording = load_wording(LOCALES, self.config.template_dir)
            except LocaleError:
                # The renderer refused this theme at start-up already; here, never a 500.
                log.exception("gracefail: the theme's locales failed; using the shipped ones")
                wording = load_wording(LOCALES, None)
            self._wording = wording
        return self._wording

    def locale(self, accept_language: str | None) -> str:
        """The locale for an ``Accept-Language`` header, negotiated as the failure page's."""
        language = language_key(accept_language)
        found = self._locales.get(language)
        if found is None:
            found = negotiate_locale(language, self.wording.names, self.config.default_locale)
            if len(self._locales) >= _LOCALE_CACHE:
                self._locales.clear()
            self._locales[language] = found
        return found

    @property
    def csp(self) -> str:
        """The page's Content-Security-Policy: the hashes of its one script and style.

        The same for every variant of a template; should a theme make them differ, the
        policy allows each variant's (every page rendered so far, and so the one just sent).
        """
        if self._csp is None:
            self.page(self.config.default_locale, True, True, False)
        assert self._csp is not None
        return self._csp

    def page(self, locale: str, safe: bool, has_end: bool, has_message: bool) -> PageBody:
        """One variant of the page, rendered at its first use (placeholders to fill)."""
        key = (locale, safe, has_end, has_message)
        found = self._pages.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                found = self._render(key)
                self._pages[key] = found
            return found

    def _render(self, key: _Key) -> PageBody:
        if self._template is None:
            self._template = self._environment_template(user=True)
        try:
            return self._render_with(self._template, key)
        except Exception:
            if self.config.template_dir is None:
                raise
            log.exception(
                "gracefail: the maintenance page of the theme in %s failed; "
                "serving the built-in one instead",
                self.config.template_dir,
            )
            self._template = self._environment_template(user=False)
            self._pages.clear()  # every variant from the same template, one CSP
            self._hashes = (frozenset(), frozenset())
            return self._render_with(self._template, key)

    def _environment_template(self, *, user: bool) -> jinja2.Template:
        template = environment(self.config, user=user).get_template(TEMPLATE)
        self._template_name = template.filename or template.name or TEMPLATE
        return template

    def _render_with(self, template: jinja2.Template, key: _Key) -> PageBody:
        locale, safe, has_end, has_message = key
        config = self.config
        table = self.wording.table
        strings = {
            name: text.replace("{brand}", config.brand.name)
            for name, text in table.get(locale, table["en"]).items()
        }
        # What base.html and a theme's page.html may read beside the maintenance strings.
        strings.setdefault("title_503", strings["maintenance_title"])
        settings: dict[str, Any] = {
            "ends": _ENDS if has_end else None,
            "spread": SPREAD,
            "retryAfter": _RETRY_AFTER,
            "base": config.retry.base,
            "cap": config.retry.cap,
            "safe": safe,
            "health": config.health_url,
            "locale": locale,
            "late": strings["maintenance_late"],
            "backUnsafe": strings["maintenance_back_unsafe"],
        }
        config_json = script_safe(
            json.dumps(settings, ensure_ascii=False, separators=(",", ":"))
        ).replace(f'"{_RETRY_AFTER}"', _RETRY_AFTER)
        values = {
            "lang": locale,
            "t": strings,
            "status": 503,
            "safe": safe,
            "brand": config.brand,
            "status_page_url": config.status_page_url,
            "status_api_url": config.status_api_url,
            "incident": _INCIDENT,
            "explain": escape(strings["maintenance_explain"]),
            # After a POST the link leads to the site, never back into the form's target.
            "retry_url": Markup(_URL_ATTR if safe else "/"),  # noqa: S704 - placeholder or "/"
            "message": _MESSAGE if has_message else "",
            "ends": _ENDS if has_end else None,
            "ends_utc": _ENDS_UTC,
            "css": Markup(page_css(config.brand.color)),  # noqa: S704 - our own asset
            "js": Markup(_SCRIPT),  # noqa: S704 - our own script
            "config_json": Markup(config_json),  # noqa: S704 - JSON escaped for <script>
            "noscript_refresh": _REFRESH,
            "retry_after": _RETRY_AFTER,
            "debug_detail": None,
        }
        text = template.render(layout="page.html", **values)
        if _MARK not in text:
            # The theme's page.html is a whole page with no blocks to fill: use base.html
            # (the theme's style, header and footer are then not applied).
            text = template.render(layout="gracefail/base.html", **values)
        scripts = _SCRIPT_BLOCK.findall(text)
        styles = _STYLE_BLOCK.findall(text)
        if any(_SLOT.search(block) for block in [*scripts, *styles]):
            raise ValueError(
                f"gracefail: {self._template_name} puts a per-request value inside a "
                "<script> or <style>: its CSP hash would change with every request"
            )
        # Measured with the longest message and URL a request can bring: it must fit.
        size = len(text.encode()) + (_LONGEST_MESSAGE if has_message else 0)
        size += MAX_ECHOED_URL if safe else 0
        if size > PAGE_BUDGET:
            log.warning(
                "gracefail: the %s/%s maintenance page can reach %s bytes, over the 16 KB budget",
                locale,
                "GET" if safe else "POST",
                f"{size:,}",
            )
        scripts_seen = self._hashes[0] | {_sha256(block) for block in scripts}
        styles_seen = self._hashes[1] | {_sha256(block) for block in styles}
        self._hashes = (scripts_seen, styles_seen)
        self._csp = "; ".join(
            (
                "default-src 'none'",
                "script-src " + (" ".join(sorted(scripts_seen)) or "'none'"),
                "style-src " + (" ".join(sorted(styles_seen)) or "'none'"),
                "img-src data:",
                "connect-src 'self'",  # it probes its own origin only
                "base-uri 'none'",
                "form-action 'self'",
                "frame-ancestors 'none'",
            )
        )
        return PageBody(text=Slotted(text), csp=self._csp)

    # -- per request ------------------------------------------------------------

    def body(
        self,
        kind: str,
        state: Maintenance,
        *,
        incident: str,
        safe: bool,
        url: str,
        retry_after: int,
        now: float | None = None,
        accept_language: str | None = None,
    ) -> tuple[bytes, str]:
        """The reply's body and content type for ``kind`` (html, json, text).

        ``accept_language``: the request's header, which picks the page's locale (the
        JSON and text replies are English). The page's CSP is :attr:`csp`.
        """
        now = time.time() if now is None else now
        # Rounded up: a page never probes before the planned end.
        ends = None if state.ends is None else _iso(math.ceil(state.ends))
        if kind == "json":
            problem = {
                "type": "about:blank",
                "title": "Planned maintenance",
                "status": 503,
                "detail": state.message or "The service is under planned maintenance.",
                "instance": url or None,
                "incident": incident,
                "maintenance": True,
                "started": _iso(state.started),
                "ends": ends,
                "retry_after": retry_after,
                "status_page": self.config.status_page_url,
            }
            return json.dumps(problem).encode(), "application/problem+json"
        if kind == "text":
            lines = ["503 Service Unavailable: planned maintenance."]
            if state.message:
                lines.append(state.message)
            lines.append(f"Expected back: {ends} (UTC)." if ends else "Expected back: soon.")
            lines.append(f"Retry after {retry_after} seconds. Reference: {incident}")
            if self.config.status_page_url:
                lines.append(f"Status: {self.config.status_page_url}")
            return ("\n".join(lines) + "\n").encode(), "text/plain; charset=utf-8"
        page = self.page(self.locale(accept_language), safe, ends is not None, bool(state.message))
        target = url or "/"
        link = html.escape(target[: MAX_ECHOED_URL + 1])
        values = {
            _INCIDENT: html.escape(incident),
            # Too long to echo: href="" is the page's own URL, the same one.
            _URL_ATTR: link if len(link) <= MAX_ECHOED_URL else "",
            _MESSAGE: html.escape(state.message),
            _ENDS: ends or "",
            _ENDS_UTC: (ends or "").replace("T", " ").replace("Z", " UTC"),
            _RETRY_AFTER: str(retry_after),
            _REFRESH: str(max(retry_after, NOSCRIPT_FLOOR)),
        }
        return page.text.fill_bytes(values), "text/html; charset=utf-8"
