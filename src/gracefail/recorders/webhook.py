"""Events in batches to an HTTP endpoint: your own receiver, PostHog or Segment.

Each batch the pipeline hands over becomes one ``POST`` (split only if its body
would pass ``max_bytes``), in one of three shapes:

* ``jsonl`` (default): ``application/x-ndjson``, one JSON object per event, the
  fields of ``LoggingRecorder`` (``{"event": "failure" | "page", ...}``), probes
  included;
* ``posthog``: PostHog's batch capture API (``POST {host}/batch/``, the project
  API key in the body), each event anonymous (``$process_person_profile: false``),
  its ``distinct_id`` the page view's key;
* ``segment``: Segment's batch API (``POST {host}/v1/batch``, the write key as
  HTTP Basic user), ``track`` calls with an ``anonymousId``.

In the two product-analytics shapes the page's own probes are left out (they are
gracefail's retries, not users' requests) and so are upstream names and error
types: only the bounded labels the metrics use, and the page's timings. Each event
carries a deterministic id (``uuid``, ``messageId``), the same for the same beacon
stored by another instance, so the tools drop duplicates and retried batches.

Every request is signed when a ``secret`` is given (required for ``jsonl``)::

    X-Gracefail-Signature: t=1714557600,v1=<hex HMAC-SHA256 of "1714557600." + body>

:func:`verify_signature` checks it on the receiving side. A batch that fails
(connection error, timeout, 408, 429 or 5xx) is retried ``retries`` times with
capped exponential backoff and full jitter (``Retry-After`` is honoured, up to
``retry_cap``), under one ``X-Gracefail-Delivery`` id the receiver can de-duplicate
on; then it is dropped and counted, and the next batches are refused at once for a
growing while (the pipeline counts them) instead of hammering a receiver that is
down. A receiver that answers another 4xx (or a redirect) rejected the batch: it is
dropped and counted, never retried. The recorder runs on its own pipeline thread,
so no request ever waits for it; :meth:`WebhookRecorder.counts` says what became of
every event.

Example::

    from gracefail.recorders import SQLiteRecorder, WebhookRecorder

    recorders = [
        SQLiteRecorder("gracefail.sqlite3"),
        WebhookRecorder("https://hooks.example.com/gracefail", secret="a-long-random-secret"),
        WebhookRecorder.posthog("phc_...", host="https://eu.i.posthog.com"),
    ]
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
import math
import os
import random
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from .._version import __version__
from ..events import ClientEvent, Event, ServerEvent
from .connected import Backoff
from .labels import UNKNOWN_ROUTE, label_method, label_source

__all__ = [
    "PAYLOADS",
    "SIGNATURE_HEADER",
    "WebhookCounts",
    "WebhookError",
    "WebhookRecorder",
    "WebhookRejected",
    "sign",
    "verify_signature",
]

PAYLOADS: Final = ("jsonl", "posthog", "segment")
"""The body shapes :class:`WebhookRecorder` can send."""
SIGNATURE_HEADER: Final = "X-Gracefail-Signature"
DELIVERY_HEADER: Final = "X-Gracefail-Delivery"

EVENT_NAMES: Final = {
    "failure": "Upstream Failure Served",
    "shown": "Recovery Page Shown",
    "retry": "Recovery Page Retried",
    "recovered": "Recovery Page Recovered",
    "gave_up": "Recovery Page Gave Up",
    "abandoned": "Recovery Page Abandoned",
    "manual_retry": "Recovery Page Retry Clicked",
    "status_click": "Recovery Page Status Clicked",
}
"""Event names in the product-analytics shapes (Segment's "Object Action" style)."""

# Ids derived from what identifies an event, so another instance's copy of a beacon,
# or a retried batch, carries the same id and the tool keeps one.
_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/gracefail/gracefail")
_RETRYABLE: Final = frozenset((408, 429))
_UNSAFE_HEADER: Final = re.compile(r"[\r\n\x00]")
_OWN_HEADERS: Final = frozenset(
    ("content-type", "content-length", "host", SIGNATURE_HEADER.lower(), DELIVERY_HEADER.lower())
)
_MAX_RESPONSE: Final = 65536


class WebhookError(Exception):
    """A batch was not delivered; its events are dropped (the pipeline counts them)."""


class WebhookRejected(WebhookError):
    """The receiver refused a batch (a 4xx other than 408/429, or a redirect): not retried."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class WebhookCounts:
    """What became of the events a :class:`WebhookRecorder` was given.

    ``sent``: in a batch the receiver accepted (2xx). ``rejected``: in a batch it
    refused (4xx). ``failed``: in a batch that failed after its retries, or refused
    while the recorder waited after such a failure. ``skipped``: left out by the
    payload shape (the page's probes, for PostHog and Segment). ``requests`` and
    ``retries`` count POSTs.
    """

    sent: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0
    requests: int = 0
    retries: int = 0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Gracefail-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (an ``X-Gracefail-Signature`` value) signs ``body`` with ``secret``
    and was made within ``tolerance`` seconds of ``now`` (replays of old requests fail).

    For a receiver written in Python::

        if not verify_signature(SECRET, request.headers.get("X-Gracefail-Signature"), body):
            return 401
    """
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields.get("t", [""])[0])
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


def _iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _bad(option: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"gracefail: WebhookRecorder {option}={value!r} is not valid: {allowed}")


@dataclass(frozen=True, slots=True)
class _Target:
    https: bool
    host: str
    port: int
    path: str
    shown: str  # the URL as logs show it: without its query string

    @classmethod
    def parse(cls, url: object) -> _Target:
        allowed = "expected an http:// or https:// URL with a host, e.g. https://hooks.example.com/gracefail"
        if not isinstance(url, str) or not url or re.search(r"[\s\x00-\x1f\x7f]", url):
            raise _bad("url", url, allowed)
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise _bad("url", url, "its port is not a number from 1 to 65535") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad("url", url, allowed)
        if parts.username is not None or parts.password is not None:
            raise _bad(
                "url", url, "put credentials in headers={'Authorization': ...}, not in the URL"
            )
        if parts.fragment:
            raise _bad("url", url, "a URL fragment (#...) is never sent; remove it")
        https = parts.scheme == "https"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        shown = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
        return cls(https, parts.hostname, port or (443 if https else 80), path, shown)


def _failure_properties(event: ServerEvent) -> dict[str, Any]:
    return {
        "status": event.status,
        "cause": event.cause,
        "route": event.route or UNKNOWN_ROUTE,
        "method": label_method(event.method),
        "source": label_source(event.source),
        "reply_format": event.reply_format,
        "app_ms": event.app_ms,
    }


def _page_properties(event: ClientEvent) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "kind": event.kind,
        "attempt": event.attempt,
        "elapsed_ms": event.elapsed_ms,
        "locale": event.locale,
        "status": event.status,
    }
    if event.kind == "recovered":
        properties["time_to_recovery_s"] = round(event.elapsed_ms / 1000.0, 3)
    return properties


def _product_event(event: Event) -> tuple[str, str, str, dict[str, Any]]:
    """(name, anonymous id, deterministic id, properties) of an event for PostHog/Segment."""
    if isinstance(event, ServerEvent):
        key = f"failure:{event.incident}:{event.time!r}:{event.source}"
        properties = _failure_properties(event)
        name = EVENT_NAMES["failure"]
    else:
        key = f"page:{event.incident}:{event.kind}:{event.attempt}"
        properties = _page_properties(event)
        name = EVENT_NAMES.get(event.kind, f"Recovery Page {event.kind}")
    properties["gracefail_event"] = "failure" if isinstance(event, ServerEvent) else event.kind
    return name, event.incident, str(uuid.uuid5(_ID_NAMESPACE, key)), properties


class WebhookRecorder:
    """Sends events in batches to an HTTP endpoint (see the module docs).

    Args:
        url: ``http://`` or ``https://`` URL of the receiver; checked here, at start-up.
        secret: signs each request (``X-Gracefail-Signature``); required for ``jsonl``.
        payload: ``jsonl``, ``posthog`` or ``segment`` (or use :meth:`posthog`,
            :meth:`segment`).
        api_key: PostHog's project API key, or Segment's write key.
        headers: extra request headers (``Authorization`` for your receiver, say).
        timeout: seconds to wait for the receiver on each attempt.
        retries: further attempts for a batch that failed (not for one it rejected).
        retry_first, retry_cap: the backoff (seconds) between attempts, and after a
            batch that failed them all, before the next one is tried.
        include_probes: send failures served to the page's own probes (default: only
            with ``jsonl``).
        max_bytes: the largest request body; a bigger batch is split.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        payload: str = "jsonl",
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        retry_first: float = 0.5,
        retry_cap: float = 30.0,
        include_probes: bool | None = None,
        max_bytes: int = 450_000,
    ):
        self._target = _Target.parse(url)
        if payload not in PAYLOADS:
            raise _bad("payload", payload, f"expected one of {', '.join(PAYLOADS)}")
        if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
            raise _bad("secret", "***", "expected a string of at least 16 characters")
        if payload == "jsonl" and secret is None:
            raise ValueError(
                "gracefail: WebhookRecorder needs secret= for payload='jsonl': the receiver "
                "checks the X-Gracefail-Signature header with it (see verify_signature)"
            )
        if payload != "jsonl" and not api_key:
            key = "project API key" if payload == "posthog" else "write key"
            raise ValueError(
                f"gracefail: WebhookRecorder payload={payload!r} needs api_key= (the {key})"
            )
        if not (isinstance(timeout, int | float) and 0 < timeout <= 300):
            raise _bad("timeout", timeout, "expected seconds, more than 0 and at most 300")
        if not (isinstance(retries, int) and 0 <= retries <= 20):
            raise _bad("retries", retries, "expected a whole number from 0 to 20")
        if not (0 < retry_first <= retry_cap):
            raise _bad(
                "retry_first", retry_first, f"expected more than 0, at most retry_cap ({retry_cap})"
            )
        if not (isinstance(max_bytes, int) and max_bytes >= 1024):
            raise _bad("max_bytes", max_bytes, "expected at least 1024")
        extra = dict(headers or {})
        for name, value in extra.items():
            if _UNSAFE_HEADER.search(f"{name}{value}") or not name.strip():
                raise _bad("headers", name, "header names and values cannot hold CR, LF or NUL")
            if name.lower() in _OWN_HEADERS:
                raise _bad("headers", name, "gracefail sets this header itself")
        self.payload = payload
        self.secret = secret
        self.timeout = float(timeout)
        self.retries = retries
        self.retry_first = retry_first
        self.retry_cap = retry_cap
        self.include_probes = payload == "jsonl" if include_probes is None else include_probes
        self.max_bytes = max_bytes
        self._api_key = api_key
        content_type = "application/x-ndjson" if payload == "jsonl" else "application/json"
        self._headers = {
            "Content-Type": content_type,
            "User-Agent": f"gracefail/{__version__}",
            **extra,
        }
        if payload == "segment" and api_key:
            token = base64.b64encode(f"{api_key}:".encode()).decode()
            self._headers.setdefault("Authorization", f"Basic {token}")
        self._backoff = Backoff(retry_first, retry_cap)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._pid = os.getpid()
        self._counts = WebhookCounts()
        self._counts_lock = threading.Lock()

    @classmethod
    def posthog(
        cls, api_key: str, *, host: str = "https://us.i.posthog.com", **options: Any
    ) -> WebhookRecorder:
        """To PostHog's batch capture API (``host``: ``https://eu.i.posthog.com`` for the EU
        cloud, or your instance)."""
        return cls(host.rstrip("/") + "/batch/", payload="posthog", api_key=api_key, **options)

    @classmethod
    def segment(
        cls, write_key: str, *, host: str = "https://api.segment.io", **options: Any
    ) -> WebhookRecorder:
        """To Segment's batch API (``host``: ``https://eu1.api.segmentapis.com`` for EU
        workspaces)."""
        return cls(host.rstrip("/") + "/v1/batch", payload="segment", api_key=write_key, **options)

    def __repr__(self) -> str:
        return f"WebhookRecorder({self.payload} to {self._target.shown})"

    # -- what is sent ------------------------------------------------------------------

    def items(self, events: Sequence[Event]) -> list[bytes]:
        """Each event of a batch as the bytes of one item of the body (probes left out
        unless ``include_probes``)."""
        items: list[bytes] = []
        for event in events:
            if isinstance(event, ServerEvent) and event.probe and not self.include_probes:
                continue
            items.append(
                json.dumps(self._item(event), separators=(",", ":"), sort_keys=True).encode()
            )
        return items

    def _item(self, event: Event) -> dict[str, Any]:
        if self.payload == "jsonl":
            data = dataclasses.asdict(event)
            data["event"] = "failure" if isinstance(event, ServerEvent) else "page"
            return data
        name, anonymous, event_id, properties = _product_event(event)
        if self.payload == "posthog":
            properties["$process_person_profile"] = False
            return {
                "event": name,
                "distinct_id": anonymous,
                "timestamp": _iso(event.time),
                "uuid": event_id,
                "properties": properties,
            }
        return {
            "type": "track",
            "event": name,
            "anonymousId": anonymous,
            "messageId": event_id,
            "timestamp": _iso(event.time),
            "properties": properties,
            "context": {"library": {"name": "gracefail", "version": __version__}},
        }

    def body(self, items: Sequence[bytes]) -> bytes:
        """The request body for ``items``."""
        if self.payload == "jsonl":
            return b"".join(item + b"\n" for item in items)
        batch = b"[" + b",".join(items) + b"]"
        if self.payload == "posthog":
            head = json.dumps({"api_key": self._api_key, "historical_migration": False})
            return head[:-1].encode() + b',"batch":' + batch + b"}"
        sent_at = json.dumps(_iso(time.time()))
        return b'{"batch":' + batch + b',"sentAt":' + sent_at.encode() + b"}"

    def _chunks(self, items: list[bytes]) -> Iterator[list[bytes]]:
        # Room for the envelope of the product shapes.
        limit = self.max_bytes - 256
        chunk: list[bytes] = []
        size = 0
        for item in items:
            if chunk and size + len(item) + 1 > limit:
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + 1
        if chunk:
            yield chunk

    # -- delivery ----------------------------------------------------------------------

    def record(self, events: Sequence[Event]) -> None:
        """Send a batch; raises :class:`WebhookError` if (part of) it was not delivered."""
        items = self.items(events)
        self._count(skipped=len(events) - len(items))
        if not items:
            return
        with self._lock:
            if self._closing.is_set():
                self._count(failed=len(items))
                raise WebhookError(f"gracefail: {self!r} is closed")
            if not self._backoff.ready() and self._pid == os.getpid():
                self._count(failed=len(items))
                raise WebhookError(
                    f"gracefail: {self._target.shown} failed recently; these "
                    f"{len(items)} events are dropped and counted until the next attempt"
                )
            delivered = 0
            for chunk in self._chunks(items):
                try:
                    self._deliver(self.body(chunk))
                except WebhookRejected:
                    self._count(rejected=len(chunk), failed=len(items) - delivered - len(chunk))
                    raise
                except WebhookError:
                    self._count(failed=len(items) - delivered)
                    raise
                delivered += len(chunk)
                self._count(sent=len(chunk))

    def _deliver(self, body: bytes) -> None:
        delivery = uuid.uuid4().hex
        delay = 0.0
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._count(retries=1)
                if self._closing.wait(delay):
                    break  # shutting down: stop waiting, the batch is counted as failed
            try:
                status, retry_after = self._post(body, delivery)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                problem = f"{type(exc).__name__}: {str(exc)[:200]}"
                status, retry_after = 0, None
            if 200 <= status < 300:
                self._backoff.succeeded()
                return
            if status and status not in _RETRYABLE and status < 500:
                raise WebhookRejected(
                    f"gracefail: {self._target.shown} answered {status} to a batch; it is "
                    "dropped and counted, not retried (check the URL, the key or the payload)",
                    status,
                )
            if status:
                problem = f"HTTP {status}"
            # Capped exponential backoff with full jitter; a Retry-After within the cap wins.
            delay = random.uniform(0, min(self.retry_cap, self.retry_first * 2**attempt))
            if retry_after is not None:
                delay = min(self.retry_cap, max(delay, retry_after))
        wait = self._backoff.failed()
        raise WebhookError(
            f"gracefail: could not deliver to {self._target.shown} ({problem}) after "
            f"{self.retries + 1} attempts; next batch in {wait:.1f} s at the earliest"
        )

    def _connection(self) -> http.client.HTTPConnection:
        if self._pid != os.getpid():
            # Inherited through fork(): the parent's socket, never to be used here.
            self._conn, self._pid = None, os.getpid()
            self._backoff.succeeded()
        if self._conn is None:
            target = self._target
            if target.https:
                self._conn = http.client.HTTPSConnection(
                    target.host, target.port, timeout=self.timeout,
                    context=ssl.create_default_context(),
                )  # fmt: skip
            else:
                self._conn = http.client.HTTPConnection(
                    target.host, target.port, timeout=self.timeout
                )
        return self._conn

    def _post(self, body: bytes, delivery: str) -> tuple[int, float | None]:
        headers = {**self._headers, DELIVERY_HEADER: delivery}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        conn = self._connection()
        self._count(requests=1)
        conn.request("POST", self._target.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(_MAX_RESPONSE)
        if not response.isclosed() or response.will_close:
            # An answer too long to drain, or one that ends the connection: start afresh.
            self._drop_connection()
        return response.status, _retry_after(response.getheader("Retry-After"))

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _count(self, **changes: int) -> None:
        if not any(changes.values()):
            return
        with self._counts_lock:
            self._counts = dataclasses.replace(
                self._counts,
                **{name: getattr(self._counts, name) + n for name, n in changes.items()},
            )

    def counts(self) -> WebhookCounts:
        """What became of the events so far."""
        with self._counts_lock:
            return self._counts

    def close(self) -> None:
        """Stop any wait between attempts and close the connection."""
        self._closing.set()
        with self._lock:
            if self._pid == os.getpid():
                self._drop_connection()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds only; a date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
