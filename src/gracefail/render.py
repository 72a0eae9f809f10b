"""Turn a Failure into a reply body: the branded page, problem+json, or plain text.

Jinja2 runs once per variant (status x locale x safe/unsafe method), at the variant's
first use (``strict``: all at start-up), with placeholders where per-request values go;
a request only splices its incident id, token and URL into the prepared text, each
escaped for where it lands. The sentence that says what happened is one of a few per
variant (one per kind of cause), so it is set into the text before the first reply.

Bodies are also served gzip- and (with the ``brotli`` package) brotli-encoded without
compressing anything per request: each constant stretch between two per-request values
is compressed once, on its first use, and a request only frames its own values as
uncompressed blocks between them (see :class:`Prepared`).

``Config.messages`` gives some routes words of their own: each route has its own set of
variants, so a request only looks its path up (a dict, then a few compiled patterns) to
pick the set it fills.

The URL is echoed once, in the manual retry link, and only up to ``MAX_ECHOED_URL``
characters: a client must not make the page grow with its request. The script needs
no copy (it retries ``location``).
"""

from __future__ import annotations

import array
import base64
import functools
import hashlib
import html
import importlib
import json
import logging
import operator
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from .classify import CONNECTION, Failure
from .config import LOCALES, Config, ConfigError
from .locales import LocaleError, Wording
from .locales import load as load_wording
from .minify import minified
from .negotiate import CODINGS, Kind

if TYPE_CHECKING:
    import jinja2  # imported when a template is first compiled: 30-100 ms

__all__ = [
    "MAX_ECHOED_URL",
    "MINIMAL_PAGE",
    "PAGE_BUDGET",
    "PageBody",
    "Renderer",
    "ThemeError",
    "Variants",
    "script_ids",
    "what_happened",
]

log = logging.getLogger("gracefail")

PAGE_BUDGET: Final = 16 * 1024
# The most of the request's URL (escaped) the page carries. A longer one is not echoed:
# the retry link is then href="", which a browser resolves to the page's own URL, the
# same one (the page is served at the URL that failed).
MAX_ECHOED_URL: Final = 2048
NOSCRIPT_REFRESH: Final = 30
TIPS_AFTER: Final = 3
REASONS: Final = {502: "Bad Gateway", 504: "Gateway Timeout"}

# What the page says happened is the cause's, not the status's: "got a bad answer" is wrong
# when the connection was refused. Three stories, each a locale key "explain_<story>":
#   unreachable  the service could not be reached (refused, reset, no route, DNS)
#   bad_answer   it answered, but not usably (protocol error, its own 5xx, UpstreamError)
#   timeout      it did not answer in time (every 504)
# A 502 whose cause is not known here (an app's own 502, a Config.exceptions mapping) is a
# bad answer: that is what 502 means. Besides the classifier's "connection", the causes of
# the app process itself being down: "proxy" (the pages `gracefail export` writes for a
# proxy's error_page) and gateway.CAUSES' "app_unreachable" and "app_unavailable" (a 503).
UNREACHABLE_CAUSES: Final = frozenset((CONNECTION, "proxy", "app_unreachable", "app_unavailable"))
STORIES: Final = {502: ("unreachable", "bad_answer"), 504: ("timeout",), 503: ("busy",)}
# The busy page (503, cause "overload"): a request shed because the app is over capacity
# (gracefail.overload), not an upstream failure. Its variants are kept apart from the
# 502/504 ones (``Variants.busy_*``): rendered at their first shed request. They tell
# their own story with their own words: each key on the left is read from the one on
# the right, so a theme's template, which says ``t.heading``, shows the busy heading.
BUSY_STATUS: Final = 503
BUSY_CAUSE: Final = "overload"  # only a shed request tells this story: another 503 fails
BUSY_REASON: Final = "Service Unavailable"
BUSY_WORDS: Final = {
    "heading": "overload_heading",
    "heading_unsafe": "overload_heading_unsafe",
    "next_safe": "overload_next_safe",
    "next_unsafe": "overload_next_unsafe",
    "tip_wait": "overload_tip_wait",
    "tip_no_resubmit": "overload_tip_resend",
    "js_service_back": "overload_js_service_back",
}

# Placeholders: private-use characters that no template filter or escaper touches.
_INCIDENT: Final = "\ue000incident\ue001"
_TOKEN: Final = "\ue000token\ue001"
_URL_ATTR: Final = "\ue000url-attr\ue001"
_DETAIL: Final = "\ue000detail\ue001"
_EXPLAIN: Final = "\ue000explain\ue001"
_SLOT: Final = re.compile("(\ue000[a-z-]+\ue001)")

MINIMAL_PAGE: Final = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Temporarily unavailable</title>"
    "<h1>Temporarily unavailable</h1><p>A service this site depends on is not answering. "
    "This is not your fault; please try again in a minute.</p>"
)

_SCRIPT_BLOCK: Final = re.compile(
    r"<script(?![^>]*application/json)[^>]*>(.*?)</script>", re.S | re.I
)
_STYLE_BLOCK: Final = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
_ELEMENT_ID: Final = re.compile(r"""\sid\s*=\s*["']?(gf-[A-Za-z0-9_-]+)""")
# How recover.js looks its elements up; script_ids() reads them from the script itself,
# so the check below never lags behind it.
_SCRIPT_LOOKUP: Final = re.compile(
    r"""(?:byId|getElementById)\(\s*["'](gf-[A-Za-z0-9_-]+)["']\s*\)"""
    r"""|querySelector(?:All)?\(\s*["']#(gf-[A-Za-z0-9_-]+)["']\s*\)"""
)
# A route's parameters: Starlette's {name} / {name:path}, Flask's and Django's <name> /
# <path:name>. A "path" parameter spans slashes; any other one segment.
_ROUTE_PARAM: Final = re.compile(r"\{([^{}/]+)\}|<([^<>/]+)>")

Key = tuple[int, str, bool]
V = TypeVar("V")


class ThemeError(ConfigError):
    """A template renders but breaks what the page's script and CSP rely on.

    Raised at start-up (and by ``gracefail check``), never answered with the built-in
    page: the theme is the deployer's to fix, and the message names what it lacks.
    """


def script_ids(source: str) -> frozenset[str]:
    """The ids of the elements the recovery script ``source`` looks up."""
    return frozenset(a or b for a, b in _SCRIPT_LOOKUP.findall(source))


class Slotted:
    """Text with placeholders, split once so filling it is a join."""

    __slots__ = ("_bparts", "_parts", "_slots")

    def __init__(self, text: str):
        pieces = _SLOT.split(text)
        self._parts = pieces[0::2]
        self._slots = pieces[1::2]
        self._bparts = [part.encode() for part in self._parts]

    @property
    def slots(self) -> frozenset[str]:
        return frozenset(self._slots)

    def fill_bytes(self, values: Mapping[str, str]) -> bytes:
        """``fill(values).encode()``, without encoding the constant parts again."""
        parts = self._bparts
        out = [parts[0]]
        for index, slot in enumerate(self._slots, 1):
            out.append(values[slot].encode())
            out.append(parts[index])
        return b"".join(out)

    def fill(self, values: Mapping[str, str]) -> str:
        parts = self._parts
        out = [parts[0]]
        for index, slot in enumerate(self._slots, 1):
            out.append(values[slot])
            out.append(parts[index])
        return "".join(out)


# -- encoded bodies ---------------------------------------------------------------------
#
# A reply body is constant text with per-request values (URL, incident id, token, debug
# detail) between. Encoding one per request would cost far more than building it, so the
# constant stretches are compressed once, each on its own, and a request frames its values
# as uncompressed blocks between them; every step is byte-aligned in both formats.
#
# gzip (RFC 1952/1951): each stretch is a raw deflate stream of its own (no reference
# reaches outside it, since the values before it vary in length), ended by a sync flush
# whose empty stored block's LEN/NLEN are cut off: a request's values follow as that
# stored block's contents (split at 65,535 bytes), then the next stretch; the last one is
# finished with the final block. The trailer's CRC-32 is combined from each stretch's
# precomputed effect on a running CRC (a linear map, applied through four byte tables)
# and the values' own CRC, so no constant byte is read per request.
#
# brotli (RFC 7932): one compressor runs over the whole body, flushed (byte-aligned) at
# every boundary. Where values go, the stream carries an uncompressed meta-block written
# here: the values, then the first two bytes of the next stretch (a decoder's literal
# context is the last two bytes; these are the compressor's too). The compressor is fed,
# in their place, filler as long as its sliding window (its output is dropped): made of
# bytes the body never contains, with no two-byte sequence twice, it gives no match, so
# (a) no reference of a later stretch can reach the values or anything before them, (b)
# the distance cache is what the decoder has, and (c) the position is past the window in
# both, where a dictionary reference's meaning no longer depends on it. That needs the
# first stretch to fill the window too; a body whose first value comes earlier (a theme)
# is served gzip-encoded instead. Each result is decoded once when built, as a check.

GZIP: Final = "gzip"
BROTLI: Final = "br"
# The values a request supplies, in this order (absent ones are b"").
VALUE_SLOTS: Final = (_URL_ATTR, _INCIDENT, _TOKEN, _DETAIL)
# A constant stretch shorter than this between two values travels uncompressed with them:
# compressed on its own it would save a few hundred bytes at most, and cost a block
# (about half a microsecond) per request. The page's stretches between its retry link,
# its incident and its token are 100 to 400 bytes: measured, 4% more bytes, 1.4 us less.
MIN_STRETCH: Final = 512
# mtime 0 (none), XFL 2 (best compression), OS 255 (unknown).
_GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
_GZIP_END: Final = b"\x03\x00"  # an empty final block (fixed Huffman codes)
_STORED_MAX: Final = 0xFFFF
_BROTLI_QUALITY: Final = 11
_BROTLI_LGWIN: Final = 10
_BROTLI_WINDOW: Final = (1 << _BROTLI_LGWIN) - 16
_BROTLI_END: Final = b"\x03"  # ISLAST, ISLASTEMPTY
_BROTLI_STORED_MAX: Final = 1 << 16
# Bytes that UTF-8 text never has (0xC0, 0xC1, 0xF5-0xFF) or that a page has no use for
# (C0 controls but tab, LF and CR; DEL): the filler's alphabet.
_FILLER_BYTES: Final = bytes(
    [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC0, 0xC1, *range(0xF5, 0x100)]
)


_brotli: Any = False  # not looked for yet


def brotli_module() -> Any:
    """The ``brotli`` module (the ``gracefail[brotli]`` extra), or None if not installed.

    Imported at the first brotli-encoded body, not with gracefail."""
    global _brotli
    if _brotli is False:
        try:
            _brotli = importlib.import_module("brotli")
        except ImportError:
            _brotli = None
    return _brotli


def _debruijn_pairs(alphabet: bytes) -> bytes:
    """A sequence over ``alphabet`` holding every ordered pair of its bytes exactly once."""
    k = len(alphabet)
    # Every pair exactly once: an Eulerian circuit of the complete digraph with loops.
    # Hierholzer's algorithm, iterative; start and end at symbol 0.
    edges = {node: list(range(k - 1, -1, -1)) for node in range(k)}
    stack, circuit = [0], []
    while stack:
        node = stack[-1]
        if edges[node]:
            stack.append(edges[node].pop())
        else:
            circuit.append(stack.pop())
    return bytes(alphabet[index] for index in reversed(circuit))


@functools.cache
def _filler(absent: bytes) -> bytes | None:
    """Filler for the brotli window out of the bytes in ``absent``, or None if too few."""
    sequence = _debruijn_pairs(absent)
    return sequence[:_BROTLI_WINDOW] if len(sequence) >= _BROTLI_WINDOW else None


def _stored(data: bytes) -> list[bytes]:
    """``data`` as the contents of the open stored block and any further ones (deflate)."""
    size = len(data)
    if size <= _STORED_MAX:
        return [(size | (size ^ 0xFFFF) << 16).to_bytes(4, "little"), data]
    out = []
    for start in range(0, size, _STORED_MAX):
        chunk = data[start : start + _STORED_MAX]
        n = len(chunk)
        if start:
            out.append(b"\x00")  # BFINAL 0, BTYPE 00 (stored), padded to the byte
        out += [(n | (n ^ 0xFFFF) << 16).to_bytes(4, "little"), chunk]
    return out


def _brotli_stored(data: bytes) -> list[bytes]:
    """``data`` as uncompressed meta-blocks (ISLAST 0, MNIBBLES 4, ISUNCOMPRESSED 1)."""
    out = []
    for start in range(0, len(data), _BROTLI_STORED_MAX):
        chunk = data[start : start + _BROTLI_STORED_MAX]
        header = (len(chunk) - 1) << 3 | 1 << 19  # ISLAST 0, MNIBBLES-4 = 0, MLEN-1, 1
        out += [header.to_bytes(3, "little"), chunk]
    return out


def _crc_tables(size: int) -> array.array[int]:
    """How ``size`` constant bytes turn a running CRC-32: ``crc32(data, crc)`` is
    ``T[crc & 255] ^ T[256 + (crc >> 8 & 255)] ^ T[512 + (crc >> 16 & 255)] ^
    T[768 + (crc >> 24)] ^ crc32(data)``, the part in ``crc`` being linear and depending
    only on the length."""
    zeros = bytes(size)
    base = zlib.crc32(zeros)
    basis = [zlib.crc32(zeros, 1 << bit) ^ base for bit in range(32)]
    table = array.array("I", bytes(4 * 1024))
    for byte in range(4):
        offset = 256 * byte
        for value in range(1, 256):
            low = value & -value
            table[offset + value] = (
                table[offset + (value ^ low)] ^ basis[8 * byte + low.bit_length() - 1]
            )
    return table


def _deflate(data: bytes, last: bool) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    if last:
        return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)
    flushed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    # The sync flush ends with an empty stored block: 3 header bits, padding, then
    # 00 00 FF FF. Cut after the padding: the values become that block's contents.
    assert flushed.endswith(b"\x00\x00\xff\xff")
    return flushed[:-4]


# Picks a run's pieces out of values + constants, always as a tuple.
Picker = Callable[[tuple[bytes, ...]], tuple[bytes, ...]]
# One run of values and the stretch after it: (its picker, the stretch deflated (or the
# end), the stretch's CRC tables, crc32 of the stretch alone).
_GzipStep = tuple[Picker, bytes, "array.array[int]", int]


def _picker(order: Sequence[int], blank: int) -> Picker:
    """``lambda pieces: tuple(pieces[i] for i in order)``, in C (``blank``: a b"" piece)."""
    picker: Picker = operator.itemgetter(*order, *[blank] * (2 - len(order)))
    return picker


@dataclass(frozen=True, slots=True)
class _GzipPlan:
    head: bytes
    crc: int
    size: int  # the constant stretches' length
    constants: tuple[bytes, ...]
    steps: tuple[_GzipStep, ...]


@dataclass(frozen=True, slots=True)
class _BrotliPlan:
    head: bytes
    constants: tuple[bytes, ...]
    steps: tuple[tuple[Picker, bytes], ...]


class Prepared:
    """One reply body ready to fill: per (variant, cause), with its sentence in place.

    ``fill`` joins the request's values (see ``VALUE_SLOTS``) with the constant text;
    ``encode`` does the same into a gzip or brotli stream whose constant parts were
    compressed on first use. Thread-safe enough: two threads preparing the same encoding
    at once build the same thing, and either result is kept.
    """

    __slots__ = (
        "_br",
        "_br_ready",
        "_constants",
        "_gzip",
        "_gzip_ready",
        "_layout",
        "_pick",
        "content_type",
        "csp",
    )

    def __init__(
        self, text: str, content_type: str = "text/html; charset=utf-8", csp: str | None = None
    ):
        self.content_type = content_type
        self.csp = csp
        pieces = _SLOT.split(text)
        parts: list[str] = [pieces[0]]
        slots: list[int] = []
        for slot, part in zip(pieces[1::2], pieces[2::2], strict=True):
            if slot in VALUE_SLOTS:
                slots.append(VALUE_SLOTS.index(slot))
                parts.append(part)
            else:  # not ours (a theme's own private-use text): kept as it is
                parts[-1] += slot + part
        encoded = tuple(part.encode() for part in parts)
        values = len(VALUE_SLOTS)
        order = [values]
        for index, slot in enumerate(slots, 1):
            order += [slot, values + index]
        self._constants = (*encoded, b"")  # the last: a blank for pickers
        self._pick = _picker(
            [index for index in order if index < values or encoded[index - values]],
            values + len(encoded),
        )
        # head, then (run of value/constant indices, the next long stretch) pairs.
        run: list[int] = []
        head = encoded[0]
        stretches: list[tuple[tuple[int, ...], bytes]] = []
        if slots and len(head) < MIN_STRETCH:
            run, head = ([values] if head else []), b""
        for index, slot in enumerate(slots, 1):
            run.append(slot)
            part = encoded[index]
            if len(part) >= MIN_STRETCH:
                stretches.append((tuple(run), part))
                run = []
            elif part:
                run.append(values + index)
        if run:
            stretches.append((tuple(run), b""))
        self._layout = (head, tuple(stretches))
        self._gzip: _GzipPlan | None = None
        self._gzip_ready = False
        self._br: _BrotliPlan | None = None
        self._br_ready = False

    def fill(self, values: tuple[bytes, ...]) -> bytes:
        """The body with ``values`` (bytes, in ``VALUE_SLOTS`` order) in place."""
        return b"".join(self._pick(values + self._constants))

    def encode(
        self, values: tuple[bytes, ...], accepted: Iterable[str]
    ) -> tuple[bytes, str | None]:
        """(body, content coding) in the first of ``accepted`` this body has, else as is."""
        for coding in accepted:
            if coding == BROTLI:
                plan = self._br if self._br_ready else self._build_br()
                if plan is not None:
                    return _brotli_body(plan, values), BROTLI
            elif coding == GZIP:
                gzip = self._gzip if self._gzip_ready else self._build_gzip()
                if gzip is not None:
                    return _gzip_body(gzip, values), GZIP
        return self.fill(values), None

    def _sample(self) -> tuple[bytes, ...]:
        return (b"/a/path?with=query", b"0123456789abcdef", b"t" * 48, b"")

    def _build_gzip(self) -> _GzipPlan | None:
        head, stretches = self._layout
        constants = self._constants
        blank = len(VALUE_SLOTS) + len(constants) - 1
        steps: list[_GzipStep] = []
        size = len(head)
        for number, (order, stretch) in enumerate(stretches, 1):
            size += len(stretch)
            data = _deflate(stretch, number == len(stretches)) if stretch else _GZIP_END
            table = _crc_tables(len(stretch))
            steps.append((_picker(order, blank), data, table, zlib.crc32(stretch)))
        if not stretches:
            start = _deflate(head, last=True)
        elif head:
            start = _deflate(head, last=False)
        else:
            start = b"\x00"  # a stored block's header, padded: the first run follows
        plan: _GzipPlan | None = _GzipPlan(
            _GZIP_HEADER + start, zlib.crc32(head), size, constants, tuple(steps)
        )
        assert plan is not None
        sample = self._sample()
        body = _gzip_body(plan, sample)
        if zlib.decompress(body, 31) != self.fill(sample):  # pragma: no cover - a bug
            log.error("gracefail: a gzip body did not decode to the page; serving it as is")
            plan = None
        elif len(body) >= len(self.fill(sample)):
            plan = None  # too small to gain anything
        self._gzip, self._gzip_ready = plan, True
        return plan

    def _build_br(self) -> _BrotliPlan | None:
        plan = self._brotli_plan()
        self._br, self._br_ready = plan, True
        return plan

    def _brotli_plan(self) -> _BrotliPlan | None:
        brotli = brotli_module()
        if brotli is None:
            return None
        head, stretches = self._layout
        if stretches and len(head) < _BROTLI_WINDOW:
            return None  # a value comes too early: its length would shift the window
        text = b"".join(self._constants)
        filler = _filler(bytes(byte for byte in _FILLER_BYTES if byte not in text))
        if filler is None:
            return None
        compressor = brotli.Compressor(quality=_BROTLI_QUALITY, lgwin=_BROTLI_LGWIN)
        if not stretches:
            start = compressor.process(head) + compressor.finish()
        else:
            start = compressor.process(head) + compressor.flush()
        # The constants, then each stretch's first two bytes (the runs end with them).
        constants = [*self._constants, *(stretch[:2] for _, stretch in stretches if stretch)]
        blank = len(VALUE_SLOTS) + len(self._constants) - 1
        lead_index = blank + 1
        steps = []
        for number, (order, stretch) in enumerate(stretches, 1):
            if not stretch:
                steps.append((_picker(order, blank), _BROTLI_END))
                continue
            compressor.process(filler + stretch[:2])
            compressor.flush()  # dropped: the request's values take its place
            data = compressor.process(stretch[2:])
            data += compressor.finish() if number == len(stretches) else compressor.flush()
            steps.append((_picker((*order, lead_index), blank), data))
            lead_index += 1
        plan: _BrotliPlan | None = _BrotliPlan(start, tuple(constants), tuple(steps))
        assert plan is not None
        for sample in (self._sample(), (b"", b"x", b"", b"y" * 300)):
            try:
                decoded = brotli.decompress(_brotli_body(plan, sample))
            except brotli.error:  # pragma: no cover - a bug
                decoded = None
            if decoded != self.fill(sample):  # pragma: no cover - a bug
                log.error("gracefail: a brotli body did not decode to the page; not using brotli")
                return None
        if len(_brotli_body(plan, self._sample())) >= len(self.fill(self._sample())):
            return None
        return plan


def _gzip_body(plan: _GzipPlan, values: tuple[bytes, ...]) -> bytes:
    pieces = values + plan.constants
    out = [plan.head]
    crc = plan.crc
    size = plan.size
    crc32 = zlib.crc32
    for pick, deflated, table, stretch_crc in plan.steps:
        data = b"".join(pick(pieces))
        length = len(data)
        size += length
        if length <= _STORED_MAX:  # the open stored block's LEN and NLEN, then the data
            out += [(length | (length ^ 0xFFFF) << 16).to_bytes(4, "little"), data, deflated]
        else:
            out += [*_stored(data), deflated]
        crc = crc32(data, crc)
        crc = (
            table[crc & 255]
            ^ table[256 | crc >> 8 & 255]
            ^ table[512 | crc >> 16 & 255]
            ^ table[768 | crc >> 24]
            ^ stretch_crc
        )
    out.append((crc | (size & 0xFFFFFFFF) << 32).to_bytes(8, "little"))
    return b"".join(out)


def _brotli_body(plan: _BrotliPlan, values: tuple[bytes, ...]) -> bytes:
    pieces = values + plan.constants
    out = [plan.head]
    for pick, data in plan.steps:
        run = b"".join(pick(pieces))
        size = len(run)
        if 0 < size <= _BROTLI_STORED_MAX:
            # ISLAST 0, MNIBBLES 4 (written 0), MLEN - 1, ISUNCOMPRESSED 1; to the byte.
            out += [((size - 1) << 3 | 1 << 19).to_bytes(3, "little"), run]
        elif run:
            out += _brotli_stored(run)
        out.append(data)
    return b"".join(out)


def what_happened(failure: Failure) -> str:
    """The story the reply tells about ``failure``: unreachable, bad_answer, timeout, or
    busy (a 503: the request was shed under load)."""
    if failure.status == 504:
        return "timeout"
    if failure.status == BUSY_STATUS and failure.cause == BUSY_CAUSE:
        return "busy"
    return "unreachable" if failure.cause in UNREACHABLE_CAUSES else "bad_answer"


@dataclass(frozen=True, slots=True)
class Explanation:
    """One locale's sentence for one story, escaped once for each kind of reply."""

    html: str
    json: str
    text: str


@dataclass(frozen=True, slots=True)
class PageBody:
    """One prepared page variant and its Content-Security-Policy."""

    text: Slotted
    csp: str


ReplyKey = tuple[str, int, str, bool, str]  # kind, status, locale, safe, story


class LazyVariants(Mapping[Key, V]):
    """Every variant's key, each value made at its first use (then kept).

    Two threads asking for the same new variant at once may both make it; the first one
    stored is kept and returned to both. ``built`` holds those made so far.
    """

    __slots__ = ("_keys", "_make", "_order", "built")

    def __init__(self, keys: Iterable[Key], make: Callable[[Key], V]):
        self._order = tuple(keys)
        self._keys = frozenset(self._order)
        self._make = make
        self.built: dict[Key, V] = {}

    def __getitem__(self, key: Key) -> V:
        found = self.built.get(key)
        if found is None:
            if key not in self._keys:
                raise KeyError(key)
            found = self.built.setdefault(key, self._make(key))
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[Key]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


@dataclass(frozen=True, slots=True)
class Variants:
    """Every reply one set of strings gives: page, plain text and problem+json per
    (status, locale, safe), each made at its first use, and the sentence of each story
    per (story, locale). ``replies`` caches the bodies requests fill, by
    (kind, status, locale, safe, story); ``shared`` are the locales whose variants are
    the default set's (a ``Config.messages`` route that changes no word in them)."""

    pages: Mapping[Key, PageBody]
    texts: Mapping[Key, Slotted]
    problems: Mapping[Key, Slotted]
    explanations: Mapping[tuple[str, str], Explanation]
    replies: dict[ReplyKey, Prepared] = field(default_factory=dict, compare=False)
    shared: frozenset[str] = frozenset()
    strings: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False)
    busy_pages: Mapping[Key, PageBody] = field(default_factory=dict, compare=False)
    busy_texts: Mapping[Key, Slotted] = field(default_factory=dict, compare=False)
    busy_problems: Mapping[Key, Slotted] = field(default_factory=dict, compare=False)


class Routes:
    """``Config.messages``' routes, matched against a request's path.

    Templates without parameters are one dict lookup; the others are compiled
    patterns tried most specific first (templates before prefixes, longer before
    shorter). A trailing slash does not matter.
    """

    __slots__ = ("_any", "_exact", "_found")

    def __init__(self, routes: Iterable[tuple[str, Variants]]):
        self._exact: dict[str, Variants] = {}
        ranked: list[tuple[tuple[bool, int], str, Variants]] = []
        for route, variants in routes:
            prefix = route.endswith("*")
            base = route.removesuffix("*")
            base = base.rstrip("/") if base != "/" or prefix else base
            if not prefix and not _ROUTE_PARAM.search(base):
                self._exact[base] = variants
                continue
            pattern, literal = [], 0
            last = 0
            for match in _ROUTE_PARAM.finditer(base):
                text = base[last : match.start()]
                pattern.append(re.escape(text))
                literal += len(text)
                name = match[1] or match[2]
                spans = name.endswith(":path") or name.startswith("path:")
                pattern.append(".+" if spans else "[^/]+")
                last = match.end()
            pattern.append(re.escape(base[last:]))
            literal += len(base) - last
            tail = "(?:/.*)?" if prefix else "/?"
            ranked.append(((prefix, -literal), "".join(pattern) + tail, variants))
        ranked.sort(key=lambda entry: entry[0])
        # One pattern for all, its alternatives most specific first: a request costs one
        # match, whose group names the route, however many routes there are.
        self._found = {f"r{index}": variants for index, (_, _, variants) in enumerate(ranked)}
        self._any = (
            re.compile("|".join(f"(?P<r{i}>{p})" for i, (_, p, _) in enumerate(ranked)), re.S)
            if ranked
            else None
        )

    def match(self, url: str) -> Variants | None:
        """The variants for the path of ``url`` (a path and query), or None."""
        path = url.partition("?")[0]
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        found = self._exact.get(path)
        if found is not None or self._any is None:
            return found
        match = self._any.fullmatch(path)
        return self._found[match.lastgroup] if match and match.lastgroup else None


def escape_json_string(value: str) -> str:
    """``value`` as the inside of a JSON string that is safe in a ``<script>`` data block."""
    return script_safe(json.dumps(value, ensure_ascii=False)[1:-1])


def environment(config: Config, *, user: bool) -> jinja2.Environment:
    """The Jinja environment of gracefail's pages: the built-in templates, and before them
    ``config.template_dir`` when ``user`` (a theme)."""
    import jinja2  # here, not on import: only a process that renders a page pays for it

    built_in = jinja2.PackageLoader("gracefail", "templates")
    # "gracefail/base.html" is the name themes extend, the same in a template_dir and
    # in Django's or Flask's template folders (whose gracefail/ folder is template_dir).
    loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"gracefail": built_in}), built_in]
    if user and config.template_dir is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(config.template_dir)))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def page_css(color: str) -> str:
    """page.css as the pages inline it: the accent first, whole-line comments and
    indentation dropped."""
    return _compact_css(f":root{{--gf-accent:{color}}}\n" + _asset("page.css"))


def script_safe(text: str) -> str:
    """JSON text that cannot end or confuse the ``<script>`` data block it sits in."""
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def safe_url(path: str, query: str) -> str:
    """The same-origin URL the page retries; never one a browser reads as another host."""
    url = path if path.startswith("/") else "/" + path
    if url.startswith(("//", "/\\")):
        url = "/." + url
    return f"{url}?{query}" if query else url


def _compact_css(source: str) -> str:
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(
        line for line in lines if line and not (line.startswith("/*") and line.endswith("*/"))
    )


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def load_locales() -> dict[str, dict[str, str]]:
    """Every shipped locale's strings, English filling any gap."""
    return {name: dict(strings) for name, strings in load_wording(LOCALES, None).table.items()}


def _overrides_for(overrides: Mapping[str, str | Mapping[str, str]], locale: str) -> dict[str, str]:
    """A route's words in one locale: plain text is every locale's, a dict gives some."""
    found: dict[str, str] = {}
    for key, text in overrides.items():
        words = text if isinstance(text, str) else text.get(locale)
        if words is not None:
            found[key] = words
    return found


def _asset(name: str) -> str:
    return (resources.files("gracefail") / "assets" / name).read_text("utf-8")


class Renderer:
    """Prepares every reply variant for one Config and fills them per request.

    ``pages`` are the variants of the page without ``Config.messages``; ``routes`` the
    route-specific sets, by route as ``Config.messages`` names them.
    """

    def __init__(self, config: Config, *, strict: bool = False):
        """Load the strings and the template, and check them: a bad locale file, a
        template that does not render or breaks the page's contract fail here. The
        variants themselves are rendered at their first use, or all here if ``strict``
        (``gracefail check``, ``gracefail export``, Django's checks)."""
        self.config = config
        self.strict = strict
        try:
            self.wording: Wording = load_wording(LOCALES, config.template_dir)
        except LocaleError as exc:
            raise ConfigError(str(exc)) from None
        self.locale_names = self.wording.names
        self.locales: Mapping[str, Mapping[str, str]] = self.wording.table
        self.css = page_css(config.brand.color)
        self._script = _asset("recover.js")
        self.script_ids = script_ids(self._script)
        self._connect_src = " ".join(filter(None, ["'self'", _origin(config.status_api_url)]))
        self._debug = config.debug
        self.template_name = "the built-in page"
        self.default: Variants
        self.routes: dict[str, Variants] = {}
        self._routes: Routes | None = None
        self._template: jinja2.Template | None
        self._built_in: jinja2.Template | None = None
        self._checking = True  # a variant that fails to render raises while this is set
        self._prepare()
        self._checking = False

    @property
    def js(self) -> str:
        """The recovery script as the page inlines it (minified at its first use)."""
        return minified("recover.js")

    @property
    def pages(self) -> Mapping[Key, PageBody]:
        """The page's variants for requests no ``Config.messages`` route matches."""
        return self.default.pages

    # -- start-up -----------------------------------------------------------

    def _environment(self, user: bool) -> jinja2.Environment:
        return environment(self.config, user=user)

    def _prepare(self) -> None:
        if self.config.template_dir is None and not self.config.messages and not self.strict:
            # The built-in page with the shipped strings: nothing of the deployer's to check,
            # so even compiling the template waits for the first failure.
            self._use(None)
            return
        try:
            self._use(self._environment(user=True).get_template("page.html"))
        except ConfigError:
            raise  # the theme breaks the page's contract, or a route's words do not fit
        except Exception:
            if self.config.template_dir is None or self.strict:
                raise
            log.exception(
                "gracefail: the template in %s failed; serving the built-in page instead",
                self.config.template_dir,
            )
            self._use(self._environment(user=False).get_template("page.html"))

    def _use(self, template: jinja2.Template | None) -> None:
        self._template = template
        if template is not None:
            self.template_name = template.filename or template.name or "page.html"
        self.default = self._variants(self.locales, None)
        self.routes = {}
        for route, overrides in self.config.messages.items():
            strings = {
                locale: {**table, **_overrides_for(overrides, locale)}
                for locale, table in self.locales.items()
            }
            self.routes[route] = self._variants(strings, route)
        self._routes = Routes(self.routes.items()) if self.routes else None
        if self.strict:
            # Everything, with the real script: exact sizes and hashes for check and export.
            for variants in (self.default, *self.routes.values()):
                for pages, texts, problems in (
                    (variants.pages, variants.texts, variants.problems),
                    (variants.busy_pages, variants.busy_texts, variants.busy_problems),
                ):
                    for key in pages:
                        pages[key]
                        texts[key]
                        problems[key]
            return
        if template is None:
            return
        # A theme or route words: one variant of each set, so that the template renders,
        # keeps per-request values out of <script> and <style>, carries the script's
        # elements, and fits the budget (a warning) now rather than at the first failure.
        default_locale = self.config.default_locale
        if default_locale not in self.locale_names:
            default_locale = self.locale_names[0]
        for variants in (self.default, *self.routes.values()):
            locale = next(
                (
                    name
                    for name in (default_locale, *self.locale_names)
                    if name not in variants.shared
                ),
                None,
            )
            if locale is not None:
                variants.pages[502, locale, True]

    def _variants(self, table: Mapping[str, Mapping[str, str]], route: str | None) -> Variants:
        brand = self.config.brand.name
        strings = {
            locale: {key: text.replace("{brand}", brand) for key, text in words.items()}
            for locale, words in table.items()
        }
        # The busy page's words: the same table, its own copy in the keys templates read.
        busy = {
            locale: {
                **words,
                **{key: words[own] for key, own in BUSY_WORDS.items() if own in words},
            }
            for locale, words in strings.items()
        }
        explanations = {
            (story, locale): self._explanation(strings[locale][f"explain_{story}"])
            for stories in STORIES.values()
            for story in stories
            for locale in self.locale_names
        }
        default = self.default if route is not None else None
        shared = frozenset(
            locale
            for locale in self.locale_names
            if default is not None and table[locale] == self.locales[locale]
        )
        keys = [
            (status, locale, safe)
            for locale in self.locale_names
            for status in REASONS
            for safe in (True, False)
        ]
        busy_keys = [
            (BUSY_STATUS, locale, safe) for locale in self.locale_names for safe in (True, False)
        ]

        def words(key: Key) -> Mapping[str, str]:
            return (busy if key[0] == BUSY_STATUS else strings)[key[1]]

        def page(key: Key) -> PageBody:
            if default is not None and key[1] in shared:
                # The route says nothing new in this locale: the default's variant.
                return (default.busy_pages if key[0] == BUSY_STATUS else default.pages)[key]
            return self._render(key, words(key), explanations, route)

        def text(key: Key) -> Slotted:
            if default is not None and key[1] in shared:
                return (default.busy_texts if key[0] == BUSY_STATUS else default.texts)[key]
            return Slotted(self._text(key[0], words(key), key[2]))

        def problem(key: Key) -> Slotted:
            if default is not None and key[1] in shared:
                return (default.busy_problems if key[0] == BUSY_STATUS else default.problems)[key]
            return Slotted(self._problem(key[0], words(key), key[2]))

        return Variants(
            LazyVariants(keys, page),
            LazyVariants(keys, text),
            LazyVariants(keys, problem),
            explanations,
            shared=shared,
            strings=strings,
            busy_pages=LazyVariants(busy_keys, page),
            busy_texts=LazyVariants(busy_keys, text),
            busy_problems=LazyVariants(busy_keys, problem),
        )

    def _render(
        self,
        key: Key,
        strings: Mapping[str, str],
        explanations: Mapping[tuple[str, str], Explanation],
        route: str | None,
    ) -> PageBody:
        """One variant of the page, at its first use. Past start-up, a theme that fails
        for this variant only is logged and the built-in page serves it."""
        try:
            if self._template is None:
                self._template = self._environment(user=False).get_template("page.html")
            return self._page(self._template, key, strings, explanations, route)
        except Exception:
            if self._checking or self.config.template_dir is None:
                raise
            status, locale, safe = key
            log.exception(
                "gracefail: %s failed for the %s/%s/%s page; serving the built-in page for it",
                self.template_name,
                status,
                locale,
                "GET" if safe else "POST",
            )
            if self._built_in is None:
                self._built_in = self._environment(user=False).get_template("page.html")
            return self._page(self._built_in, key, strings, explanations, route)

    def _explanation(self, sentence: str) -> Explanation:
        return Explanation(
            html=str(escape(sentence)), json=escape_json_string(sentence), text=sentence
        )

    def script_config(
        self, status: int, locale: str, safe: bool, strings: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The JSON the page's script reads (placeholders where per-request values go)."""
        config = self.config
        if strings is None:
            brand = config.brand.name
            strings = {k: v.replace("{brand}", brand) for k, v in self.locales[locale].items()}
        retry = config.retry.to_script()
        if status == BUSY_STATUS and config.overload is not None:
            # A shed user's first probe: Overload.retry_after plus up to retry_spread
            # seconds, the spread of the busy reply's Retry-After (never past the cap).
            retry["after"] = config.overload.retry_after
            retry["base"] = min(
                config.retry.cap, max(config.retry.base, config.overload.retry_spread)
            )
        return {
            "status": status,
            "safe": safe,
            "health": config.health_url,
            "incident": _INCIDENT,
            "token": _TOKEN,
            "beacon": config.beacon_path,
            "locale": locale,
            "retry": retry,
            "tipsAfter": TIPS_AFTER,
            "statusPage": config.status_page_url,
            "statusApi": config.status_api_url,
            "t": {key: value for key, value in strings.items() if key.startswith("js_")},
        }

    def _page(
        self,
        template: jinja2.Template,
        key: Key,
        strings: Mapping[str, str],
        explanations: Mapping[tuple[str, str], Explanation],
        route: str | None,
    ) -> PageBody:
        """One variant rendered and checked."""
        status, locale, safe = key
        config = self.config
        script = self.js
        config_json = script_safe(
            json.dumps(
                self.script_config(status, locale, safe, strings),
                ensure_ascii=False,
                separators=(",", ":"),
            )
        )
        text = template.render(
            lang=locale,
            t=strings,
            status=status,
            safe=safe,
            brand=config.brand,
            status_page_url=config.status_page_url,
            status_api_url=config.status_api_url,
            incident=_INCIDENT,
            explain=Markup(_EXPLAIN),  # noqa: S704 - placeholder, filled with escaped text
            # After a failed POST the link leads to the site, never back into the form's
            # target or to a health endpoint's JSON.
            retry_url=Markup(_URL_ATTR if safe else "/"),  # noqa: S704 - placeholder or "/"
            css=Markup(self.css),  # noqa: S704 - our own asset / JSON escaped for <script>
            js=Markup(script),  # noqa: S704 - our own asset / JSON escaped for <script>
            config_json=Markup(config_json),  # noqa: S704 - our own asset / JSON escaped for <script>
            noscript_refresh=NOSCRIPT_REFRESH,
            retry_after=config.retry.retry_after,
            debug_detail=_DETAIL if config.debug else None,
        )
        scripts = _SCRIPT_BLOCK.findall(text)
        styles = _STYLE_BLOCK.findall(text)
        if any(_SLOT.search(block) for block in [*scripts, *styles]):
            raise ThemeError(
                f"gracefail: {self.template_name} puts a per-request value (incident, "
                "retry_url, explain, debug_detail) inside a <script> or <style>: its CSP hash "
                "would change with every request; output them in the page's HTML"
            )
        if script in scripts:
            self._check_elements(text)
        # Measured with the longest sentence this status can carry: it must fit with any.
        longest = max(
            (explanations[story, locale].html for story in STORIES[status]),
            key=lambda sentence: len(sentence.encode()),
        )
        size = len(text.replace(_EXPLAIN, longest).encode())
        if size > PAGE_BUDGET:
            where = f"messages[{route!r}] make the" if route is not None else "the"
            message = (
                f"gracefail: {where} {status}/{locale}/{'GET' if safe else 'POST'} page "
                f"{size:,} bytes, over the 16 KB budget"
            )
            if route is not None and self.strict:
                raise ConfigError(message + "; shorten the route's words")
            log.warning("%s", message)
        csp = "; ".join(
            [
                "default-src 'none'",
                "script-src " + (" ".join(sorted({_sha256(s) for s in scripts})) or "'none'"),
                "style-src " + (" ".join(sorted({_sha256(s) for s in styles})) or "'none'"),
                "img-src data:",
                f"connect-src {self._connect_src}",
                "base-uri 'none'",
                "form-action 'self'",
                "frame-ancestors 'none'",
            ]
        )
        return PageBody(text=Slotted(text), csp=csp)

    def _check_elements(self, text: str) -> None:
        """A page that runs the recovery script carries every element it drives, once."""
        found = _ELEMENT_ID.findall(text)
        missing = sorted(self.script_ids - set(found))
        twice = sorted({name for name in found if found.count(name) > 1})
        if missing:
            listed = ", ".join(f'id="{name}"' for name in missing)
            raise ThemeError(
                f"gracefail: {self.template_name} runs the recovery script but lacks the "
                f"element{'s' if len(missing) > 1 else ''} it drives: {listed}. Keep "
                "{% block panel %} of gracefail/base.html (or copy its elements)"
            )
        if twice:
            raise ThemeError(
                f"gracefail: {self.template_name} has more than one element with "
                + ", ".join(f'id="{name}"' for name in twice)
                + ": the recovery script drives only the first"
            )

    def _after(self, strings: Mapping[str, str], safe: bool) -> str:
        # Scripts and terminals do not retry by themselves: tell them what to do.
        return strings["tip_wait" if safe else "next_unsafe"]

    def _text(self, status: int, strings: Mapping[str, str], safe: bool) -> str:
        lines = [f"{status} {strings[f'title_{status}']}", "", _EXPLAIN, self._after(strings, safe)]
        if self.config.status_page_url:
            lines.append(f"Status: {self.config.status_page_url}")
        lines.append(f"Incident: {_INCIDENT}")
        if self.config.debug:
            lines.append(f"Detail: {_DETAIL}")
        return "\n".join(lines) + "\n"

    def _problem(self, status: int, strings: Mapping[str, str], safe: bool) -> str:
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": REASONS.get(status, BUSY_REASON),
            "status": status,
            "detail": f"{_EXPLAIN} {self._after(strings, safe)}",
            "instance": f"urn:gracefail:incident:{_INCIDENT}",
            "incident": _INCIDENT,
            "retry_after": self._problem_retry_after(status),
            "status_page": self.config.status_page_url,
        }
        if strings.get("title_" + str(status)):
            body["title_localized"] = strings[f"title_{status}"]
        if self.config.debug:
            body["debug_detail"] = _DETAIL
        return json.dumps(body, ensure_ascii=False)

    def _problem_retry_after(self, status: int) -> int:
        # The busy reply's Retry-After header is per client (Overload.retry_after plus a
        # share of retry_spread); its problem+json says the least of them.
        overload = self.config.overload
        if status == BUSY_STATUS and overload is not None:
            return overload.retry_after
        return self.config.retry.retry_after

    def warm(self, locales: Iterable[str] | None = None, codings: Iterable[str] = CODINGS) -> None:
        """Prepare now what the first failures would: for each of ``locales`` (default:
        the default locale), every status, method and cause of the page without
        ``Config.messages``, in each of ``codings``. Takes a few tenths of a second (the
        template's compilation, the script's minification, brotli at quality 11), so
        call it off the request path: a lifespan start-up handler or a background thread
        once the server listens. Safe to run while requests are served."""
        failures = [Failure(502, CONNECTION), Failure(502, "protocol"), Failure(504, "timeout")]
        values = (b"/", b"", b"", b"")
        for locale in (self.config.default_locale,) if locales is None else locales:
            for failure in failures:
                for safe in (True, False):
                    story = what_happened(failure)
                    key = ("html", failure.status, locale, safe, story)
                    prepared = self.default.replies.get(key) or self._reply(self.default, key)
                    for coding in codings:
                        prepared.encode(values, (coding,))

    # -- per request ----------------------------------------------------------

    def body(
        self,
        kind: Kind,
        failure: Failure,
        locale: str,
        safe: bool,
        incident: str,
        token: str,
        url: str,
    ) -> tuple[bytes, str, str | None]:
        """(body, content type, CSP or None) for one reply."""
        body, content_type, csp, _ = self.encoded_body(
            kind, failure, locale, safe, incident, token, url
        )
        return body, content_type, csp

    def encoded_body(
        self,
        kind: Kind,
        failure: Failure,
        locale: str,
        safe: bool,
        incident: str,
        token: str,
        url: str,
        accepted: tuple[str, ...] = (),
    ) -> tuple[bytes, str, str | None, str | None]:
        """(body, content type, CSP or None, content coding or None) for one reply.

        ``accepted``: the content codings the client takes, preferred first, as
        :func:`gracefail.negotiate.accepted_encodings` gives them (``"br"``, ``"gzip"``).
        The body comes in the first of them this reply has (brotli needs the ``brotli``
        package; a body too small to gain, or a theme's page with a per-request value in
        its first kilobyte, has no brotli or gzip form), else as it is, coding None.
        Whatever the coding, the body decodes to the same bytes.
        """
        status = failure.status
        variants = self.default
        if self._routes is not None:
            variants = self._routes.match(url) or variants
        if status == 504:
            story = "timeout"
        elif status == BUSY_STATUS and failure.cause == BUSY_CAUSE:
            story = "busy"
        elif failure.cause in UNREACHABLE_CAUSES:
            story = "unreachable"
        else:
            story = "bad_answer"
        key = (kind, status, locale, safe, story)
        prepared = variants.replies.get(key) or self._reply(variants, key)
        if kind == "html":
            link = html.escape(url[: MAX_ECHOED_URL + 1]) if url else ""
            values = (
                link.encode() if len(link) <= MAX_ECHOED_URL else b"",
                incident.encode(),
                token.encode(),
                html.escape(self._detail(failure)).encode() if self._debug else b"",
            )
        else:
            detail = b""
            if self._debug:
                text = self._detail(failure)
                detail = (
                    escape_json_string(text) if kind == "json" else text.replace("\n", " ")
                ).encode()
            values = (b"", incident.encode(), b"", detail)
        if accepted:
            body, coding = prepared.encode(values, accepted)
            return body, prepared.content_type, prepared.csp, coding
        return prepared.fill(values), prepared.content_type, prepared.csp, None

    @staticmethod
    def _detail(failure: Failure) -> str:
        return " ".join(filter(None, [failure.error_type, failure.upstream, failure.detail]))

    def _reply(self, variants: Variants, key: ReplyKey) -> Prepared:
        """The body a request fills, for ``key``, made at its first use."""
        kind, status, locale, safe, story = key
        if story not in STORIES.get(status, ()):
            raise KeyError(key)
        if locale in variants.shared:
            prepared = self.default.replies.get(key) or self._reply(self.default, key)
            return variants.replies.setdefault(key, prepared)
        explanation = variants.explanations[story, locale]
        busy = status == BUSY_STATUS
        text: Slotted
        csp = None
        if kind == "html":
            page = (variants.busy_pages if busy else variants.pages)[status, locale, safe]
            text, sentence, csp = page.text, explanation.html, page.csp
            content_type = "text/html; charset=utf-8"
        elif kind == "json":
            problems = variants.busy_problems if busy else variants.problems
            text, sentence = problems[status, locale, safe], explanation.json
            content_type = "application/problem+json"
        else:
            texts = variants.busy_texts if busy else variants.texts
            text, sentence = texts[status, locale, safe], explanation.text
            content_type = "text/plain; charset=utf-8"
        values = {slot: slot for slot in text.slots}
        values[_EXPLAIN] = sentence
        prepared = Prepared(text.fill(values), content_type, csp)
        return variants.replies.setdefault(key, prepared)
