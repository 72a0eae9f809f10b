"""Issue 12, defect 4: behind a reverse proxy, beacons are limited per user, not per proxy.

The rate limit keyed on the peer address, so every user behind one proxy shared one
bucket: of 1,000 users, 761 lost their ``shown`` beacon to 429. ``Config.trusted_proxies``
names the proxies whose ``X-Forwarded-For`` (else ``Forwarded``) is read, from the
right, as Werkzeug's ProxyFix and uvicorn's --forwarded-allow-ips do; from anyone
else those headers are ignored, so a client cannot pick its own bucket.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx
import pytest

from gracefail import Config
from gracefail.classify import Failure
from gracefail.config import ConfigError
from gracefail.core import Engine, RequestView
from tests.apps import common
from tests.conftest import start_server, stop

SECRET = "test-secret-0123456789abcdef"
PROXY = "10.0.0.1"


# -- which address is the client ------------------------------------------------------------

ADDRESSES = [
    # (trusted, peer, headers, client)
    pytest.param((), "10.0.0.1", {"x-forwarded-for": "1.2.3.4"}, "10.0.0.1",
                 id="nothing-trusted-headers-ignored"),
    pytest.param(("10.0.0.0/8",), "203.0.113.5", {"x-forwarded-for": "1.2.3.4"},
                 "203.0.113.5", id="peer-not-a-proxy-headers-ignored"),
    pytest.param(("10.0.0.1",), "10.0.0.1", {}, "10.0.0.1", id="proxy-without-header"),
    pytest.param(("10.0.0.1",), "10.0.0.1", {"x-forwarded-for": "198.51.100.7"},
                 "198.51.100.7", id="one-proxy"),
    pytest.param(("10.0.0.0/8",), "10.0.0.1", {"x-forwarded-for": "6.6.6.6, 198.51.100.7"},
                 "198.51.100.7", id="spoofed-entry-on-the-left-is-ignored"),
    pytest.param(("10.0.0.0/8",), "10.0.0.1",
                 {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 10.1.1.1, 10.2.2.2"},
                 "198.51.100.7", id="a-chain-of-proxies"),
    pytest.param(("10.0.0.0/8",), "10.0.0.1", {"x-forwarded-for": "10.9.9.9, 10.1.1.1"},
                 "10.9.9.9", id="every-hop-a-proxy-leftmost"),
    pytest.param(("10.0.0.1",), "10.0.0.1", {"x-forwarded-for": "198.51.100.7:5123"},
                 "198.51.100.7", id="ipv4-with-port"),
    pytest.param(("10.0.0.1",), "10.0.0.1", {"x-forwarded-for": "[2001:db8::1]:443"},
                 "2001:db8::1", id="ipv6-with-port"),
    pytest.param(("10.0.0.1",), "10.0.0.1", {"x-forwarded-for": "2001:DB8:0::1"},
                 "2001:db8::1", id="ipv6-normalised"),
    pytest.param(("10.0.0.1",), "::ffff:10.0.0.1", {"x-forwarded-for": "198.51.100.7"},
                 "198.51.100.7", id="ipv4-mapped-peer"),
    pytest.param(("::1",), "::1", {"x-forwarded-for": "198.51.100.7"}, "198.51.100.7",
                 id="ipv6-proxy"),
    pytest.param(("10.0.0.1",), "10.0.0.1", {"x-forwarded-for": "198.51.100.7,, "},
                 "198.51.100.7", id="empty-entries"),
    pytest.param(("10.0.0.1",), "10.0.0.1", {"x-forwarded-for": "unknown"}, "unknown",
                 id="not-an-address-is-still-the-key"),
    pytest.param(("10.0.0.1",), "10.0.0.1", {"x-forwarded-for": "x" * 500}, "x" * 64,
                 id="long-garbage-is-cut"),
    pytest.param(("10.0.0.1",), "10.0.0.1",
                 {"forwarded": 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https'},
                 "2001:db8:cafe::17", id="forwarded-rfc-7239"),
    pytest.param(("10.0.0.0/8",), "10.0.0.1",
                 {"forwarded": "for=198.51.100.7;by=10.0.0.1, For=10.3.3.3"},
                 "198.51.100.7", id="forwarded-chain"),
    pytest.param(("10.0.0.1",), "10.0.0.1",
                 {"x-forwarded-for": "198.51.100.7", "forwarded": "for=6.6.6.6"},
                 "198.51.100.7", id="x-forwarded-for-wins"),
    pytest.param(("10.0.0.1",), None, {"x-forwarded-for": "198.51.100.7"}, None,
                 id="unknown-peer"),
]  # fmt: skip


@pytest.mark.parametrize(("trusted", "peer", "headers", "client"), ADDRESSES)
def test_client_address(
    trusted: tuple[str, ...], peer: str | None, headers: dict[str, str], client: str | None
) -> None:
    from gracefail.guard import client_address

    normalised = Config(trusted_proxies=trusted).trusted_proxies
    assert client_address(peer, headers, normalised) == client


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        pytest.param((), (), id="default-empty"),
        pytest.param(["10.0.0.1", "10.0.0.0/8"], ("10.0.0.1/32", "10.0.0.0/8"), id="list"),
        pytest.param("127.0.0.1, ::1", ("127.0.0.1/32", "::1/128"), id="comma-separated"),
        pytest.param("", (), id="empty-string"),
        pytest.param(("192.168.1.7/24",), ("192.168.1.0/24",), id="host-bits-dropped"),
    ],
)
def test_trusted_proxies_are_normalised(value: Any, normalised: tuple[str, ...]) -> None:
    assert Config(trusted_proxies=value).trusted_proxies == normalised


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["10.0.0.0/33"], id="bad-prefix"),
        pytest.param(["proxy.internal"], id="host-name"),
        pytest.param("*", id="wildcard"),
        pytest.param([10], id="number-entry"),
        pytest.param(10, id="number"),
        pytest.param(b"10.0.0.1", id="bytes"),
        pytest.param(["10.0.0.1", None], id="none-entry"),
    ],
)
def test_bad_trusted_proxies_fail_at_start_up_naming_the_option(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"trusted_proxies=.*CIDR networks"):
        Config(trusted_proxies=value)


def test_flask_settings_take_trusted_proxies() -> None:
    flask = pytest.importorskip("flask")
    from gracefail.flask import Gracefail

    app = flask.Flask("proxied")
    app.config["GRACEFAIL"] = {"trusted_proxies": ["10.0.0.0/8"], "secret": SECRET}
    Gracefail(app, recorders=[])
    assert Gracefail.engine(app).config.trusted_proxies == ("10.0.0.0/8",)
    bad = flask.Flask("badly-proxied")
    bad.config["GRACEFAIL"] = {"trusted_proxies": ["10.0.0.0/99"], "secret": SECRET}
    with pytest.raises(ConfigError, match="trusted_proxies"):
        Gracefail(bad, recorders=[])


def test_django_settings_take_trusted_proxies() -> None:
    pytest.importorskip("django")
    from tests.conformance.harness import django_setup

    django_setup()
    from django.core.exceptions import ImproperlyConfigured
    from django.test.utils import override_settings

    from gracefail.django.checks import check_gracefail
    from gracefail.django.conf import get_config

    with override_settings(GRACEFAIL={"trusted_proxies": "10.0.0.1, 10.0.0.2"}):
        assert get_config().trusted_proxies == ("10.0.0.1/32", "10.0.0.2/32")
    with override_settings(GRACEFAIL={"trusted_proxies": ["10.0.0.300"]}):
        with pytest.raises(ImproperlyConfigured, match="trusted_proxies"):
            get_config()
        errors = [m for m in check_gracefail(None) if m.id == "gracefail.E001"]
        assert errors
        assert "trusted_proxies" in errors[0].msg


# -- 1,000 users behind one proxy ------------------------------------------------------------


def token_of(page: bytes) -> str:
    text = page.decode()
    start = text.index('"token":"') + len('"token":"')
    return text[start : text.index('"', start)]


def shown(token: str) -> bytes:
    data = {"token": token, "kind": "shown", "attempt": 0, "elapsed_ms": 150, "locale": "en"}
    return json.dumps(data).encode()


def users_behind_a_proxy(engine: Engine, users: int) -> list[int]:
    """Each user gets a failure page and sends its shown beacon, all through PROXY."""
    statuses = []
    for n in range(users):
        user = f"198.51.{n // 256}.{n % 256}"
        view = RequestView("GET", "/shop", headers={"accept": "text/html"}, client_addr=PROXY)
        token = token_of(engine.respond(Failure(502, "connection"), view).body)
        headers = {"host": "shop.test", "content-type": "text/plain", "x-forwarded-for": user}
        beacon = RequestView("POST", "/_gracefail/beacon", headers=headers, client_addr=PROXY)
        statuses.append(engine.accept_beacon(beacon, shown(token)).status)
    return statuses


def test_a_thousand_users_behind_a_trusted_proxy_each_have_their_own_bucket() -> None:
    engine = Engine(Config(secret=SECRET, recorders=[], trusted_proxies=[PROXY]))
    assert users_behind_a_proxy(engine, 1000) == [204] * 1000
    engine.close()


def test_without_trusted_proxies_the_forwarded_address_is_not_believed() -> None:
    """The default: a client's own X-Forwarded-For cannot give it a fresh bucket."""
    engine = Engine(Config(secret=SECRET, recorders=[]))
    statuses = users_behind_a_proxy(engine, 200)
    assert statuses.count(429) >= 200 - engine.guard.burst - 5
    engine.close()


def test_a_user_rotating_a_spoofed_left_entry_keeps_its_own_bucket() -> None:
    engine = Engine(Config(secret=SECRET, recorders=[], trusted_proxies=["10.0.0.0/8"]))
    statuses = []
    for n in range(engine.guard.burst + 10):
        view = RequestView("GET", "/shop", headers={"accept": "text/html"}, client_addr=PROXY)
        token = token_of(engine.respond(Failure(502, "connection"), view).body)
        headers = {
            "host": "shop.test",
            "content-type": "text/plain",
            # What the client sent, then what the proxy appended: the address it saw.
            "x-forwarded-for": f"7.7.{n // 256}.{n % 256}, 198.51.100.9",
        }
        beacon = RequestView("POST", "/_gracefail/beacon", headers=headers, client_addr=PROXY)
        statuses.append(engine.accept_beacon(beacon, shown(token)).status)
    assert statuses[: engine.guard.burst] == [204] * engine.guard.burst
    assert set(statuses[engine.guard.burst :]) == {429}
    engine.close()


# -- through a real server -------------------------------------------------------------------


def proxied_app() -> Any:
    """For gunicorn: the WSGI test app, gracefail trusting the loopback proxy."""
    from gracefail.wsgi import GracefailMiddleware
    from tests.apps import wsgi_app

    return GracefailMiddleware(
        wsgi_app.make_app(),
        secret=SECRET,
        recorders=[],
        trusted_proxies=os.environ["GF_TRUSTED"].split(",") if os.environ["GF_TRUSTED"] else [],
    )


@pytest.mark.server
@pytest.mark.parametrize("trusted", ["127.0.0.1", ""], ids=["trusted", "not-trusted"])
def test_users_behind_a_proxy_under_gunicorn(port: int, trusted: str) -> None:
    pytest.importorskip("werkzeug")
    proc = start_server(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "tests.test_trust_proxies:proxied_app()"],
        port,
        {"GF_TRUSTED": trusted},
    )  # fmt: skip
    statuses = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for n in range(300):
                page = client.get("/fail/connection-refused", headers=common.NAV)
                assert page.status_code == 502
                response = client.post(
                    "/_gracefail/beacon",
                    content=shown(token_of(page.content)),
                    headers={**common.BEACON, "x-forwarded-for": f"198.51.100.{n % 250}"},
                )
                statuses.append(response.status_code)
    finally:
        stop(proc)
    assert statuses.count(204) + statuses.count(429) == 300
    if trusted:
        assert statuses.count(429) == 0
    else:
        # One bucket of 60 for everyone, refilled at 5 a second while the loop runs.
        assert statuses.count(429) >= 100
