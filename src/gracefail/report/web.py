"""The report as a web page: the window a request asks for, always bounded, and its form.

The Django admin view (``gracefail.django.admin``) and the Flask blueprint
(``gracefail.flask_report``) are thin: they check who asks, hand the query string
to :func:`report_page`, and show what it returns. So both accept the same
parameters, refuse the same bad input and read the store through the same report
API as ``gracefail report``.

Query parameters (all optional): ``since`` (``24h``, ``7d``, ``30m``, ``2w`` or an ISO
time; default 24h), ``until`` (ISO; default now), ``route``, ``compare``
(``previous``) and ``gap`` (the minutes that end an episode). A window longer than
:data:`MAX_WINDOW` is refused before any query runs: a page must not be able to
make the database scan all of its history.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol
from urllib.parse import urlencode

from . import load_report
from .compare import check_compare
from .episodes import parse_gap
from .errors import EmptyStore, ReportError
from .html import REPORT_CSS, page, render_fragment
from .model import Report, Window
from .reader import Store
from .window import parse_window

__all__ = [
    "MAX_WINDOW",
    "PARAMETERS",
    "PRESETS",
    "REPORT_CSS",
    "ReportPage",
    "WebQuery",
    "controls_html",
    "report_page",
]

MAX_WINDOW: Final = timedelta(days=92)
"""The longest window a report page shows (``gracefail report`` has no such limit)."""
PRESETS: Final = (("1h", "last hour"), ("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days"))
PARAMETERS: Final = ("since", "until", "route", "compare", "gap")
_LONGEST: Final = 200


class Params(Protocol):
    """A query string as the frameworks give it (Django's QueryDict, Werkzeug's MultiDict)."""

    def get(self, key: str, /) -> object:
        """The (last or first) value of ``key``, or None."""


@dataclass(frozen=True, slots=True)
class WebQuery:
    """What a request asked for, as text (so the form can show it back)."""

    since: str = "24h"
    until: str = ""
    route: str = ""
    compare: str = ""
    gap: str = ""

    @classmethod
    def of(cls, params: Params | Mapping[str, str]) -> WebQuery:
        """The query's parameters; :class:`ReportError` for one too long or not text."""
        found: dict[str, str] = {}
        for name in PARAMETERS:
            value = params.get(name)
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > _LONGEST:
                raise ReportError(f"{name} is too long (at most {_LONGEST} characters)")
            found[name] = value.strip()
        query = cls(**found)
        return query if query.since else cls(**{**found, "since": "24h"})

    def link(self, **changes: str) -> str:
        """``?since=...&...``: this query with ``changes``, empty values left out."""
        values = {name: getattr(self, name) for name in PARAMETERS} | changes
        return "?" + urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True, slots=True)
class ReportPage:
    """What a report page shows: a report, or a message saying why there is none.

    ``status`` is the HTTP status to answer with: 200 (a report, or an empty store),
    400 (bad parameters: nothing was queried) or 503 (the store cannot be read).
    """

    status: int
    query: WebQuery
    report: Report | None = None
    message: str | None = None

    def fragment(self, title: str, action: str = "") -> str:
        """The page's content as a ``<div class="gfr">`` (style it with :data:`REPORT_CSS`)."""
        controls = controls_html(self.query, action)
        if self.report is not None:
            return render_fragment(self.report, title, controls)
        css = "error" if self.status >= 400 else "notice"
        return (
            f'<div class="gfr"><h1>{html.escape(title)}</h1>{controls}'
            f'<p class="{css}">{html.escape(self.message or "")}</p></div>'
        )

    def document(self, title: str, action: str = "") -> str:
        """A whole self-contained HTML document (inline CSS, no script)."""
        return page(self.fragment(title, action), title)


def bounded_window(query: WebQuery, now: datetime | None = None) -> Window:
    """The query's window; :class:`ReportError` if it is not one or is too long."""
    window = parse_window(query.since, query.until or None, now)
    if window.until - window.since > MAX_WINDOW:
        days = (window.until - window.since).total_seconds() / 86400
        raise ReportError(
            f"the window is {days:.0f} days long; this page shows at most "
            f"{MAX_WINDOW.days} days (gracefail report on the command line has no limit)"
        )
    return window


def report_page(
    store: Store, params: Params | Mapping[str, str], *, now: datetime | None = None
) -> ReportPage:
    """The report page for a request's query string, read from ``store``.

    Every parameter is checked, and the window bounded, before the store is opened.
    """
    try:
        query = WebQuery.of(params)
    except ReportError as exc:
        return ReportPage(400, WebQuery(), message=str(exc))
    try:
        window = bounded_window(query, now)
        compare = check_compare(query.compare)
        parse_gap(query.gap or None)
    except ReportError as exc:
        return ReportPage(400, query, message=str(exc))
    try:
        report = load_report(
            store,
            since=window.since.isoformat(),
            until=window.until.isoformat(),
            route=query.route or None,
            compare=compare,
            episode_gap=query.gap or None,
        )
    except EmptyStore as exc:
        return ReportPage(200, query, message=str(exc))
    except ReportError as exc:
        return ReportPage(503, query, message=str(exc))
    return ReportPage(200, query, report=report)


def _field(name: str, label: str, value: str, placeholder: str, size: int = 14) -> str:
    return (
        f'<label>{label}<input name="{name}" value="{html.escape(value, quote=True)}" '
        f'placeholder="{placeholder}" size="{size}"></label>'
    )


def controls_html(query: WebQuery, action: str = "") -> str:
    """The form that chooses the window (a GET to ``action``, this page by default)."""
    presets = " ".join(
        f'<a href="{html.escape(action + query.link(since=span, until=""), quote=True)}">'
        f"{html.escape(label)}</a>"
        for span, label in PRESETS
    )
    checked = " checked" if query.compare else ""
    return (
        f'<form class="controls" method="get" action="{html.escape(action, quote=True)}">'
        + _field("since", "Since", query.since, "24h, 7d or ISO time", 20)
        + _field("until", "Until (UTC)", query.until, "now", 20)
        + _field("route", "Route", query.route, "all routes", 18)
        + _field("gap", "Episode gap (min)", query.gap, "5", 4)
        + f'<label><span><input type="checkbox" name="compare" value="previous"{checked}> '
        "compare with the previous window</span></label>"
        '<button type="submit">Show</button>'
        f'<p class="presets">Quick: {presets}</p></form>'
    )
