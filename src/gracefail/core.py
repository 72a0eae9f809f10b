"""The engine every adapter shares. It never imports a web framework.

Adapters translate their request into a :class:`RequestView` and the
:class:`Reply` back into their response; every decision is made here.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .beacon import MAX_BODY, BeaconError, check_origin, parse_beacon
from .classify import Classifier, Failure
from .config import DEFAULT_STORE, UPSTREAM_STATUSES, Config
from .events import Event, ServerEvent
from .guard import BeaconGuard, Verdict, client_address
from .headers import BANNER
from .negotiate import accepted_encodings, language_key, negotiate_kind, negotiate_locale
from .pipeline import Pipeline
from .recorders.base import Recorder
from .recorders.store import store_recorder
from .render import MINIMAL_PAGE, Renderer, safe_url
from .tokens import TokenSigner, page_view
from .worker import Worker

if TYPE_CHECKING:
    from .maintenance import Maintenance
    from .maintenance_page import MaintenanceGate
    from .overload import OverloadGuard

__all__ = [
    "OVERLOAD",
    "OWNER",
    "REPLACED_HEADERS",
    "SAFE_METHODS",
    "Engine",
    "Reply",
    "RequestView",
]

log = logging.getLogger("gracefail")

SAFE_METHODS: Final = frozenset(("GET", "HEAD"))
# The cause of a request shed under load (gracefail.overload): a 503, not an upstream's.
OVERLOAD: Final = "overload"
# Distinct Accept-Language keys remembered (each at most negotiate.MAX_LANGUAGE characters).
_LOCALE_CACHE: Final = 512
# What a log line shows of one value from a request (a path may be kilobytes long).
_LOG_VALUE_MAX: Final = 512
# The key naming the engine that owns a request (the outermost gracefail) in a WSGI
# environ, Django's request.META or an ASGI scope; PEP 3333 wants a dotted name.
OWNER: Final = "gracefail.owner"
# Headers of an app's own 502/504 that the page's reply replaces.
REPLACED_HEADERS: Final = frozenset(
    (
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "cache-control",
        "expires",
        "etag",
        "last-modified",
        "retry-after",
        "vary",
        "content-security-policy",
        "x-gracefail-incident",
    )
)


# Reply and RequestView are values: treat them as read-only. Not frozen=True, which
# costs about 100 ns a field on every construction (object.__setattr__ per field), and
# both are made once per failure served.
@dataclass(slots=True)
class Reply:
    """A finished response: status, headers (lower-case names) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class RequestView:
    """The little of a request gracefail needs. Header names are lower-case.

    ``client_addr`` is the peer address as the server saw it (the beacon rate limit's
    key); None when the adapter cannot tell, and then beacons are not rate limited.
    """

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    scheme: str = "http"
    route: str | None = None
    client_addr: str | None = None


_REFERRER_POLICY: Final = ("referrer-policy", "same-origin")
_PLAIN: Final = "text/plain; charset=utf-8"


def _fallback(status: int, body: bytes, content_type: str, retry_after: str, method: str) -> Reply:
    """The short reply sent when building the real one failed (no body for HEAD)."""
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        ("retry-after", retry_after),
    ]
    return Reply(status, headers, b"" if method == "HEAD" else body)


def route_label(route: str | None) -> str | None:
    """A route template as recorded: always with a leading slash (Django's have none)."""
    if route is None or route.startswith("/"):
        return route
    return "/" + route


def loggable(value: object, limit: int = _LOG_VALUE_MAX) -> str:
    """``value`` as one log line may show it: at most ``limit`` characters (then the
    length), and every character that is not printable (C0 and C1 controls, DEL, line
    and paragraph separators) and the backslash escaped the way ``repr`` escapes them."""
    text = str(value)
    if len(text) > limit:
        text = f"{text[:limit]}...({len(text)} characters)"
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        char if char.isprintable() and char != "\\" else repr(char)[1:-1] for char in text
    )


def under_test() -> bool:
    """Whether a test runner loaded this process (pytest; the adapters add their own)."""
    return "pytest" in sys.modules


def default_recorders(config: Config, *, testing: bool = False) -> list[Recorder]:
    """The recorders used when ``Config.recorders`` is not given: the store's recorder.

    None under a test runner unless ``record_in_tests``: tests must not write into the
    developer's store. A store nobody named lands in the working directory, which
    depends on where the server was started: said at start-up.
    """
    if testing and not config.record_in_tests:
        log.info("gracefail: under a test runner; events are not recorded (record_in_tests)")
        return []
    store = config.store
    if store == DEFAULT_STORE:
        store = os.path.abspath(store)
        log.warning(
            "gracefail: events are stored in %s, in the working directory; set the store "
            "option or GRACEFAIL_DB so every process and the report use one place",
            store,
        )
    return [store_recorder(store)]


class Engine:
    """Classifies failures, renders replies, checks beacons and records events."""

    def __init__(self, config: Config, *, testing: bool | None = None, source: str = "app"):
        """``testing``: whether a test runner is running (default: pytest is loaded);
        ``source``: what the failures it serves are recorded as (``app``, ``gateway``)."""
        self.config = config
        self.source = source
        self.classifier = Classifier(config.exceptions)
        self.renderer = Renderer(config)
        self.signer = TokenSigner(config.secret, config.token_ttl)
        if config.recorders is not None:
            recorders = list(config.recorders)
        else:
            recorders = default_recorders(
                config, testing=under_test() if testing is None else testing
            )
        self.pipeline = Pipeline(recorders, config.queue_size)
        self.guard = BeaconGuard()
        # Only with Config.maintenance: adapters then ask maintenance.on() per request.
        self.maintenance: MaintenanceGate | None = None
        if config.maintenance:
            # Imported only by an app that follows planned maintenance.
            from .maintenance_page import MaintenanceGate

            self.maintenance = MaintenanceGate(config)
        # Only with Config.overload: adapters then admit() each request before the app.
        self.overload: OverloadGuard | None = None
        if config.overload is not None:
            from .overload import OverloadGuard  # only for an app that sheds load

            self.overload = OverloadGuard(config.overload, config.trusted_proxies)
        if self.overload is not None:
            # Recorders that export gauges (Prometheus, OpenTelemetry) read the guard's
            # stats when they are collected, not per request.
            for recorder in recorders:
                watch = getattr(recorder, "watch_overload", None)
                if callable(watch):
                    try:
                        watch(self.overload)
                    except Exception:
                        log.exception("gracefail: %r cannot export the overload gauges", recorder)
        self.beacon_path = config.beacon_path
        self.worker = Worker(config, self.renderer)
        # The paths answer_worker() answers: one set lookup on a request's path.
        self.worker_paths = self.worker.paths
        self._retry_after = str(config.retry.retry_after)
        # The headers every failure reply carries, made once.
        self._fixed_headers: tuple[tuple[str, str], ...] = (
            ("cache-control", "no-store"),
            ("retry-after", self._retry_after),
            ("vary", "Accept, Accept-Language, Accept-Encoding"),
            ("x-content-type-options", "nosniff"),
        )
        # Negotiated locales by language_key (bounded, normalised): never the raw header,
        # which a client may make megabytes long and different on every request.
        self._locales: dict[str, str] = {}
        self._log_next = 0.0
        self._log_quiet = 0
        self._warned_nested = False
        self._warming: threading.Thread | None = None

    # -- ownership --------------------------------------------------------------

    def claim(self, marks: MutableMapping[str, Any]) -> Engine:
        """Mark this engine as the owner of a request unless an outer one did; the owner.

        ``marks`` is the environ, ``request.META`` or ASGI scope. A second gracefail in
        one stack warns (once per engine) and defers to the outer one.
        """
        owner: object = marks.setdefault(OWNER, self)
        if owner is self:
            return self
        if not self._warned_nested:
            self._warned_nested = True
            warnings.warn(
                "gracefail: a second GracefailMiddleware is in the same stack; "
                "the outer one handles failures and this one passes through",
                RuntimeWarning,
                stacklevel=3,
            )
        return owner if isinstance(owner, Engine) else self

    @staticmethod
    def owner(marks: Mapping[str, Any]) -> Engine | None:
        """The engine that claimed this request, if any."""
        owner = marks.get(OWNER)
        return owner if isinstance(owner, Engine) else None

    # -- failures ---------------------------------------------------------------

    def classify(self, exc: BaseException) -> Failure | None:
        """The upstream failure ``exc`` stands for, or None (then re-raise it)."""
        return self.classifier.classify(exc)

    def failure_for_status(self, status: int) -> Failure:
        """The failure an app's own 502/504 response stands for."""
        return self.classifier.from_status(status)

    def timeout_failure(self) -> Failure:
        """The failure ``Config.timeout`` expiring stands for (504)."""
        return self.classifier.app_timeout()

    def serve(
        self,
        failure: Failure,
        view: RequestView,
        *,
        app_headers: Iterable[tuple[str, str]] = (),
        started: float | None = None,
    ) -> Reply:
        """The reply for ``failure``, logged (rate-limited) with its incident id.

        What every adapter calls; ``app_headers`` are the headers of the app's own
        502/504 that the page replaces (``Set-Cookie`` and the like are kept).
        """
        reply = self.respond(failure, view, app_headers=app_headers, started=started)
        self.log_failure(view.method, view.path, failure, reply)
        return reply

    def replaces_app_response(
        self, headers: Mapping[str, str], app_headers: Iterable[tuple[str, str]] = ()
    ) -> bool:
        """Whether an app-made 502/504 to this request gets the page (navigation) or passes.

        ``headers`` are the request's; ``app_headers`` the response's, when known: a reply
        gracefail already made (it carries ``X-Gracefail-Incident``) is never replaced.
        """
        if any(name.lower() == "x-gracefail-incident" for name, _ in app_headers):
            return False
        return self.config.replace_api_responses or negotiate_kind(headers) == "html"

    def respond(
        self,
        failure: Failure,
        view: RequestView,
        *,
        app_headers: Iterable[tuple[str, str]] = (),
        started: float | None = None,
    ) -> Reply:
        """The reply for a failure; falls back to a minimal page if anything here breaks."""
        try:
            return self._respond(failure, view, app_headers, started)
        except Exception:
            log.exception("gracefail: could not build the failure reply; sending the minimal page")
            return self._minimal(failure.status, view.method)

    def _respond(
        self,
        failure: Failure,
        view: RequestView,
        app_headers: Iterable[tuple[str, str]],
        started: float | None,
    ) -> Reply:
        headers = view.headers
        kind = negotiate_kind(headers)
        language = language_key(headers.get("accept-language"))
        locale = self._locales.get(language)
        if locale is None:
            # The shipped locales and those a theme adds (template_dir/locales/).
            names = self.renderer.locale_names
            locale = negotiate_locale(language, names, self.config.default_locale)
            if len(self._locales) >= _LOCALE_CACHE:
                self._locales.clear()
            self._locales[language] = locale
        safe = view.method in SAFE_METHODS
        # The incident is shown and logged; the token vouches for the page view's key,
        # which a client-chosen X-Request-ID cannot make equal to another page view's.
        # Issued when the request arrived: the page's durations are bounded by its age.
        incident, key = page_view(headers.get("x-request-id"))
        token = self.signer.sign(key, failure.status, now=started)
        # No path: the URL that failed is not known (a proxy's error request); the page's
        # retry link then stays on its own address.
        url = safe_url(view.path, view.query) if view.path else ""
        # Pre-compressed forms (gzip; brotli with the brotli package) filled per request
        # without compressing: see Renderer.encoded_body.
        body, content_type, csp, coding = self.renderer.encoded_body(
            kind,
            failure,
            locale,
            safe,
            incident,
            token,
            url,
            accepted_encodings(headers.get("accept-encoding")),
        )
        reply_headers = [
            (name, value) for name, value in app_headers if name.lower() not in REPLACED_HEADERS
        ]
        reply_headers += (
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("x-gracefail-incident", incident),
        )
        if coding is not None:
            reply_headers.append(("content-encoding", coding))
        reply_headers += self._fixed_headers
        if csp is not None:
            reply_headers += (("content-security-policy", csp), _REFERRER_POLICY)
        now = time.time()
        self.pipeline.put(
            ServerEvent(
                time=now,
                incident=incident,
                status=failure.status,
                cause=failure.cause,
                method=view.method,
                route=route_label(view.route),
                reply_format=kind,
                probe=headers.get("x-gracefail-probe") == "1",
                upstream=failure.upstream,
                error_type=failure.error_type,
                app_ms=None if started is None else round((now - started) * 1000.0, 3),
                source=self.source,
            )
        )
        return Reply(failure.status, reply_headers, b"" if view.method == "HEAD" else body)

    def log_failure(self, method: object, path: object, failure: Failure, reply: Reply) -> None:
        """One WARNING line per second at most; the lines left out are counted in the next.

        Every value from the request is passed through :func:`loggable`: a path may carry
        CR, LF or terminal escapes (decoded by a server or a proxy header) that would
        otherwise forge log lines.
        """
        now = time.monotonic()
        if now < self._log_next:
            self._log_quiet += 1
            return
        quiet, self._log_quiet, self._log_next = self._log_quiet, 0, now + 1.0
        log.warning(
            "gracefail: %s %s failed upstream (%s, %s); served %d, incident %s%s",
            loggable(method, 16),
            loggable(path),
            loggable(failure.cause),
            loggable(failure.error_type),
            reply.status,
            next((v for n, v in reply.headers if n == "x-gracefail-incident"), None),
            f" (and {quiet} more failures since the last line)" if quiet else "",
        )

    def _minimal(self, status: int, method: str) -> Reply:
        return _fallback(
            status if status in UPSTREAM_STATUSES else 502,
            MINIMAL_PAGE.encode(),
            "text/html; charset=utf-8",
            self._retry_after,
            method,
        )

    # -- planned maintenance ------------------------------------------------------

    def maintenance_reply(self, view: RequestView, *, allowed: bool = False) -> Reply | None:
        """During maintenance, the 503 for a request that may not pass; None to let it
        through (its response then carries ``X-Gracefail-Maintenance: on``).

        Adapters call it only after ``self.maintenance.on()`` said maintenance is on;
        ``allowed`` is their own check of the user (Django staff, Flask's callable).
        The beacon path, ``maintenance_paths`` and ``maintenance_allow`` always pass.
        """
        gate = self.maintenance
        if gate is None:
            return None
        state = gate.on()
        if state is None or allowed or view.path == self.beacon_path:
            return None
        if gate.allows(view.path, view.client_addr, view.headers):
            return None
        try:
            return self._maintenance_reply(gate, state, view)
        except Exception:
            log.exception("gracefail: could not build the maintenance reply; sending plain text")
            body = b"503 Service Unavailable: planned maintenance.\n"
            reply = _fallback(503, body, _PLAIN, self._retry_after, view.method)
            reply.headers.append(BANNER)
            return reply

    def _maintenance_reply(
        self, gate: MaintenanceGate, state: Maintenance, view: RequestView
    ) -> Reply:
        headers = view.headers
        kind = negotiate_kind(headers)
        incident, _ = page_view(headers.get("x-request-id"))
        now = time.time()
        client = client_address(view.client_addr, headers, self.config.trusted_proxies)
        retry_after = gate.retry_after(state, client, now)
        url = safe_url(view.path, view.query) if view.path else ""
        body, content_type = gate.body(
            kind,
            state,
            incident=incident,
            safe=view.method in SAFE_METHODS,
            url=url,
            retry_after=retry_after,
            now=now,
            accept_language=headers.get("accept-language"),
        )
        reply_headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
            ("retry-after", str(retry_after)),
            ("vary", "Accept, Accept-Language"),
            ("x-gracefail-incident", incident),
            BANNER,
            ("x-content-type-options", "nosniff"),
        ]
        if kind == "html":
            reply_headers += [
                ("content-security-policy", gate.csp),
                ("referrer-policy", "same-origin"),
            ]
        self.pipeline.put(
            ServerEvent(
                time=now,
                incident=incident,
                status=503,
                cause="maintenance",
                method=view.method,
                route=route_label(view.route),
                reply_format=kind,
                probe=headers.get("x-gracefail-probe") == "1",
                source=self.source,
            )
        )
        return Reply(503, reply_headers, b"" if view.method == "HEAD" else body)

    # -- overload -----------------------------------------------------------------

    def overload_reply(self, view: RequestView, reason: str | None) -> Reply:
        """The 503 "busy" reply to a request :attr:`overload` shed (``reason``: the
        Admission's, ``"queue"`` or ``"concurrency"``), recorded with cause ``overload``.

        The page (a navigation), problem+json or plain text, with the usual headers and
        recovery; ``Retry-After`` is ``Overload.retry_after`` plus this client's share of
        ``retry_spread`` (the client as for beacons, through ``trusted_proxies``), so the
        shed do not all come back in the same second. Never raises: a fault here sends
        a short plain-text 503.
        """
        retry_after = self._retry_after
        try:
            guard = self.overload
            if guard is not None:
                client = client_address(view.client_addr, view.headers, self.config.trusted_proxies)
                retry_after = str(guard.retry_after(client))
            failure = Failure(503, OVERLOAD, error_type=f"overload.{reason or 'shed'}")
            reply = self._respond(failure, view, (), None)
            reply.headers = [
                (name, retry_after if name == "retry-after" else value)
                for name, value in reply.headers
            ]
            return reply
        except Exception:
            log.exception("gracefail: could not build the busy reply; sending plain text")
            body = b"503 Service Unavailable: too busy right now; please try again shortly.\n"
            return _fallback(503, body, _PLAIN, retry_after, view.method)

    # -- beacons ----------------------------------------------------------------

    max_beacon_body: Final = MAX_BODY

    def answer_beacon(
        self, view: RequestView, content_length: int | None, read: Callable[[int], bytes]
    ) -> Reply:
        """Answer a beacon whose body ``read(n)`` gives (at most ``n`` bytes, read only if
        the request passes the checks that need no body)."""
        refused = self.beacon_precheck(view, content_length)
        if refused is not None:
            return refused
        return self.accept_beacon(view, read(MAX_BODY + 1))

    def beacon_precheck(self, view: RequestView, content_length: int | None) -> Reply | None:
        """A refusal to send before reading the body, or None to go on reading.

        ``content_length`` is :func:`gracefail.views.content_length`'s: negative when the
        header is not a number, which is a bad request whatever the method.
        """
        if content_length is not None and content_length < 0:
            return self.beacon_reply(400, "bad Content-Length")
        if view.method != "POST":
            return self.beacon_reply(405, "use POST", [("allow", "POST")])
        if content_length is not None and content_length > MAX_BODY:
            return self.beacon_reply(413, "beacon too large")
        return None

    def accept_beacon(self, view: RequestView, body: bytes) -> Reply:
        """Validate a beacon and queue its event: 204, or a 4xx with a short reason.

        A client over its rate limit, or a page view over its own, gets 429 with
        ``Retry-After`` (the page sends it again then); a page view past its bound of
        events gets 429 without; an outcome older than its page's ``shown`` gets 400; a
        repeated (page view, kind, attempt) gets 204 and is not recorded again. The client
        is the peer, or the address a proxy of ``Config.trusted_proxies`` forwarded.
        """
        refused = self.beacon_precheck(view, len(body))
        if refused is not None:
            return refused
        client = client_address(view.client_addr, view.headers, self.config.trusted_proxies)
        wait = self.guard.allow(client)
        if wait:
            return self.beacon_reply(429, "too many beacons", [("retry-after", str(int(wait) + 1))])
        try:
            check_origin(view.headers, view.scheme)
            event = parse_beacon(body, view.headers.get("content-type", ""), self.signer)
        except BeaconError as exc:
            return self.beacon_reply(exc.status, exc.reason)
        wait = self.guard.allow_page(event.incident)
        if wait:
            return self.beacon_reply(
                429, "too many beacons from this page", [("retry-after", str(int(wait) + 1))]
            )
        verdict = self.guard.admit(event)
        if verdict is Verdict.TOO_MANY:
            return self.beacon_reply(429, "too many events for this incident")
        if verdict is Verdict.BEFORE_SHOWN:
            return self.beacon_reply(400, "outcome before the page was shown")
        if verdict is Verdict.ACCEPT:
            self.pipeline.put(event)
        return Reply(204, [("cache-control", "no-store")], b"")

    @staticmethod
    def beacon_reply(status: int, reason: str, extra: Sequence[tuple[str, str]] = ()) -> Reply:
        """A short plain-text answer to a beacon."""
        body = (reason + "\n").encode()
        headers = [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
            *extra,
        ]
        return Reply(status, headers, body)

    # -- the service worker -------------------------------------------------------

    def answer_worker(self, view: RequestView) -> Reply:
        """``sw.js``, ``register.js`` or the worker's pages, for a request whose path is in
        ``worker_paths`` (see :mod:`gracefail.worker`); adapters answer it before the app."""
        status, headers, body = self.worker.answer(view.method, view.path, view.headers)
        return Reply(status, headers, body)

    # -- lifecycle --------------------------------------------------------------

    def warm_in_background(self) -> None:
        """Prepare the page's default-locale variants (Renderer.warm) in a daemon thread,
        once per engine: for servers that have started listening (an ASGI lifespan), never
        before a fork."""
        if self._warming is not None:
            return
        self._warming = threading.Thread(target=self._warm, name="gracefail-warm", daemon=True)
        self._warming.start()

    def _warm(self) -> None:
        try:
            self.renderer.warm()
        except Exception:
            # The request path renders what it needs itself (with its own fallbacks).
            log.exception("gracefail: could not prepare the page in advance")

    def record(self, event: Event) -> None:
        """Queue an event for the recorders (never blocks)."""
        self.pipeline.put(event)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued events reached the recorders."""
        return self.pipeline.flush(timeout)

    def close(self) -> None:
        """Flush and close the recorders (called at shutdown)."""
        self.pipeline.close()
        if self.maintenance is not None:
            self.maintenance.watch.close()
