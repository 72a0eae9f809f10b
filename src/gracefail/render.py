"""Turn a Failure into a reply body: the branded page, problem+json, or plain text.

Jinja2 runs once per variant (status x locale x safe/unsafe method) at start-up,
with placeholders where per-request values go; a request only splices its
incident id, token and URL into the prepared text, each escaped for where it lands,
and the sentence that says what happened, prepared for each kind of cause.

The URL is echoed once, in the manual retry link, and only up to ``MAX_ECHOED_URL``
characters: a client must not make the page grow with its request. The script needs
no copy (it retries ``location``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape

from .classify import CONNECTION, Failure
from .config import LOCALES, Config
from .negotiate import Kind

__all__ = ["MAX_ECHOED_URL", "MINIMAL_PAGE", "PAGE_BUDGET", "PageBody", "Renderer", "what_happened"]

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
STORIES: Final = {502: ("unreachable", "bad_answer"), 504: ("timeout",)}

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


def what_happened(failure: Failure) -> str:
    """The story the reply tells about ``failure``: unreachable, bad_answer or timeout."""
    if failure.status == 504:
        return "timeout"
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


def escape_json_string(value: str) -> str:
    """``value`` as the inside of a JSON string that is safe in a ``<script>`` data block."""
    return _script_safe(json.dumps(value, ensure_ascii=False)[1:-1])


def _script_safe(text: str) -> str:
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


@functools.cache
def _minify_js(source: str) -> str:
    """The script as the page inlines it: recover.js is written to be read, not shipped.

    calmjs.parse parses it (ES5) and prints it without comments or spaces, local names
    shortened: the readable source would otherwise take the room the 16 KB page leaves for
    a logo. The output is a pure function of the source (the CSP hash, taken from the
    rendered page, is stable), so it is computed once per process.
    """
    # Imported here: parsing costs a few tenths of a second, paid by the first Renderer
    # only, never by ``import gracefail``.
    from calmjs.parse import es5  # type: ignore[import-untyped]  # ships no type hints
    from calmjs.parse.unparsers.es5 import minify_print  # type: ignore[import-untyped]

    minified: str = minify_print(es5(source), obfuscate=True, obfuscate_globals=False)
    if "</" in minified or "<!--" in minified:
        # Either would end or confuse the inline <script> block.
        raise ValueError("recover.js must not contain '</' or '<!--'")
    return minified


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
    folder = resources.files("gracefail") / "locales"
    english: dict[str, str] = json.loads((folder / "en.json").read_text("utf-8"))
    table: dict[str, dict[str, str]] = {}
    for name in LOCALES:
        strings = json.loads((folder / f"{name}.json").read_text("utf-8"))
        table[name] = {**english, **strings}
    return table


def _asset(name: str) -> str:
    return (resources.files("gracefail") / "assets" / name).read_text("utf-8")


class Renderer:
    """Prepares every reply variant for one Config and fills them per request."""

    def __init__(self, config: Config, *, strict: bool = False):
        self.config = config
        self.strict = strict
        self.locales = load_locales()
        self.css = _compact_css(f":root{{--gf-accent:{config.brand.color}}}\n" + _asset("page.css"))
        self.js = _minify_js(_asset("recover.js"))
        self._connect_src = " ".join(filter(None, ["'self'", _origin(config.status_api_url)]))
        self.pages: dict[tuple[int, str, bool], PageBody] = {}
        self._texts: dict[tuple[int, str, bool], Slotted] = {}
        self._problems: dict[tuple[int, str, bool], Slotted] = {}
        self._explanations = {
            (story, locale): self._explanation(story, locale)
            for stories in STORIES.values()
            for story in stories
            for locale in LOCALES
        }
        self._prepare()

    # -- start-up -----------------------------------------------------------

    def _environment(self, user: bool) -> jinja2.Environment:
        loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("gracefail", "templates")]
        if user and self.config.template_dir is not None:
            loaders.insert(0, jinja2.FileSystemLoader(str(self.config.template_dir)))
        return jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def _prepare(self) -> None:
        variants = [(s, loc, safe) for s in REASONS for loc in LOCALES for safe in (True, False)]
        try:
            template = self._environment(user=True).get_template("page.html")
            pages = {v: self._page(template, *v) for v in variants}
        except Exception:
            if self.config.template_dir is None or self.strict:
                raise
            log.exception(
                "gracefail: the template in %s failed; serving the built-in page instead",
                self.config.template_dir,
            )
            template = self._environment(user=False).get_template("page.html")
            pages = {v: self._page(template, *v) for v in variants}
        self.pages = pages
        for status in REASONS:
            for locale in LOCALES:
                for safe in (True, False):
                    key = (status, locale, safe)
                    self._texts[key] = Slotted(self._text(status, locale, safe))
                    self._problems[key] = Slotted(self._problem(status, locale, safe))

    def _explanation(self, story: str, locale: str) -> Explanation:
        sentence = self.locales[locale][f"explain_{story}"].replace(
            "{brand}", self.config.brand.name
        )
        return Explanation(
            html=str(escape(sentence)), json=escape_json_string(sentence), text=sentence
        )

    def script_config(self, status: int, locale: str, safe: bool) -> dict[str, Any]:
        """The JSON the page's script reads (placeholders where per-request values go)."""
        config = self.config
        strings = self.locales[locale]
        return {
            "status": status,
            "safe": safe,
            "health": config.health_url,
            "incident": _INCIDENT,
            "token": _TOKEN,
            "beacon": config.beacon_path,
            "locale": locale,
            "retry": config.retry.to_script(),
            "tipsAfter": TIPS_AFTER,
            "statusPage": config.status_page_url,
            "statusApi": config.status_api_url,
            "t": {key: value for key, value in strings.items() if key.startswith("js_")},
        }

    def _page(self, template: jinja2.Template, status: int, locale: str, safe: bool) -> PageBody:
        config = self.config
        config_json = _script_safe(
            json.dumps(
                self.script_config(status, locale, safe), ensure_ascii=False, separators=(",", ":")
            )
        )
        text = template.render(
            lang=locale,
            t=self.locales[locale],
            status=status,
            safe=safe,
            brand=config.brand,
            status_page_url=config.status_page_url,
            incident=_INCIDENT,
            explain=Markup(_EXPLAIN),  # noqa: S704 - placeholder, filled with escaped text
            # After a failed POST the link leads to the site, never back into the form's
            # target or to a health endpoint's JSON.
            retry_url=Markup(_URL_ATTR if safe else "/"),  # noqa: S704 - placeholder or "/"
            css=Markup(self.css),  # noqa: S704 - our own asset / JSON escaped for <script>
            js=Markup(self.js),  # noqa: S704 - our own asset / JSON escaped for <script>
            config_json=Markup(config_json),  # noqa: S704 - our own asset / JSON escaped for <script>
            noscript_refresh=NOSCRIPT_REFRESH,
            retry_after=config.retry.retry_after,
            debug_detail=_DETAIL if config.debug else None,
        )
        scripts = _SCRIPT_BLOCK.findall(text)
        styles = _STYLE_BLOCK.findall(text)
        if any(_SLOT.search(block) for block in [*scripts, *styles]):
            raise ValueError("page.html puts a per-request value inside a <script> or <style>")
        # Measured with the longest sentence this status can carry: it must fit with any.
        longest = max(
            (self._explanations[story, locale].html for story in STORIES[status]),
            key=lambda sentence: len(sentence.encode()),
        )
        size = len(text.replace(_EXPLAIN, longest).encode())
        if size > PAGE_BUDGET:
            log.warning(
                "gracefail: the %s/%s page is %d bytes, over the 16 KB budget", status, locale, size
            )
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

    def _after(self, locale: str, safe: bool) -> str:
        # Scripts and terminals do not retry by themselves: tell them what to do.
        strings = self.locales[locale]
        return strings["tip_wait" if safe else "next_unsafe"].replace(
            "{brand}", self.config.brand.name
        )

    def _text(self, status: int, locale: str, safe: bool) -> str:
        strings = self.locales[locale]
        lines = [f"{status} {strings[f'title_{status}']}", "", _EXPLAIN, self._after(locale, safe)]
        if self.config.status_page_url:
            lines.append(f"Status: {self.config.status_page_url}")
        lines.append(f"Incident: {_INCIDENT}")
        if self.config.debug:
            lines.append(f"Detail: {_DETAIL}")
        return "\n".join(lines) + "\n"

    def _problem(self, status: int, locale: str, safe: bool) -> str:
        strings = self.locales[locale]
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": REASONS[status],
            "status": status,
            "detail": f"{_EXPLAIN} {self._after(locale, safe)}",
            "instance": f"urn:gracefail:incident:{_INCIDENT}",
            "incident": _INCIDENT,
            "retry_after": self.config.retry.retry_after,
            "status_page": self.config.status_page_url,
        }
        if strings.get("title_" + str(status)):
            body["title_localized"] = strings[f"title_{status}"]
        if self.config.debug:
            body["debug_detail"] = _DETAIL
        return json.dumps(body, ensure_ascii=False)

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
        detail = ""
        if self.config.debug:
            detail = " ".join(filter(None, [failure.error_type, failure.upstream, failure.detail]))
        status = failure.status
        explanation = self._explanations[what_happened(failure), locale]
        if kind == "html":
            page = self.pages[status, locale, safe]
            link = html.escape(url[: MAX_ECHOED_URL + 1])
            values = {
                _EXPLAIN: explanation.html,
                _INCIDENT: incident,
                _TOKEN: token,
                _URL_ATTR: link if len(link) <= MAX_ECHOED_URL else "",
                _DETAIL: html.escape(detail),
            }
            return page.text.fill_bytes(values), "text/html; charset=utf-8", page.csp
        if kind == "json":
            values = {
                _EXPLAIN: explanation.json,
                _INCIDENT: incident,
                _DETAIL: escape_json_string(detail),
            }
            body = self._problems[status, locale, safe].fill_bytes(values)
            return body, "application/problem+json", None
        values = {
            _EXPLAIN: explanation.text,
            _INCIDENT: incident,
            _DETAIL: detail.replace("\n", " "),
        }
        body = self._texts[status, locale, safe].fill_bytes(values)
        return body, "text/plain; charset=utf-8", None
