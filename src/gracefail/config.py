"""gracefail's options: frozen dataclasses validated once, at start-up.

Every bad value raises ``ValueError`` naming the option, the value and what is
allowed, so a typo fails when the app starts rather than during an outage.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import ipaddress
import mimetypes
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .locales import LocaleError, Wording, placeholders
from .locales import load as load_wording

if TYPE_CHECKING:
    from .overload import Overload
    from .recorders.base import Recorder

__all__ = ["Brand", "Config", "ConfigError", "RetryPolicy"]

_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
# A same-origin path; "//host" and "/\\host" would be read as another host by browsers.
_PATH = re.compile(
    r"/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@/%-]*(?:\?[A-Za-z0-9._~!$&'()*+,;=:@/%?-]*)?"
)
UPSTREAM_STATUSES = (502, 504)
LOCALES = ("en", "es", "fr", "de", "pt-BR", "ja", "zh-Hans")


class ConfigError(ValueError):
    """A gracefail option has a value it cannot use."""


def _fail(option: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(f"gracefail: {option}={value!r} is not valid; {allowed}")


def _check_url(option: str, value: str | None, *, relative_ok: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise _fail(option, value, "expected a URL string or None")
    if relative_ok and _PATH.fullmatch(value):
        return
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or any(c in value for c in "\"'<> \n\r\t")
    ):
        allowed = "expected an absolute http(s) URL"
        raise _fail(
            option, value, allowed + (" or a path starting with '/'" if relative_ok else "")
        )


def _positive(option: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(option, value, "expected a number of seconds")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise _fail(option, value, "expected a positive number of seconds")
    return float(value)


@dataclass(frozen=True, slots=True)
class Brand:
    """How the page looks: the name users know, an optional logo and an accent colour.

    ``logo`` is a ``data:image/...`` URI or the path of an image file, which is
    read once and inlined (the page never loads anything from another URL).
    """

    name: str = "This site"
    logo: str | None = None
    color: str = "#2563eb"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 80:
            raise _fail(
                "brand.name", self.name, "expected a non-empty string of at most 80 characters"
            )
        if not isinstance(self.color, str) or not _HEX_COLOUR.fullmatch(self.color):
            raise _fail("brand.color", self.color, "expected a hex colour such as '#2563eb'")
        ratio = _contrast_with_white(self.color)
        if ratio < 4.5:
            raise _fail(
                "brand.color",
                self.color,
                f"white text on it has contrast {ratio:.2f}:1; AA needs 4.5:1",
            )
        if self.logo is not None:
            object.__setattr__(self, "logo", _inline_logo(self.logo))


def _contrast_with_white(colour: str) -> float:
    digits = colour[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)

    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(digits[i : i + 2]) for i in (0, 2, 4))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 1.05 / (luminance + 0.05)


# The page must stay under 16 KB in every locale; about 2 KB of it is left for a logo.
LOGO_BUDGET: Final = 2048


def _inline_logo(logo: object) -> str:
    if not isinstance(logo, str | os.PathLike):
        raise _fail("brand.logo", logo, "expected a data:image/ URI or an image file path")
    text = os.fspath(logo)
    if text.startswith("data:"):
        if not re.fullmatch(r"data:image/[a-z0-9.+-]+(;base64)?,[A-Za-z0-9+/=%._~-]*", text):
            raise _fail("brand.logo", text[:40] + "...", "expected a data:image/...;base64,... URI")
        if len(text) > LOGO_BUDGET:
            raise _fail(
                "brand.logo", text[:40] + "...", f"the inlined logo must fit {LOGO_BUDGET} bytes"
            )
        return text
    path = Path(text)
    kind = mimetypes.guess_type(path.name)[0]
    if not path.is_file() or kind is None or not kind.startswith("image/"):
        raise _fail("brand.logo", text, "expected an existing image file (.svg, .png, .webp, ...)")
    uri = f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"
    if len(uri) > LOGO_BUDGET:
        raise _fail(
            "brand.logo", text, f"inlined it takes {len(uri)} bytes; the page leaves {LOGO_BUDGET}"
        )
    return uri


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When the page probes again: capped exponential backoff with full jitter.

    The first probe waits ``retry_after`` plus up to ``base`` seconds (so pages that
    failed together do not return in the same second); probe ``n >= 1`` waits a
    uniform random time in ``[0, min(cap, base * 2**n)]``. The page gives up
    ``give_up_after`` seconds after it was shown. The browser script receives
    these numbers and applies :meth:`delay_bounds`' formula; this is its only copy.
    """

    # Chosen by benchmarks/herd.py (docs/performance.md): with 10,000 pages failing in
    # the same second, at most ~5% come back in any one second, under 2 probes per page
    # per minute, and median/p90 recovery lag of about 18 s / 43 s for outages up to 10 min.
    retry_after: int = 5
    base: float = 4.0
    cap: float = 62.0
    give_up_after: float = 1800.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.retry_after, bool)
            or not isinstance(self.retry_after, int)
            or not (0 <= self.retry_after <= 3600)
        ):
            raise _fail("retry.retry_after", self.retry_after, "expected whole seconds, 0 to 3600")
        _positive("retry.base", self.base)
        _positive("retry.cap", self.cap)
        _positive("retry.give_up_after", self.give_up_after)
        if self.cap < self.base:
            raise _fail("retry.cap", self.cap, f"expected at least retry.base ({self.base})")

    def delay_bounds(self, attempt: int) -> tuple[float, float]:
        """The interval (seconds) the page draws the wait before probe ``attempt`` from."""
        if attempt <= 0:
            return float(self.retry_after), float(self.retry_after + self.base)
        return 0.0, min(self.cap, self.base * 2.0 ** min(attempt, 60))

    def to_script(self) -> dict[str, float]:
        """The numbers handed to the page's script."""
        return {
            "after": self.retry_after,
            "base": self.base,
            "cap": self.cap,
            "giveUpAfter": self.give_up_after,
        }


def _paths(value: object, option: str) -> tuple[str, ...]:
    """A list of request paths (or one comma-separated string), each starting with '/'."""
    paths = value
    if isinstance(paths, str):
        paths = [part.strip() for part in paths.split(",") if part.strip()]
    if not isinstance(paths, Sequence) or not all(
        isinstance(path, str) and path.startswith("/") and not any(c in path for c in "?# ")
        for path in paths
    ):
        raise _fail(
            option, value, "expected paths that start with '/', such as ['/healthz', '/status']"
        )
    return tuple(paths)


def _proxies(value: object, option: str = "trusted_proxies") -> tuple[str, ...]:
    """``trusted_proxies`` (or ``option``, another list of networks) as a tuple of
    normalised networks; ConfigError names a bad entry."""
    whose = "your reverse proxies" if option == "trusted_proxies" else "the allowed clients"
    allowed = (
        f"expected the IP addresses or CIDR networks of {whose}, such as "
        "['10.0.0.0/8', '::1'] (or one comma-separated string)"
    )
    if isinstance(value, str):
        entries: object = [part for part in value.split(",") if part.strip()]
    else:
        entries = value
    if not isinstance(entries, Sequence) or isinstance(entries, bytes):
        raise _fail(option, value, allowed)
    networks: list[str] = []
    for entry in entries:
        try:
            if not isinstance(entry, str):
                raise ValueError(entry)
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise _fail(
                option, value, f"{entry!r} is not an address or network; {allowed}"
            ) from None
    return tuple(networks)


_ROUTE_KEY = re.compile(r"/[^\s?#*]*\*?")


def _messages(value: object, template_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``Config.messages`` checked against the keys and locales the page has; routes with a
    leading slash (Django's have none), locales spelled as gracefail spells them."""
    allowed = "expected a dict {route: {string key: text or {locale: text}}}"
    if not isinstance(value, Mapping):
        raise _fail("messages", value, allowed)
    if not value:
        return {}
    try:
        wording = load_wording(LOCALES, template_dir)
    except LocaleError as exc:
        raise ConfigError(str(exc)) from None
    checked: dict[str, Any] = {}
    for route, strings in value.items():
        key = route if not isinstance(route, str) or route.startswith("/") else "/" + route
        if not isinstance(route, str) or not _ROUTE_KEY.fullmatch(key):
            raise _fail(
                "messages",
                route,
                "routes are templates such as '/checkout' or '/orders/{id}', or prefixes "
                "ending in '*' such as '/checkout/*'",
            )
        if key in checked:
            raise _fail("messages", route, f"{key!r} is given twice")
        if not isinstance(strings, Mapping):
            raise _fail(f"messages[{route!r}]", strings, allowed)
        checked[key] = {
            name: _message(f"messages[{route!r}][{name!r}]", name, text, wording)
            for name, text in strings.items()
        }
    return checked


def _message(option: str, name: object, text: object, wording: Wording) -> str | dict[str, str]:
    if not isinstance(name, str) or name not in wording.keys:
        near = difflib.get_close_matches(str(name), sorted(wording.keys), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise _fail(
            option.rpartition("[")[0],
            name,
            f"no such string; {hint}the page's strings are {', '.join(sorted(wording.keys))}",
        )
    english = wording.table["en"][name]
    # {code} and {s} are filled by the page; {brand} may be used anywhere or not at all.
    needed = placeholders(english) - {"{brand}"}
    usable = needed | {"{brand}"}

    def one(option: str, text: object) -> str:
        if not isinstance(text, str) or not text.strip():
            raise _fail(option, text, "expected a non-empty string (plain text, not HTML)")
        found = placeholders(text)
        if not needed <= found or not found <= usable:
            must = f"it must contain {', '.join(sorted(needed))} and " if needed else "it "
            raise _fail(
                option,
                text,
                f"{must}may contain {', '.join(sorted(usable - needed))} and no other "
                f"{{placeholder}} (the English is {english!r})",
            )
        return text

    if isinstance(text, Mapping):
        by_locale: dict[str, str] = {}
        for locale, words in text.items():
            name_of = wording.canonical(locale) if isinstance(locale, str) else None
            if name_of is None:
                raise _fail(
                    f"{option}[{locale!r}]",
                    words,
                    f"expected locales of {', '.join(wording.names)}",
                )
            by_locale[name_of] = one(f"{option}[{locale!r}]", words)
        if not by_locale:
            raise _fail(option, text, "expected text, or a dict {locale: text} with an entry")
        return by_locale
    return one(option, text)


# A service worker's scope: a path of whole segments ending in "/" ("/" is the whole site).
_SCOPE = re.compile(r"/(?:[A-Za-z0-9._~!$&'()*+,;=:@%-]+/)*")


def _check_service_worker(value: object, beacon_path: str) -> None:
    if value is False:
        return
    if value is not True and not (isinstance(value, str) and _SCOPE.fullmatch(value)):
        raise _fail(
            "service_worker",
            value,
            "expected True (the whole site), False, or the path the worker covers, ending "
            "in '/', such as '/shop/'",
        )
    if not beacon_path.rsplit("/", 1)[0]:
        raise _fail(
            "service_worker",
            value,
            f"the worker's files are served from the beacon path's folder, and "
            f"beacon_path={beacon_path!r} is at the site's root, where /sw.js would shadow "
            "the app's own; use a beacon_path in a folder, such as '/_gracefail/beacon'",
        )


def _secret_default() -> str | None:
    return os.environ.get("GRACEFAIL_SECRET") or None


# The store's name when nothing names one; the adapters put it somewhere the app owns.
DEFAULT_STORE: Final = "gracefail.sqlite3"
MIN_SECRET: Final = 16


def _store_default() -> str:
    return os.environ.get("GRACEFAIL_DB") or DEFAULT_STORE


def _record_in_tests_default() -> bool:
    return os.environ.get("GRACEFAIL_RECORD_IN_TESTS", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything gracefail can be told. Every middleware accepts these as keywords.

    Attributes:
        brand: name, logo and colour of the page.
        retry: the page's probing schedule.
        status_page_url: public status page linked from the page.
        status_api_url: a Statuspage-compatible ``summary.json``; the page shows it live.
        health_url: what the page probes after a failed POST/PUT/PATCH/DELETE
            (it never resubmits those); a path or an absolute URL on the same origin.
        beacon_path: where the page reports what the user went through.
        secret: key that signs beacon tokens (default ``GRACEFAIL_SECRET``; the
            Django and Flask adapters use ``SECRET_KEY``).
        template_dir: a folder whose ``page.html`` replaces the built-in template.
        default_locale: the page's language when ``Accept-Language`` matches none.
        messages: the page's words for some routes: ``{route: {string key: text}}``,
            the text one string or ``{locale: text}``. A route is a template
            (``/orders/{id}``, ``/orders/<int:id>``) or a prefix ending in ``*``
            (``/checkout/*``); the most specific match wins. Keys are the locales'
            (``heading_unsafe``, ``next_unsafe``, ...; see docs/customising.md).
        exceptions: extra or overriding mappings from exception class (or its dotted
            path) to 502, 504, or ``None`` (not an upstream failure).
        replace_api_responses: also replace the app's own 502/504 for API clients.
        timeout: seconds the app may take to start its response; then a 504 is sent
            (ASGI only).
        debug: show the failure's detail on the page (never in production).
        store: where events are kept: a file path (``str`` or ``pathlib.Path``),
            ``sqlite:///...`` or ``postgresql://...``. Default ``GRACEFAIL_DB``, else
            ``gracefail.sqlite3`` next to the project (Django: ``BASE_DIR``; Flask: the
            instance folder; plain ASGI/WSGI: the working directory, with a warning).
        recorders: where events go; default: the store's recorder.
        record_in_tests: keep recording into the store under a test runner (pytest,
            Django's test runner, a Flask app with ``TESTING``); off by default, so
            tests never write into the developer's store (default
            ``GRACEFAIL_RECORD_IN_TESTS``). Explicit ``recorders`` always record.
        token_ttl: seconds a page's beacon token stays valid.
        queue_size: events waiting for the recorders before new ones are dropped.
        trusted_proxies: addresses or CIDR networks of the reverse proxies in front of
            the app (``["10.0.0.0/8", "::1"]``, or one comma-separated string). Only a
            request from one of them has its ``X-Forwarded-For`` (else ``Forwarded``)
            read, from the right, for the client address that beacon rate limits key
            on; empty (the default), the peer address is the client.
        maintenance: follow the planned maintenance switch kept in the store
            (``gracefail maintenance on``; docs/maintenance.md): while it is on, requests
            get a 503 maintenance page unless allowed below. Read at most once a second,
            off the request path. Off by default.
        maintenance_allow: addresses or CIDR networks whose requests pass during
            maintenance (the client address as for beacons, through ``trusted_proxies``).
        maintenance_paths: paths that pass during maintenance, each with everything
            under it (``["/healthz", "/status"]``); the beacon path always passes.
        service_worker: serve the opt-in service worker (docs/service-worker.md) from the
            beacon path's folder, for the failures no server of the site can answer:
            ``True`` for the whole site, or the path it covers (its scope, ending in
            ``/``). Pages load it with ``<script src="/_gracefail/register.js" defer>``.
            Off (the default), the worker a browser installed earlier removes itself.
        overload: shed the requests above the app's capacity at once, with a 503 "busy"
            page that brings the user back later, instead of letting them queue until
            the proxy times everyone out: ``gracefail.Overload(...)`` or a dict of its
            fields (an in-flight limit, fixed or adaptive, and the proxy's queue time;
            docs/overload.md). None (the default): off.
    """

    brand: Brand = field(default_factory=Brand)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    status_page_url: str | None = None
    status_api_url: str | None = None
    health_url: str = "/"
    beacon_path: str = "/_gracefail/beacon"
    secret: str | bytes | None = field(default_factory=_secret_default)
    template_dir: str | os.PathLike[str] | None = None
    default_locale: str = "en"
    messages: Mapping[str, Mapping[str, str | Mapping[str, str]]] = field(default_factory=dict)
    exceptions: Mapping[type[BaseException] | str, int | None] = field(default_factory=dict)
    replace_api_responses: bool = False
    timeout: float | None = None
    debug: bool = False
    store: str = field(default_factory=_store_default)
    recorders: Sequence[Recorder] | None = None
    record_in_tests: bool = field(default_factory=_record_in_tests_default)
    token_ttl: int = 6 * 3600
    queue_size: int = 10_000
    trusted_proxies: Sequence[str] = ()
    maintenance: bool = False
    maintenance_allow: Sequence[str] = ()
    maintenance_paths: Sequence[str] = ()
    service_worker: bool | str = False
    overload: Overload | None = None

    def __post_init__(self) -> None:
        if isinstance(self.brand, Mapping):
            object.__setattr__(self, "brand", _build(Brand, self.brand, "brand."))
        if isinstance(self.retry, Mapping):
            object.__setattr__(self, "retry", _build(RetryPolicy, self.retry, "retry."))
        if not isinstance(self.brand, Brand):
            raise _fail(
                "brand", self.brand, "expected gracefail.Brand(...) or a dict of its fields"
            )
        if not isinstance(self.retry, RetryPolicy):
            raise _fail("retry", self.retry, "expected gracefail.RetryPolicy(...) or a dict")
        _check_url("status_page_url", self.status_page_url)
        _check_url("status_api_url", self.status_api_url)
        _check_url("health_url", self.health_url, relative_ok=True)
        if not isinstance(self.beacon_path, str) or not re.fullmatch(
            r"/(?!/)[A-Za-z0-9._~/-]+", self.beacon_path
        ):
            raise _fail(
                "beacon_path", self.beacon_path, "expected a path such as '/_gracefail/beacon'"
            )
        if self.secret is not None and (
            not isinstance(self.secret, str | bytes) or len(self.secret) < MIN_SECRET
        ):
            allowed = f"expected a string of at least {MIN_SECRET} characters or None"
            raise _fail("secret", "<hidden>", allowed)
        if self.template_dir is not None and not Path(self.template_dir).is_dir():
            raise _fail("template_dir", self.template_dir, "expected an existing directory")
        if self.default_locale not in LOCALES:
            raise _fail(
                "default_locale", self.default_locale, f"expected one of {', '.join(LOCALES)}"
            )
        object.__setattr__(self, "messages", _messages(self.messages, self.template_dir))
        self._check_exceptions()
        for flag in ("replace_api_responses", "debug", "record_in_tests"):
            if not isinstance(getattr(self, flag), bool):
                raise _fail(flag, getattr(self, flag), "expected True or False")
        if self.timeout is not None:
            _positive("timeout", self.timeout)
        if isinstance(self.store, os.PathLike):
            object.__setattr__(self, "store", os.fspath(self.store))
        if not isinstance(self.store, str) or not self.store:
            raise _fail(
                "store", self.store, "expected a file path, sqlite:///... or postgresql://..."
            )
        if self.recorders is not None:
            for recorder in self.recorders:
                if not callable(getattr(recorder, "record", None)):
                    raise _fail(
                        "recorders", recorder, "expected objects with a record(events) method"
                    )
        for name, low, high in (("token_ttl", 60, 7 * 86400), ("queue_size", 1, 10_000_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _fail(name, value, f"expected a whole number from {low} to {high}")
        object.__setattr__(self, "trusted_proxies", _proxies(self.trusted_proxies))
        if self.overload is not None:
            from .overload import check_overload  # overload.py imports this module

            object.__setattr__(
                self, "overload", check_overload(self.overload, self.trusted_proxies)
            )
        self._check_maintenance()
        _check_service_worker(self.service_worker, self.beacon_path)

    def _check_maintenance(self) -> None:
        if not isinstance(self.maintenance, bool):
            raise _fail("maintenance", self.maintenance, "expected True or False")
        allow = _proxies(self.maintenance_allow, "maintenance_allow")
        object.__setattr__(self, "maintenance_allow", allow)
        object.__setattr__(
            self, "maintenance_paths", _paths(self.maintenance_paths, "maintenance_paths")
        )

    def _check_exceptions(self) -> None:
        if not isinstance(self.exceptions, Mapping):
            raise _fail(
                "exceptions", self.exceptions, "expected a dict {exception class: 502|504|None}"
            )
        for key, status in self.exceptions.items():
            if not (isinstance(key, str) and "." in key) and not (
                isinstance(key, type) and issubclass(key, BaseException)
            ):
                raise _fail("exceptions", key, "keys are exception classes or dotted class paths")
            if status is not None and (type(status) is not int or status not in UPSTREAM_STATUSES):
                raise _fail(f"exceptions[{key!r}]", status, "expected 502, 504 or None")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> Config:
        """Build a Config from a settings dict (keys in either case; nested brand/retry dicts).

        Unknown keys raise :class:`ConfigError` suggesting the nearest valid one.
        """
        config: Config = _build(cls, options, "")
        return config

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Config(**values)


def _build(cls: type[Any], options: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"gracefail: {prefix.rstrip('.') or 'options'} must be a dict, got {options!r}"
        )
    names = [f.name for f in fields(cls)]
    values: dict[str, Any] = {}
    for key, value in options.items():
        name = str(key).lower()
        if name not in names:
            near = difflib.get_close_matches(name, names, n=1)
            hint = (
                f"; did you mean '{prefix}{near[0]}'?"
                if near
                else f"; valid keys: {', '.join(names)}"
            )
            raise ConfigError(f"gracefail: unknown option '{prefix}{key}'{hint}")
        values[name] = value
    return cls(**values)


def config_from(config: Config | None, options: Mapping[str, Any]) -> Config:
    """What each middleware's ``(config=None, **options)`` signature means."""
    if config is not None and not isinstance(config, Config):
        raise ConfigError(f"gracefail: config={config!r} is not a gracefail.Config")
    if config is None:
        return Config.from_mapping(options)
    if not options:
        return config
    current = {f.name: getattr(config, f.name) for f in fields(config)}
    return Config.from_mapping({**current, **options})


def _derived_secret(framework_secret: str | bytes) -> str:
    # A key of its own, so beacon tokens never share an HMAC key with the framework's uses.
    key = framework_secret.encode() if isinstance(framework_secret, str) else framework_secret
    return hmac.new(key, b"gracefail beacon tokens", hashlib.sha256).hexdigest()


def framework_config(
    config: Config | None,
    settings: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    framework_secret: str | bytes | None,
    *,
    project_dir: str | os.PathLike[str] | None = None,
    debug: bool = False,
) -> Config:
    """Config from a Config, the framework's settings dict, then keyword options (later wins).

    With no ``secret`` anywhere (nor ``GRACEFAIL_SECRET``), one is derived from the
    framework's ``SECRET_KEY`` (a warning if that is shorter than ``secret`` may be).
    With no ``store`` named, it is ``gracefail.sqlite3`` in ``project_dir``; with no
    ``debug`` named, it follows the framework's own ``debug``.
    """
    merged = {**(settings or {}), **options}
    named = {str(key).lower() for key in merged}
    built = config_from(config, merged)
    changes: dict[str, Any] = {}
    if built.secret is None and framework_secret:
        if len(framework_secret) < MIN_SECRET:
            warnings.warn(
                f"gracefail: SECRET_KEY is shorter than {MIN_SECRET} characters; beacon "
                "tokens signed with a key derived from it are easy to forge. Use a long "
                "random SECRET_KEY, or set gracefail's secret (GRACEFAIL_SECRET).",
                RuntimeWarning,
                stacklevel=3,
            )
        changes["secret"] = _derived_secret(framework_secret)
    if project_dir is not None and built.store == DEFAULT_STORE and "store" not in named:
        changes["store"] = os.path.join(os.fspath(project_dir), DEFAULT_STORE)
    if debug and not built.debug and "debug" not in named and config is None:
        changes["debug"] = True
    return built.replace(**changes) if changes else built
