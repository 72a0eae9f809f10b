"""docs/faq.md: its examples run and do what the answers say, and it answers the questions
of the 502 article, each for users and for operators."""

from __future__ import annotations

import html
from typing import Any

from gracefail import Config
from gracefail.classify import Failure
from gracefail.core import Engine, RequestView
from tests.conftest import ROOT
from tests.doc_snippets import examples

PAGE = ROOT / "docs" / "faq.md"
TEXT = PAGE.read_text(encoding="utf-8")
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
SECRET = "docs-faq-secret-0123456789"
QUESTIONS = [
    "What is a 502 Bad Gateway?",
    "What is the difference between 502 and 504?",
    "How long does it last?",
    "Is it my fault?",
    "Can a VPN or the browser's cache cause it?",
    "Why not just refresh the page every few seconds?",
    "What about CDNs caching the error?",
    "What happens to a form I sent?",
]


def run(label: str) -> dict[str, Any]:
    [block] = examples(TEXT, f": {label}")
    namespace: dict[str, Any] = {"__name__": f"docs_faq_{label.replace('-', '_')}"}
    exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def engine(config: Config) -> Engine:
    return Engine(config.replace(secret=SECRET, recorders=[]))


def test_every_question_is_answered_for_users_and_operators() -> None:
    sections = TEXT.split("\n## ")[1:]
    assert [section.splitlines()[0] for section in sections] == QUESTIONS
    for section in sections:
        assert "**For users.**" in section
        assert "**For operators.**" in section
    assert len(examples(TEXT)) == 3


def test_your_exceptions_say_502_or_504() -> None:
    names = run("faq-statuses")
    gracefail = engine(names["config"])
    slow = gracefail.classify(names["PaymentsTooSlow"]())
    assert slow is not None
    assert slow.status == 504
    declined = type("CardDeclined", (Exception,), {"__module__": "payments_sdk.errors"})
    unavailable = type("Unavailable", (Exception,), {"__module__": "payments_sdk.errors"})
    assert gracefail.classify(declined()) is None
    classified = gracefail.classify(unavailable())
    assert classified is not None
    assert classified.status == 502


def test_the_retry_schedule_reaches_the_page() -> None:
    config = run("faq-retry")["config"]
    reply = engine(config).respond(Failure(502, "connection"), RequestView("GET", "/", "", NAV))
    assert dict(reply.headers)["retry-after"] == "10"
    assert '"giveUpAfter":3600.0' in reply.body.decode()


def test_after_a_form_the_page_probes_the_health_url_and_says_where_to_check() -> None:
    gracefail = engine(run("faq-forms")["config"])
    reply = gracefail.respond(
        Failure(504, "timeout"), RequestView("POST", "/checkout/pay", "", NAV)
    )
    text = html.unescape(reply.body.decode())
    assert '"health":"/healthz"' in text
    assert "<h1>Your payment may not have gone through</h1>" in text
    assert "Open Your orders before paying again" in text
    assert dict(reply.headers)["cache-control"] == "no-store"
