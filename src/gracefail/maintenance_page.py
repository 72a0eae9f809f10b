"""What a request meets during planned maintenance: who passes, and the 503 the others get.

:class:`MaintenanceGate` is built once per engine when ``Config.maintenance`` is on.
The adapters ask :meth:`MaintenanceGate.on` on every request: one clock reading and
one comparison while maintenance is off (see :class:`gracefail.maintenance.MaintenanceWatch`).
Only while it is on is the request looked at: its path against ``maintenance_paths``,
its client address (through ``trusted_proxies``, as for beacons) against
``maintenance_allow``, and the adapter's own user check (Django staff, a Flask
callable). Allowed requests reach the app and carry ``X-Gracefail-Maintenance: on``.

The page is one self-contained document like the failure page: inline style and
script allowed by hash, no request to another URL. It shows the planned end in the
reader's local time (the script formats an ISO time; the server guesses no locale),
and probes first at the planned end plus a random share of ``SPREAD`` seconds, so the
pages waiting for one end do not all return in the same second; then with capped,
fully jittered backoff. Pages of unsafe methods never resubmit: they probe the health
URL and offer a link.
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import json
import math
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from .config import Config
from .guard import client_address
from .maintenance import Maintenance, MaintenanceWatch

__all__ = ["BANNER", "SPREAD", "MaintenanceGate", "first_probe_delay"]

BANNER: Final = ("x-gracefail-maintenance", "on")
"""The header an allowed request's response carries while maintenance is on."""

SPREAD: Final = 60
"""Seconds over which the pages waiting for one planned end come back (uniformly):
10,000 pages put about 167 (1.7%) in the busiest second."""

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_STYLE: Final = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1f2937;background:#f8fafc}"
    "main{max-width:36rem;margin:12vh auto;padding:0 1.25rem}"
    "h1{font-size:1.6rem;line-height:1.25;margin:0 0 1rem}"
    ".brand{font-weight:600;color:var(--c)}"
    ".note{background:#fff;border-left:4px solid var(--c);padding:.75rem 1rem;margin:1rem 0}"
    "small{color:#4b5563}a{color:var(--c)}"
    "@media (prefers-color-scheme:dark){body{background:#111827;color:#e5e7eb}"
    ".note{background:#1f2937}small{color:#9ca3af}}"
)

# Reads its settings from the JSON block, formats the end in local time, and probes.
_SCRIPT: Final = r"""(function () {
  "use strict";
  var settings = JSON.parse(document.getElementById("gf-maintenance").textContent);
  var status = document.getElementById("gf-state");
  var endNode = document.getElementById("gf-end");
  var endMs = settings.ends ? Date.parse(settings.ends) : null;
  if (endNode && endMs) {
    try {
      endNode.textContent = new Date(endMs).toLocaleString(undefined,
        {dateStyle: "medium", timeStyle: "short"});
    } catch (error) {
      endNode.textContent = new Date(endMs).toLocaleString();
    }
  }
  var attempt = 0;
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
  function probe() {
    var target = settings.safe ? settings.url : settings.health;
    var mark = (target.indexOf("?") < 0 ? "?" : "&") + "_gf=" + Date.now();
    fetch(target + mark, {cache: "no-store", credentials: "same-origin",
      headers: {"X-Gracefail-Probe": "1"}}).then(function (response) {
      if (response.status < 500) {
        if (settings.safe) { location.replace(settings.url); return; }
        say(settings.backUnsafe);
        return;
      }
      retry();
    }, retry);
  }
  function retry() {
    if (endMs && Date.now() > endMs) { say(settings.late); }
    setTimeout(probe, backoff());
  }
  setTimeout(probe, firstDelay());
})();"""

_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<title>Planned maintenance - {brand}</title>
<style>:root{{--c:{color}}}</style><style>{style}</style>
{refresh}</head><body><main>
<p class="brand">{brand}</p>
<h1>We are carrying out planned maintenance</h1>
<p>This is planned work, not a fault, and nothing you did caused it.</p>
{message}{when}
<p id="gf-state" role="status">{next}</p>
{status_link}<p><a href="{retry_url}">Try again</a></p>
<p><small>Reference: {incident}</small></p>
</main>
<script type="application/json" id="gf-maintenance">{settings}</script>
<script>{script}</script>
</body></html>
"""


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
        brand = config.brand
        self._brand = html.escape(brand.name)
        self._color = html.escape(brand.color)
        self.csp = "; ".join(
            (
                "default-src 'none'",
                "script-src " + _sha256(_SCRIPT),
                "style-src "
                + " ".join(sorted({_sha256(_STYLE), _sha256(f":root{{--c:{self._color}}}")})),
                "connect-src 'self'",  # it probes its own origin only
                "img-src data:",
                "base-uri 'none'",
                "form-action 'self'",
                "frame-ancestors 'none'",
            )
        )

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
    ) -> tuple[bytes, str]:
        """The reply's body and content type for ``kind`` (html, json, text)."""
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
        return self._page(state, ends, incident, safe, url, retry_after), "text/html; charset=utf-8"

    def _page(
        self,
        state: Maintenance,
        ends: str | None,
        incident: str,
        safe: bool,
        url: str,
        retry_after: int,
    ) -> bytes:
        settings = {
            "ends": ends,
            "spread": SPREAD,
            "retryAfter": retry_after,
            "base": self.config.retry.base,
            "cap": self.config.retry.cap,
            "safe": safe,
            "url": url or "/",
            "health": self.config.health_url,
            "late": "It is taking longer than planned. This page keeps checking and "
            "returns by itself.",
            "backUnsafe": "The site is back. What you sent was not submitted again: "
            "go back and send it once more if you still need to.",
        }
        # "<" escaped: the JSON cannot close its script element.
        data = json.dumps(settings).replace("<", "\\u003c")
        message = f'<p class="note">{html.escape(state.message)}</p>\n' if state.message else ""
        if ends:
            when = (
                f'<p>Expected back: <time id="gf-end" datetime="{ends}">'
                f"{ends.replace('T', ' ').replace('Z', '')} UTC</time>.</p>\n"
            )
        else:
            when = "<p>We will be back as soon as the work is done.</p>\n"
        refresh = (
            f'<noscript><meta http-equiv="refresh" content="{max(retry_after, 30)}"></noscript>\n'
            if safe
            else ""
        )
        status_link = (
            f'<p><a href="{html.escape(self.config.status_page_url)}" rel="noopener">'
            "Status page</a></p>\n"
            if self.config.status_page_url
            else ""
        )
        page = _PAGE.format(
            brand=self._brand,
            color=self._color,
            style=_STYLE,
            refresh=refresh,
            message=message,
            when=when,
            next="This page returns to the site by itself when the work is done."
            if safe
            else "What you sent may not have gone through; it will not be sent again.",
            status_link=status_link,
            retry_url=html.escape(url or "/"),
            incident=html.escape(incident),
            settings=data,
            script=_SCRIPT,
        )
        return page.encode()
