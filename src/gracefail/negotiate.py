"""Which reply a client gets (HTML page, problem+json, text), in which language, and
in which content coding (brotli, gzip or none)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, Literal

__all__ = [
    "CODINGS",
    "Kind",
    "accepted_encoding",
    "accepted_encodings",
    "language_key",
    "negotiate_kind",
    "negotiate_locale",
    "parse_accept",
]

Kind = Literal["html", "json", "text"]

_HTML: Final = ("text/html", "application/xhtml+xml")
_JSON: Final = ("application/problem+json", "application/json")
_TEXT: Final = ("text/plain",)
_MAX_ITEMS: Final = 32
# What is read of a header: a client may send megabytes, and a failing request must not
# cost more to answer than a healthy one. Browsers send well under 200 characters.
_MAX_ACCEPT: Final = 1024
MAX_LANGUAGE: Final = 256
# The content codings gracefail's bodies come in, preferred first on equal q.
CODINGS: Final = ("br", "gzip")
_CODING_ALIASES: Final = {"x-gzip": "gzip"}
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_ENCODING_CACHE: Final = 256
_encodings: dict[str, tuple[str, ...]] = {}


def _whole_items(value: str, limit: int) -> str:
    """``value`` if it has at most ``limit`` characters, else its whole items within them."""
    if len(value) <= limit:
        return value
    cut = value[: limit + 1]
    return cut[: max(cut.rfind(","), 0)]


def parse_accept(value: str) -> list[tuple[str, float, int]]:
    """``Accept``-style header -> [(token, q, position)], ignoring malformed parts.

    Reads at most the whole items within the first 1,024 characters, and 32 of them.
    """
    items: list[tuple[str, float, int]] = []
    parts = _whole_items(value, _MAX_ACCEPT).split(",", _MAX_ITEMS)[:_MAX_ITEMS]
    for position, part in enumerate(parts):
        token, _, params = part.partition(";")
        token = token.strip().lower()
        if not token:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(raw.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        items.append((token, q, position))
    return items


def _score(
    accepted: Sequence[tuple[str, float, int]], types: Sequence[str]
) -> tuple[float, int, int]:
    """(q, specificity, -position) of the most specific range matching any of ``types``."""
    best = (0.0, -1, 0)
    for candidate in types:
        major = candidate.split("/", 1)[0] + "/*"
        for token, q, position in accepted:
            if token == candidate:
                spec = 2
            elif token == major:
                spec = 1
            elif token == "*/*" or (candidate.endswith("json") and token == "application/*+json"):
                spec = 0
            else:
                continue
            if (spec, q) > (best[1], best[0]) or (
                spec == best[1] and q == best[0] and -position > best[2]
            ):
                best = (q, spec, -position)
    return best


def negotiate_kind(headers: Mapping[str, str]) -> Kind:
    """Pick the reply format from ``Accept``, ``Sec-Fetch-*`` and ``X-Requested-With``.

    ``headers`` has lower-case names. A navigation gets the page; scripts get JSON;
    anything that states no preference (curl's ``*/*``) gets plain text.
    """
    mode = headers.get("sec-fetch-mode", "")
    if mode == "navigate" or headers.get("sec-fetch-dest", "") in ("document", "iframe"):
        return "html"
    scripted = headers.get("x-requested-with", "").lower() == "xmlhttprequest" or mode in (
        "cors",
        "same-origin",
        "no-cors",
    )
    accept = headers.get("accept", "")
    if len(accept) <= _MAX_CACHED_ACCEPT:
        # Clients send a handful of distinct Accept headers (each browser its own): the
        # outcome is remembered per (header, scripted), in a bounded table.
        key = (accept, scripted)
        kind = _KINDS.get(key)
        if kind is None:
            kind = _kind(accept, scripted)
            if len(_KINDS) >= _KIND_CACHE:
                _KINDS.clear()
            _KINDS[key] = kind
        return kind
    return _kind(accept, scripted)


_KINDS: dict[tuple[str, bool], Kind] = {}
_KIND_CACHE: Final = 256
_MAX_CACHED_ACCEPT: Final = 512


def _kind(accept: str, scripted: bool) -> Kind:
    """The format ``Accept`` picks (see :func:`negotiate_kind`)."""
    if not accept.strip():
        return "json" if scripted else "text"
    accepted = parse_accept(accept)
    scores = {
        "html": _score(accepted, _HTML),
        "json": _score(accepted, _JSON),
        "text": _score(accepted, _TEXT),
    }
    # On a full tie (say ``text/*``) prefer plain text, then JSON: the page is for clients
    # that ask for HTML by name, as every browser does.
    plainness = {"text": 2, "json": 1, "html": 0}
    ranked = sorted(scores.items(), key=lambda item: (*item[1], plainness[item[0]]), reverse=True)
    kind, (q, spec, _) = ranked[0]
    if q <= 0.0:
        return "json" if scripted else "text"
    if spec == 0:
        # Only a wildcard matched: the client has no preference.
        return "json" if scripted else "text"
    if scripted and kind == "html" and scores["json"][0] > 0.0:
        return "json"
    return kind  # type: ignore[return-value]


def language_key(header: str | None) -> str:
    """The part of an ``Accept-Language`` header that negotiation reads, normalised.

    At most ``MAX_LANGUAGE`` characters (cut after the last whole item), lower-case,
    without whitespace. :func:`negotiate_locale` reads only this, so two headers with
    one key get one locale: a cache keyed on it is exact and its keys are bounded.
    """
    if not header:
        return ""
    return "".join(_whole_items(header, MAX_LANGUAGE).split()).lower()


def negotiate_locale(header: str | None, available: Sequence[str], default: str) -> str:
    """Best locale in ``available`` for an ``Accept-Language`` header, else ``default``.

    Matches exactly first, then by language (``pt`` -> ``pt-BR``); Chinese maps to
    ``zh-Hans`` only for Simplified-script regions. Reads only :func:`language_key`.
    """
    header = language_key(header)
    if not header:
        return default
    lowered = {name.lower(): name for name in available}
    by_language: dict[str, str] = {}
    for name in available:
        by_language.setdefault(name.split("-", 1)[0].lower(), name)
    ranked = sorted(parse_accept(header), key=lambda item: (-item[1], item[2]))
    for token, q, _ in ranked:
        if q <= 0.0 or token == "*":
            continue
        if token in lowered:
            return lowered[token]
        language, _, region = token.partition("-")
        if language == "zh":
            if region in ("", "cn", "sg", "hans", "hans-cn", "my") and "zh-hans" in lowered:
                return lowered["zh-hans"]
            continue
        if language in by_language:
            return by_language[language]
    return default


def accepted_encodings(header: str | None) -> tuple[str, ...]:
    """The codings of ``CODINGS`` an ``Accept-Encoding`` header takes, preferred first.

    By q-value (RFC 9110, 12.5.3), brotli before gzip on equal q; ``*`` stands for a
    coding not named; q=0 refuses one; ``identity`` with a higher q than every coding it
    takes, or no header, or an empty or malformed one, gives ``()`` (the body as it is).
    Reads at most the first 1,024 characters; results are cached per header value (the
    cache is cleared when it holds 256), so a browser's header costs one dict lookup.
    """
    if not header:
        return ()
    if len(header) > _MAX_ACCEPT + 1:
        header = header[: _MAX_ACCEPT + 1]  # all that parse_accept reads
    found = _encodings.get(header)
    if found is None:
        found = _accepted_encodings(header)
        if len(_encodings) >= _ENCODING_CACHE:
            _encodings.clear()
        _encodings[header] = found
    return found


def accepted_encoding(header: str | None) -> str | None:
    """The coding of ``CODINGS`` an ``Accept-Encoding`` header prefers, or None."""
    found = accepted_encodings(header)
    return found[0] if found else None


def _accepted_encodings(header: str) -> tuple[str, ...]:
    items = parse_accept(header)
    if not items or any(not _TOKEN.fullmatch(token) for token, _, _ in items):
        return ()
    named: dict[str, float] = {}
    for token, q, _ in items:
        token = _CODING_ALIASES.get(token, token)
        named[token] = max(q, named.get(token, 0.0))
    anything = named.get("*")
    scores = {coding: named.get(coding, anything or 0.0) for coding in CODINGS}
    identity = named.get("identity")
    best = max(scores.values())
    if best <= 0.0 or (identity is not None and identity > best):
        return ()
    ranked = sorted(
        (coding for coding in CODINGS if scores[coding] > 0.0),
        key=lambda coding: -scores[coding],  # stable: CODINGS' order on a tie
    )
    return tuple(ranked)
