"""Turn a Failure into a reply body: the branded page, problem+json, or plain text.

Jinja2 runs once per variant (status x locale x safe/unsafe method) at start-up,
with placeholders where per-request values go; a request only splices its
incident id, token and URL into the prepared text, each escaped for where it lands,
and the sentence that says what happened, prepared for each kind of cause.

``Config.messages`` gives some routes words of their own: each route's set of
variants is rendered at start-up too, so a request only looks its path up (a dict,
then a few compiled patterns) to pick the set it fills.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape

from .classify import CONNECTION, Failure
from .config import LOCALES, Config, ConfigError
from .locales import LocaleError, Wording
from .locales import load as load_wording
from .negotiate import Kind

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


@dataclass(frozen=True, slots=True)
class Variants:
    """Every reply one set of strings gives: page, plain text and problem+json per
    (status, locale, safe), and the sentence of each story per (story, locale)."""

    pages: Mapping[Key, PageBody]
    texts: Mapping[Key, Slotted]
    problems: Mapping[Key, Slotted]
    explanations: Mapping[tuple[str, str], Explanation]


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
        self.config = config
        self.strict = strict
        try:
            self.wording: Wording = load_wording(LOCALES, config.template_dir)
        except LocaleError as exc:
            raise ConfigError(str(exc)) from None
        self.locale_names = self.wording.names
        self.locales: Mapping[str, Mapping[str, str]] = self.wording.table
        self.css = _compact_css(f":root{{--gf-accent:{config.brand.color}}}\n" + _asset("page.css"))
        script = _asset("recover.js")
        self.js = _minify_js(script)
        self.script_ids = script_ids(script)
        self._connect_src = " ".join(filter(None, ["'self'", _origin(config.status_api_url)]))
        self.template_name = "the built-in page"
        self.default: Variants
        self.routes: dict[str, Variants] = {}
        self._routes: Routes | None = None
        self._prepare()

    @property
    def pages(self) -> Mapping[Key, PageBody]:
        """The page's variants for requests no ``Config.messages`` route matches."""
        return self.default.pages

    # -- start-up -----------------------------------------------------------

    def _environment(self, user: bool) -> jinja2.Environment:
        built_in = jinja2.PackageLoader("gracefail", "templates")
        # "gracefail/base.html" is the name themes extend, the same in a template_dir and
        # in Django's or Flask's template folders (whose gracefail/ folder is template_dir).
        loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"gracefail": built_in}), built_in]
        if user and self.config.template_dir is not None:
            loaders.insert(0, jinja2.FileSystemLoader(str(self.config.template_dir)))
        return jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def _prepare(self) -> None:
        try:
            template = self._environment(user=True).get_template("page.html")
            self._render_all(template)
        except ConfigError:
            raise  # the theme breaks the page's contract, or a route's words do not fit
        except Exception:
            if self.config.template_dir is None or self.strict:
                raise
            log.exception(
                "gracefail: the template in %s failed; serving the built-in page instead",
                self.config.template_dir,
            )
            template = self._environment(user=False).get_template("page.html")
            self._render_all(template)

    def _render_all(self, template: jinja2.Template) -> None:
        self.template_name = template.filename or template.name or "page.html"
        self.default = self._variants(template, self.locales, None)
        self.routes = {}
        for route, overrides in self.config.messages.items():
            strings = {
                locale: {**table, **_overrides_for(overrides, locale)}
                for locale, table in self.locales.items()
            }
            self.routes[route] = self._variants(template, strings, route)
        self._routes = Routes(self.routes.items()) if self.routes else None

    def _variants(
        self,
        template: jinja2.Template,
        table: Mapping[str, Mapping[str, str]],
        route: str | None,
    ) -> Variants:
        brand = self.config.brand.name
        strings = {
            locale: {key: text.replace("{brand}", brand) for key, text in words.items()}
            for locale, words in table.items()
        }
        explanations = {
            (story, locale): self._explanation(strings[locale][f"explain_{story}"])
            for stories in STORIES.values()
            for story in stories
            for locale in self.locale_names
        }
        default = self.default if route is not None else None
        pages: dict[Key, PageBody] = {}
        texts: dict[Key, Slotted] = {}
        problems: dict[Key, Slotted] = {}
        for locale in self.locale_names:
            if default is not None and table[locale] == self.locales[locale]:
                # The route says nothing new in this locale: share the default's variants.
                for key in default.pages:
                    if key[1] == locale:
                        pages[key], texts[key] = default.pages[key], default.texts[key]
                        problems[key] = default.problems[key]
                continue
            for status in REASONS:
                for safe in (True, False):
                    key = (status, locale, safe)
                    pages[key] = self._page(template, key, strings[locale], explanations, route)
                    texts[key] = Slotted(self._text(status, strings[locale], safe))
                    problems[key] = Slotted(self._problem(status, strings[locale], safe))
        return Variants(pages, texts, problems, explanations)

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

    def _page(
        self,
        template: jinja2.Template,
        key: Key,
        strings: Mapping[str, str],
        explanations: Mapping[tuple[str, str], Explanation],
        route: str | None,
    ) -> PageBody:
        status, locale, safe = key
        config = self.config
        config_json = _script_safe(
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
            js=Markup(self.js),  # noqa: S704 - our own asset / JSON escaped for <script>
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
        if self.js in scripts:
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
            "title": REASONS[status],
            "status": status,
            "detail": f"{_EXPLAIN} {self._after(strings, safe)}",
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
        variants = self.default
        if self._routes is not None:
            variants = self._routes.match(url) or variants
        explanation = variants.explanations[what_happened(failure), locale]
        if kind == "html":
            page = variants.pages[status, locale, safe]
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
            body = variants.problems[status, locale, safe].fill_bytes(values)
            return body, "application/problem+json", None
        values = {
            _EXPLAIN: explanation.text,
            _INCIDENT: incident,
            _DETAIL: detail.replace("\n", " "),
        }
        body = variants.texts[status, locale, safe].fill_bytes(values)
        return body, "text/plain; charset=utf-8", None
