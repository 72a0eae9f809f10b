"""Config.messages: words of their own for some routes, in every reply, localisable,
validated at start-up, and prepared at start-up so a request only looks its path up."""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from gracefail import Config, ConfigError
from gracefail.classify import Failure
from gracefail.core import Engine, Reply, RequestView
from gracefail.gateway import create_app
from gracefail.render import PAGE_BUDGET, Renderer, Routes

SECRET = "messages-secret-0123456789"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
CHECKOUT = {
    "/checkout/*": {
        "heading_unsafe": {
            "en": "Your payment may not have gone through",
            "de": "Ihre Zahlung ist vielleicht nicht durchgegangen",
        },
        "next_unsafe": "Check Your orders before you pay again: {brand} lists every payment there.",
        "explain_timeout": "The payment provider did not answer in time.",
        "js_service_back": "Payments work again. Check Your orders before paying again.",
    }
}


def engine(**options: Any) -> Engine:
    return Engine(Config(secret=SECRET, recorders=[], brand={"name": "Acme"}, **options))


def serve(
    gracefail: Engine,
    path: str,
    method: str = "POST",
    status: int = 502,
    headers: dict[str, str] = NAV,
    **more: str,
) -> Reply:
    failure = Failure(status, "timeout" if status == 504 else "connection")
    return gracefail.respond(failure, RequestView(method, path, "", {**headers, **more}))


def text_of(reply: Reply) -> str:
    return html.unescape(reply.body.decode())


@pytest.fixture(scope="module")
def shop() -> Engine:
    return engine(messages=CHECKOUT)


def test_a_route_says_its_own_words_and_others_keep_theirs(shop: Engine) -> None:
    page = text_of(serve(shop, "/checkout/pay"))
    assert "<h1>Your payment may not have gone through</h1>" in page
    assert "Check Your orders before you pay again: Acme lists every payment there." in page
    other = text_of(serve(shop, "/cart"))
    assert "We couldn't confirm your request" in other
    assert "Your payment" not in other


def test_route_words_are_localised_and_fall_back_to_the_shipped_words(shop: Engine) -> None:
    german = text_of(serve(shop, "/checkout", **{"accept-language": "de"}))
    assert "<h1>Ihre Zahlung ist vielleicht nicht durchgegangen</h1>" in german
    # No French given for the heading: the shipped French one, not the English override.
    french = text_of(serve(shop, "/checkout", **{"accept-language": "fr"}))
    expected = shop.renderer.locales["fr"]["heading_unsafe"]
    assert f"<h1>{expected}</h1>" in french
    # Plain text is every locale's.
    assert "Acme lists every payment there." in french


def test_the_explanation_and_the_scripts_words_follow_the_route(shop: Engine) -> None:
    page = text_of(serve(shop, "/checkout", status=504))
    assert "The payment provider did not answer in time." in page
    config = json.loads(
        re.search(r'id="gf-config">(.*?)</script>', serve(shop, "/checkout").body.decode())[1]  # type: ignore[index]
    )
    assert config["t"]["js_service_back"].startswith("Payments work again.")


def test_plain_text_and_problem_json_carry_the_routes_words(shop: Engine) -> None:
    text = serve(shop, "/checkout", headers={"accept": "*/*"})
    assert text.body.decode().splitlines()[3].startswith("Check Your orders before you pay again")
    problem = serve(shop, "/checkout", status=504, headers={"accept": "application/json"})
    detail = json.loads(problem.body)["detail"]
    assert detail.startswith("The payment provider did not answer in time. Check Your orders")


@pytest.mark.parametrize(
    ("route", "path", "matches"),
    [
        pytest.param("/checkout", "/checkout", True, id="exact"),
        pytest.param("/checkout", "/checkout/", True, id="trailing-slash"),
        pytest.param("/checkout/", "/checkout", True, id="trailing-slash-in-route"),
        pytest.param("/checkout", "/checkout/pay", False, id="exact-not-below"),
        pytest.param("/checkout/*", "/checkout", True, id="prefix-itself"),
        pytest.param("/checkout/*", "/checkout/pay/card", True, id="prefix-below"),
        pytest.param("/checkout/*", "/checkouts", False, id="prefix-by-segment"),
        pytest.param("/*", "/anything/at/all", True, id="catch-all"),
        pytest.param("/orders/{order_id}", "/orders/42", True, id="starlette"),
        pytest.param("/orders/{order_id}", "/orders/42/items", False, id="one-segment"),
        pytest.param("/orders/<int:order_id>", "/orders/42", True, id="flask-django"),
        pytest.param("/files/{name:path}", "/files/a/b.txt", True, id="starlette-path"),
        pytest.param("/files/<path:name>", "/files/a/b.txt", True, id="flask-path"),
        pytest.param("/a.b", "/aXb", False, id="literal-dot"),
    ],
)
def test_routes_match_templates_and_prefixes(route: str, path: str, matches: bool) -> None:
    marker: Any = object()
    assert (Routes([(route, marker)]).match(path + "?q=1") is marker) is matches


def test_the_most_specific_route_wins() -> None:
    general, template, exact = object(), object(), object()
    routes: Routes = Routes(
        [("/shop/*", general), ("/shop/{item}", template), ("/shop/cart", exact)]  # type: ignore[list-item]
    )
    assert routes.match("/shop/cart") is exact
    assert routes.match("/shop/socks") is template
    assert routes.match("/shop/socks/red") is general
    assert routes.match("/elsewhere") is None


def test_django_routes_without_a_leading_slash_and_settings_dicts() -> None:
    config = Config.from_mapping(
        {"MESSAGES": {"checkout/": {"heading_unsafe": "Payment pending"}}, "recorders": []}
    )
    assert list(config.messages) == ["/checkout/"]
    gracefail = Engine(config.replace(secret=SECRET))
    assert "<h1>Payment pending</h1>" in text_of(serve(gracefail, "/checkout/"))


def test_route_words_are_escaped(shop: Engine) -> None:
    gracefail = engine(messages={"/x": {"heading": "<script>alert(1)</script> & co"}})
    body = serve(gracefail, "/x", method="GET").body.decode()
    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in body


def test_untouched_locales_share_the_default_variants(shop: Engine) -> None:
    only_english = engine(messages={"/x": {"heading": {"en": "Down for a moment"}}})
    routes, default = only_english.renderer.routes["/x"], only_english.renderer.default
    assert routes.pages[502, "fr", True] is default.pages[502, "fr", True]
    assert routes.pages[502, "en", True] is not default.pages[502, "en", True]


def test_every_route_variant_keeps_the_budget_and_the_csp(shop: Engine) -> None:
    for variants in shop.renderer.routes.values():
        for page in variants.pages.values():
            filled = page.text.fill(dict.fromkeys(page.text.slots, "x" * 64))
            assert len(filled.encode()) <= PAGE_BUDGET
            assert "unsafe-inline" not in page.csp


def test_words_too_long_for_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    config = Config(secret=SECRET, recorders=[], messages={"/x": {"tip_wait": "Wait. " * 900}})
    with pytest.raises(ConfigError, match=r"messages\['/x'\] make the 502/en/GET page"):
        Renderer(config, strict=True)
    with caplog.at_level(logging.WARNING, logger="gracefail"):
        Renderer(config)
    assert "over the 16 KB budget" in caplog.text


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        pytest.param(
            {"/checkout": {"heding_unsafe": "x"}},
            r"messages\['/checkout'\]='heding_unsafe'.*did you mean 'heading_unsafe'\?.*"
            r"the page's strings are check_now, error_code, .*, try_again",
            id="unknown-key-names-the-known-ones",
        ),
        pytest.param(
            {"/checkout": {"heading": {"xx": "x"}}},
            r"messages\['/checkout'\]\['heading'\]\['xx'\].*expected locales of en, es, fr",
            id="unknown-locale",
        ),
        pytest.param(
            {"/checkout": {"js_next": "Soon"}},
            r"it must contain \{s\}",
            id="placeholder-dropped",
        ),
        pytest.param(
            {"/checkout": {"heading": "Error {code}"}},
            r"may contain \{brand\} and no other",
            id="placeholder-unknown",
        ),
        pytest.param({"/checkout": {"heading": ""}}, "non-empty string", id="empty"),
        pytest.param({"/checkout": {"heading": {}}}, "with an entry", id="empty-locales"),
        pytest.param({"/check out": {"heading": "x"}}, "routes are templates", id="route"),
        pytest.param({"/a*/b": {"heading": "x"}}, "routes are templates", id="star-inside"),
        pytest.param({"/a": {}, "a": {}}, "given twice", id="twice"),
        pytest.param({"/a": "x"}, r"messages\['/a'\]='x'", id="not-a-dict"),
        pytest.param(["/a"], "messages=", id="not-a-mapping"),
    ],
)
def test_bad_messages_fail_at_start_up(messages: Any, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        Config(messages=messages)


def test_a_themes_own_keys_can_be_given_per_route(tmp_path: Path) -> None:
    (tmp_path / "locales").mkdir()
    (tmp_path / "locales" / "en.json").write_text('{"banner": "All systems"}', encoding="utf-8")
    (tmp_path / "page.html").write_text(
        '{% extends "gracefail/base.html" %}'
        '{% block head %}<meta name="x" content="{{ t.banner }}">{% endblock %}',
        encoding="utf-8",
    )
    config = Config(secret=SECRET, recorders=[], template_dir=tmp_path,
                    messages={"/pay": {"banner": "Payments down"}})  # fmt: skip
    gracefail = Engine(config)
    assert 'content="Payments down"' in serve(gracefail, "/pay").body.decode()
    assert 'content="All systems"' in serve(gracefail, "/home").body.decode()
    with pytest.raises(ConfigError, match="'banner'"):
        Config(messages={"/pay": {"banner": "Payments down"}})  # no such key without the theme


async def test_gateway_mode_matches_the_original_uri() -> None:
    # The proxy's error request carries the URL that failed: the route's words follow it.
    app = create_app(secret=SECRET, recorders=[], messages=CHECKOUT)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        headers = {"x-code": "504", "x-original-uri": "/checkout/pay", "x-format": "text/html"}
        checkout = await client.get("/", headers=headers)
        other = await client.get("/", headers={**headers, "x-original-uri": "/cart"})
    assert checkout.status_code == 504
    assert "The payment provider did not answer in time." in html.unescape(checkout.text)
    assert "The payment provider" not in html.unescape(other.text)
