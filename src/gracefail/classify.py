"""Decide whether an exception (or a status) is an upstream failure, and which.

Client libraries are never imported: classes are matched by their dotted path
anywhere in the exception's MRO, and the exception chain (``__cause__``,
``__context__``) is searched, so ``raise PaymentsDown from exc`` counts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from .errors import UpstreamError

__all__ = ["Classifier", "Failure", "class_path", "upstream_classes"]

# Causes are metric labels: keep the set small and stable.
TIMEOUT: Final = "timeout"
CONNECTION: Final = "connection"
PROTOCOL: Final = "protocol"
UPSTREAM_STATUS: Final = "upstream_status"
UPSTREAM_ERROR: Final = "upstream_error"
APP_RESPONSE: Final = "app_response"
APP_TIMEOUT: Final = "app_timeout"
GRPC: Final = "grpc"  # resolved to timeout/connection from the call's status code


@dataclass(slots=True)
class Failure:
    """An upstream failure, as the rest of gracefail sees it (a value: read-only; not
    ``frozen``, which would cost about 100 ns a field each time one is made)."""

    status: int
    cause: str
    upstream: str | None = None
    detail: str | None = None
    error_type: str | None = None


# (status, cause); status None means "look at the upstream's own status".
_Rule = tuple[int | None, str]

BUILTIN_RULES: Final[Mapping[str, _Rule]] = {
    "gracefail.errors.UpstreamError": (None, UPSTREAM_ERROR),
    # Timeouts: 504. socket.timeout and asyncio.TimeoutError are builtins.TimeoutError.
    "builtins.TimeoutError": (504, TIMEOUT),
    "httpx.TimeoutException": (504, TIMEOUT),
    "requests.exceptions.Timeout": (504, TIMEOUT),
    "requests.exceptions.ConnectTimeout": (504, TIMEOUT),
    "urllib3.exceptions.TimeoutError": (504, TIMEOUT),
    "aiohttp.client_exceptions.ServerTimeoutError": (504, TIMEOUT),
    # Connection and protocol failures: 502.
    "builtins.ConnectionError": (502, CONNECTION),
    "http.client.HTTPException": (502, PROTOCOL),
    "httpx.NetworkError": (502, CONNECTION),
    "httpx.RemoteProtocolError": (502, PROTOCOL),
    "requests.exceptions.ConnectionError": (502, CONNECTION),
    "requests.exceptions.ChunkedEncodingError": (502, PROTOCOL),
    "urllib3.exceptions.NewConnectionError": (502, CONNECTION),
    "urllib3.exceptions.ProtocolError": (502, PROTOCOL),
    "aiohttp.client_exceptions.ClientConnectionError": (502, CONNECTION),
    "aiohttp.client_exceptions.ClientPayloadError": (502, PROTOCOL),
    "aiohttp.http_exceptions.HttpProcessingError": (502, PROTOCOL),
    # raise_for_status() on an upstream answer: only 5xx counts.
    "httpx.HTTPStatusError": (None, UPSTREAM_STATUS),
    "requests.exceptions.HTTPError": (None, UPSTREAM_STATUS),
    "aiohttp.client_exceptions.ClientResponseError": (None, UPSTREAM_STATUS),
    # gRPC: the status code decides.
    "grpc.RpcError": (None, GRPC),
}

# A rule that says "not an upstream failure": it ends the search for the whole chain.
_EXCLUDED: Final[tuple[int | None, str]] = (None, "excluded")
_CHAIN_LIMIT: Final = 16
_CACHE_LIMIT: Final = 2048


def class_path(cls: type) -> str:
    """``module.QualName`` of a class, as the rules name it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _loaded(path: str) -> type | None:
    """The class at ``path`` if its module is imported already (never imports one)."""
    module_name, _, name = path.rpartition(".")
    module = sys.modules.get(module_name)
    found = getattr(module, name, None) if module is not None else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def upstream_classes(
    overrides: Mapping[type[BaseException] | str, int | None] | None = None,
) -> list[type[BaseException]]:
    """The exception classes the rules name, as far as they exist in this process now.

    For frameworks that dispatch errors by class (Flask's error handlers): the built-in
    rules whose module is imported (``builtins`` and ``http.client`` always are, after
    this call), and the classes ``Config.exceptions`` counts as upstream failures.
    Classes of client libraries imported later are not in it: a framework falls back to
    its unhandled-exception path for those.
    """
    import http.client  # noqa: F401  (cheap, stdlib: its HTTPException is a rule)

    excluded = {
        key if isinstance(key, str) else class_path(key)
        for key, status in (overrides or {}).items()
        if status is None
    }
    found: list[type[BaseException]] = []
    for path in BUILTIN_RULES:
        cls = _loaded(path)
        if cls is not None and path not in excluded and cls not in found:
            found.append(cls)
    for key, status in (overrides or {}).items():
        cls = key if isinstance(key, type) else _loaded(key)
        if status is not None and cls is not None and cls not in found:
            found.append(cls)
    return found


def _attr(obj: object, *names: str) -> object:
    for name in names:
        try:
            obj = getattr(obj, name, None)
        except Exception:  # a property that raises something other than AttributeError
            return None
        if obj is None:
            return None
    return obj


def _upstream_status(exc: BaseException) -> int | None:
    """The status an upstream answered with, for raise-for-status errors and UpstreamError."""
    if isinstance(exc, UpstreamError):
        return exc.status
    for path in (("response", "status_code"), ("status",)):
        code = _attr(exc, *path)
        if isinstance(code, int) and not isinstance(code, bool):
            if code >= 500:
                return 504 if code == 504 else 502
            return None
    return None


def _grpc_status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    try:
        name = getattr(code(), "name", None) if callable(code) else None
    except Exception:
        return None
    return (
        {"DEADLINE_EXCEEDED": 504, "UNAVAILABLE": 502}.get(name) if isinstance(name, str) else None
    )


def _upstream_host(exc: BaseException) -> str | None:
    if isinstance(exc, UpstreamError):
        return exc.upstream
    if _attr(exc, "request") is None and _attr(exc, "request_info") is None:
        return None  # most exceptions: nothing that names the upstream
    for path in (("request", "url", "host"), ("request", "url"), ("request_info", "url", "host")):
        value = _attr(exc, *path)
        if isinstance(value, str) and value:
            return value.split("://", 1)[-1].split("/", 1)[0][:200]
        if value is not None and not isinstance(value, str):
            text = str(value)
            if text:
                return text.split("://", 1)[-1].split("/", 1)[0][:200]
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, then what caused it, then what it happened during, without loops."""
    if (
        exc.__cause__ is None
        and (exc.__context__ is None or exc.__suppress_context__)
        and getattr(exc, "reason", None) is None
    ):
        return [exc]  # the usual case: one exception, nothing behind it
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < _CHAIN_LIMIT:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        # ``raise X from None`` hides the context, as it does for tracebacks and Sentry.
        context = None if current.__suppress_context__ else current.__context__
        links = [current.__cause__, context, getattr(current, "reason", None)]
        todo.extend(link for link in links if isinstance(link, BaseException))
    return seen


class Classifier:
    """Maps exceptions to :class:`Failure`; built once per middleware."""

    def __init__(self, overrides: Mapping[type[BaseException] | str, int | None] | None = None):
        rules: dict[str, tuple[int | None, str] | None] = dict(BUILTIN_RULES)
        for key, status in (overrides or {}).items():
            path = key if isinstance(key, str) else class_path(key)
            rules[path] = _EXCLUDED if status is None else (status, "configured")
        self._rules = rules
        self._by_class: dict[type, tuple[int | None, str] | None] = {}
        self._paths: dict[type, str] = {}

    def _rule(self, cls: type) -> tuple[int | None, str] | None:
        try:
            return self._by_class[cls]
        except KeyError:
            pass
        found: tuple[int | None, str] | None = None
        for klass in cls.__mro__:
            path = class_path(klass)
            if path in self._rules:
                found = self._rules[path]
                break
        if len(self._by_class) < _CACHE_LIMIT:
            self._by_class[cls] = found
        return found

    def _path(self, cls: type) -> str:
        path = self._paths.get(cls)
        if path is None:
            path = class_path(cls)
            if len(self._paths) < _CACHE_LIMIT:
                self._paths[cls] = path
        return path

    def classify(self, exc: BaseException) -> Failure | None:
        """The upstream failure this exception stands for, or None if it is not one."""
        for link in _chain(exc):
            rule = self._rule(type(link))
            if rule is None:
                continue
            if rule is _EXCLUDED:
                return None
            status, cause = rule
            if status is None:
                resolve: Callable[[BaseException], int | None] = (
                    _grpc_status if cause == GRPC else _upstream_status
                )
                status = resolve(link)
                if status is None:
                    continue
            if cause == GRPC:
                cause = TIMEOUT if status == 504 else CONNECTION
            detail = link.detail if isinstance(link, UpstreamError) else str(link)
            return Failure(
                status=status,
                cause=cause,
                upstream=_upstream_host(link),
                detail=(detail or None) and detail[:500],
                error_type=self._path(type(link)),
            )
        return None

    @staticmethod
    def app_timeout() -> Failure:
        """The failure ``Config.timeout`` expiring stands for."""
        return _APP_TIMEOUT

    @staticmethod
    def from_status(status: int) -> Failure:
        """The failure an app's own 502/504 response stands for."""
        known = _APP_RESPONSES.get(status)
        if known is not None:
            return known
        return Failure(status=status, cause=APP_RESPONSE, error_type=str(status))


# The failures that carry nothing of a request: made once, shared (read-only).
_APP_TIMEOUT: Final = Failure(status=504, cause=APP_TIMEOUT, error_type="gracefail.timeout")
_APP_RESPONSES: Final = {
    code: Failure(status=code, cause=APP_RESPONSE, error_type=str(code)) for code in (502, 504)
}
