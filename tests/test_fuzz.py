"""Property-based fuzzing of what gracefail reads from a request, on every adapter.

Through the conformance harness (the same in-process apps as the scenario table):
query strings and every header gracefail reads, on a failing route and on paths the
app does not know; and beacon bodies (nesting, sizes, encodings, numbers). Invariants:

* never a 500 made by gracefail, never an exception out of the stack;
* never an unescaped reflection: the page parses to the same tags as a clean page,
  with no event-handler attribute;
* never CR or LF in a response header;
* never a beacon recorded without a valid token.

``make test`` runs ``GRACEFAIL_FUZZ_EXAMPLES`` (default 200) examples per property;
``make fuzz`` runs thousands.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402 - after the skip
from hypothesis import strategies as st  # noqa: E402 - same

from gracefail.events import ClientEvent  # noqa: E402 - same
from tests.apps.common import BEACON, NAV  # noqa: E402 - same
from tests.conformance.harness import ADAPTERS, Client, in_process  # noqa: E402 - same

EXAMPLES = int(os.environ.get("GRACEFAIL_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("CI", "").lower() in ("1", "true", "yes"),
)
ADAPTER_IDS = [a.id for a in ADAPTERS if a.id != "flask-debug"]  # debug propagates by design

_stack = contextlib.ExitStack()
_clients: dict[str, Client] = {}


def client(adapter_id: str) -> Client:
    """One in-process app per adapter for the whole module (built on first use)."""
    if adapter_id not in _clients:
        adapter = next(a for a in ADAPTERS if a.id == adapter_id)
        _clients[adapter_id] = _stack.enter_context(in_process(adapter))
    return _clients[adapter_id]


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    _stack.close()
    _clients.clear()


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def parse(body: bytes) -> Tags:
    tags = Tags()
    tags.feed(body.decode("utf-8", "replace"))
    return tags


_clean: dict[str, set[str]] = {}


def clean_tags(adapter_id: str) -> set[str]:
    if adapter_id not in _clean:
        page = client(adapter_id).request("GET", "/fail/upstream-502", NAV)
        _clean[adapter_id] = parse(page.body).tags
    return _clean[adapter_id]


# Header values and path text in printable ASCII: httpx's in-process WSGI transport
# cannot carry other bytes in a header (it decodes them as ASCII) or a path (werkzeug's
# latin-1 dance), so wider text would test the transport, not gracefail.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
path_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30)
hostile = st.sampled_from(
    ['"><script>alert(1)</script>', "<img src=x onerror=alert(1)>", "';alert(1);//",
     "</title><svg onload=alert(1)>", "javascript:alert(1)", "%0d%0aSet-Cookie:x=1",
     "{{7*7}}", "${7*7}", "</script><!--"]
)  # fmt: skip
value = st.one_of(header_text, hostile)
query = st.lists(st.tuples(st.text(max_size=20), st.one_of(st.text(max_size=60), hostile)),
                 max_size=5)  # fmt: skip
headers = st.fixed_dictionaries(
    {},
    optional={
        "accept": st.one_of(
            value,
            st.sampled_from(
                [
                    "text/html",
                    "application/json",
                    "*/*",
                    "text/html;q=0.1, application/json",
                    "application/problem+json",
                    "text/*",
                ]
            ),
        ),
        "accept-language": st.one_of(
            value, st.sampled_from(["en", "ja", "zh-Hans", "*", "pt-BR;q=0.5"])
        ),
        "sec-fetch-mode": st.one_of(value, st.just("navigate")),
        "x-request-id": value,
        "x-gracefail-probe": st.one_of(value, st.just("1")),
        "user-agent": value,
    },
)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def wire(sent: dict[str, str]) -> dict[str, Any]:
    """Header values as the bytes a client puts on the wire (UTF-8 where not latin-1)."""
    out: dict[str, Any] = {}
    for name, text in sent.items():
        try:
            out[name] = text.encode("latin-1")
        except UnicodeEncodeError:
            out[name] = text.encode("utf-8")
    return out


def check_reply(adapter_id: str, result: Any, failing: bool) -> None:
    assert result.raised is None, f"{adapter_id} raised {result.raised!r}"
    if failing:
        assert result.status == 502, (adapter_id, result.status, result.body[:200])
    else:
        assert result.status != 500 or result.body == b"the app's own 500 page"
    for name, header in result.headers.multi_items():
        assert not set(header) & {"\r", "\n"}, (name, header)
    if result.headers.get("content-type", "").startswith("text/html") and failing:
        tags = parse(result.body)
        assert tags.tags <= clean_tags(adapter_id), tags.tags - clean_tags(adapter_id)
        assert not tags.handlers, tags.handlers


@FUZZ
@given(st.sampled_from(ADAPTER_IDS), query, headers, st.sampled_from(["GET", "HEAD", "POST"]))
def test_failure_replies_hold_under_any_request(
    adapter_id: str, params: list[tuple[str, str]], sent: dict[str, str], method: str
) -> None:
    qs = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)
    result = client(adapter_id).request(
        method, "/fail/upstream-502" + ("?" + qs if qs else ""), sent
    )
    check_reply(adapter_id, result, failing=True)


@FUZZ
@given(
    st.sampled_from(ADAPTER_IDS),
    st.lists(st.one_of(path_text, hostile), min_size=1, max_size=4),
    headers,
)
def test_unknown_paths_never_get_a_500_from_gracefail(
    adapter_id: str, segments: list[str], sent: dict[str, str]
) -> None:
    path = "/" + "/".join(_quote(s) for s in segments)
    check_reply(adapter_id, client(adapter_id).request("GET", path, wire(sent)), failing=False)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
              st.text(max_size=40)),
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=10), children, max_size=5)),
    max_leaves=30,
)  # fmt: skip
beacon_bodies = st.one_of(
    st.binary(max_size=5000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"kind": st.sampled_from(["shown", "recovered", "gave_up", "x"]),
         "attempt": st.one_of(st.integers(), st.floats(), st.text(max_size=5)),
         "elapsed_ms": st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5)),
         "locale": st.text(max_size=10),
         "token": st.one_of(st.text(max_size=200), st.just("v1.x.y"))},
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=3000).map(lambda n: ("[" * n + "]" * n).encode()),
)  # fmt: skip


@FUZZ
@given(
    st.sampled_from(ADAPTER_IDS),
    beacon_bodies,
    st.sampled_from(["text/plain;charset=UTF-8", "application/json", "text/html", ""]),
)
@example("starlette", b"[" * 2000 + b"]" * 2000, "text/plain;charset=UTF-8")
@example("werkzeug", b"[" * 2000 + b"]" * 2000, "text/plain;charset=UTF-8")
@example("django-wsgi", b'{"a":' * 1500 + b"1" + b"}" * 1500, "application/json")
def test_no_beacon_body_breaks_the_endpoint_or_is_stored_without_a_token(
    adapter_id: str, body: bytes, content_type: str
) -> None:
    app = client(adapter_id)
    before = sum(isinstance(e, ClientEvent) for e in app.events())
    result = app.request(
        "POST", "/_gracefail/beacon", {**BEACON, "content-type": content_type}, body
    )
    assert result.raised is None, f"{adapter_id} raised {result.raised!r}"
    assert result.status in (400, 403, 413, 415, 429), (adapter_id, result.status, result.body)
    assert sum(isinstance(e, ClientEvent) for e in app.events()) == before
