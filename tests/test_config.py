"""gracefail.config: defaults, and a clear ValueError for every bad option at start-up."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gracefail import Brand, Config, ConfigError, RetryPolicy
from gracefail.config import LOCALES, LOGO_BUDGET, config_from

SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24">'
    b'<circle cx="12" cy="12" r="10" fill="#2563eb"/></svg>'
)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)
    monkeypatch.delenv("GRACEFAIL_DB", raising=False)


# --------------------------------------------------------------------------- defaults


def test_config_defaults() -> None:
    config = Config()
    assert config.brand == Brand()
    assert config.retry == RetryPolicy()
    assert config.status_page_url is None
    assert config.status_api_url is None
    assert config.health_url == "/"
    assert config.beacon_path == "/_gracefail/beacon"
    assert config.secret is None
    assert config.template_dir is None
    assert config.default_locale == "en"
    assert dict(config.exceptions) == {}
    assert config.replace_api_responses is False
    assert config.timeout is None
    assert config.debug is False
    assert config.store == "gracefail.sqlite3"
    assert config.recorders is None
    assert config.token_ttl == 6 * 3600
    assert config.queue_size == 10_000


def test_brand_and_retry_defaults() -> None:
    brand = Brand()
    assert (brand.name, brand.logo, brand.color) == ("This site", None, "#2563eb")
    retry = RetryPolicy()
    assert (retry.retry_after, retry.base, retry.cap, retry.give_up_after) == (5, 4.0, 62.0, 1800.0)


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRACEFAIL_SECRET", "from-the-environment-0123")
    monkeypatch.setenv("GRACEFAIL_DB", "postgresql://db.internal/gracefail")
    config = Config()
    assert config.secret == "from-the-environment-0123"
    assert config.store == "postgresql://db.internal/gracefail"


@pytest.mark.parametrize("color", ["#2563eb", "#000", "#000000", "#1D4ED8", "#b91c1c"])
def test_dark_enough_colours_accepted(color: str) -> None:
    assert Brand(color=color).color == color


def test_configs_are_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.debug = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.brand.name = "x"  # type: ignore[misc]


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_good_values_accepted(tmp_path: Path) -> None:
    config = Config(
        brand=Brand(name="Acme", color="#000"),
        retry=RetryPolicy(retry_after=0, base=0.5, cap=0.5, give_up_after=30),
        status_page_url="https://status.acme.example",
        status_api_url="https://status.acme.example/api/v2/summary.json",
        health_url="/healthz",
        beacon_path="/internal/gracefail-beacon",
        secret=b"0123456789abcdef",
        template_dir=tmp_path,
        default_locale="pt-BR",
        exceptions={KeyError: 502, "payments.client.Timeout": 504, TimeoutError: None},
        replace_api_responses=True,
        timeout=2.5,
        debug=True,
        store="sqlite:///events.db",
        recorders=[],
        token_ttl=60,
        queue_size=1,
    )
    assert config.retry.cap == 0.5
    assert config.default_locale == "pt-BR"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_locale_is_a_valid_default(locale: str) -> None:
    assert Config(default_locale=locale).default_locale == locale


# --------------------------------------------------------------------------- bad values


class _NotARecorder:
    pass


BAD: list[Any] = [
    # Brand.
    pytest.param(lambda: Brand(color="blue"), "brand.color", "'blue'", id="brand-color-word"),
    pytest.param(lambda: Brand(color="#12345"), "brand.color", "'#12345'", id="brand-color-5-hex"),
    pytest.param(
        lambda: Brand(color="#fff;background:url(x)"),
        "brand.color",
        "background:url(x)",
        id="brand-color-css-injection",
    ),
    pytest.param(lambda: Brand(color=None), "brand.color", "None", id="brand-color-none"),
    pytest.param(
        # White text on the accent colour must keep WCAG AA contrast.
        lambda: Brand(color="#ffff00"),
        "brand.color",
        "'#ffff00'",
        id="brand-color-low-contrast",
    ),
    pytest.param(lambda: Brand(color="#fff"), "brand.color", "'#fff'", id="brand-color-white"),
    pytest.param(lambda: Brand(name=""), "brand.name", "''", id="brand-name-empty"),
    pytest.param(lambda: Brand(name="   "), "brand.name", "'   '", id="brand-name-blank"),
    pytest.param(lambda: Brand(name="x" * 81), "brand.name", "x" * 81, id="brand-name-too-long"),
    pytest.param(lambda: Brand(name=42), "brand.name", "42", id="brand-name-not-str"),
    pytest.param(
        lambda: Brand(logo="http://x/logo.png"),
        "brand.logo",
        "'http://x/logo.png'",
        id="brand-logo-url",
    ),
    pytest.param(
        lambda: Brand(logo="/nonexistent-gracefail-dir/logo.svg"),
        "brand.logo",
        "/nonexistent-gracefail-dir/logo.svg",
        id="brand-logo-missing-file",
    ),
    pytest.param(
        lambda: Brand(logo="data:text/html,<script>alert(1)</script>"),
        "brand.logo",
        "data:text/html",
        id="brand-logo-data-html",
    ),
    pytest.param(
        lambda: Brand(logo='data:image/svg+xml,<svg onload="alert(1)">'),
        "brand.logo",
        "data:image/svg+xml",
        id="brand-logo-data-markup",
    ),
    pytest.param(lambda: Brand(logo=123), "brand.logo", "123", id="brand-logo-int"),
    # RetryPolicy.
    pytest.param(lambda: RetryPolicy(base=-1), "retry.base", "-1", id="retry-base-negative"),
    pytest.param(lambda: RetryPolicy(base=0), "retry.base", "0", id="retry-base-zero"),
    pytest.param(lambda: RetryPolicy(base=float("nan")), "retry.base", "nan", id="retry-base-nan"),
    pytest.param(lambda: RetryPolicy(base="2"), "retry.base", "'2'", id="retry-base-string"),
    pytest.param(lambda: RetryPolicy(base=True), "retry.base", "True", id="retry-base-bool"),
    pytest.param(lambda: RetryPolicy(base=10, cap=5), "retry.cap", "5", id="retry-cap-below-base"),
    pytest.param(lambda: RetryPolicy(cap=-5), "retry.cap", "-5", id="retry-cap-negative"),
    pytest.param(
        lambda: RetryPolicy(retry_after=1.5), "retry.retry_after", "1.5", id="retry-after-float"
    ),
    pytest.param(
        lambda: RetryPolicy(retry_after=-1), "retry.retry_after", "-1", id="retry-after-negative"
    ),
    pytest.param(
        lambda: RetryPolicy(retry_after=3601), "retry.retry_after", "3601", id="retry-after-hour+"
    ),
    pytest.param(
        lambda: RetryPolicy(retry_after=True), "retry.retry_after", "True", id="retry-after-bool"
    ),
    pytest.param(
        lambda: RetryPolicy(give_up_after=0), "retry.give_up_after", "0", id="give-up-zero"
    ),
    # Config: shapes.
    pytest.param(lambda: Config(brand="Acme"), "brand", "'Acme'", id="brand-string"),
    pytest.param(lambda: Config(retry=5), "retry", "5", id="retry-int"),
    pytest.param(
        lambda: Config(brand={"color": "blue"}), "brand.color", "'blue'", id="brand-dict-bad"
    ),
    pytest.param(lambda: Config(retry={"base": -1}), "retry.base", "-1", id="retry-dict-bad"),
    # URLs.
    pytest.param(
        lambda: Config(status_page_url="javascript:alert(1)"),
        "status_page_url",
        "'javascript:alert(1)'",
        id="status-page-javascript",
    ),
    pytest.param(
        lambda: Config(status_page_url="/status"),
        "status_page_url",
        "'/status'",
        id="status-page-relative",
    ),
    pytest.param(
        lambda: Config(status_page_url="https://"),
        "status_page_url",
        "'https://'",
        id="status-page-no-host",
    ),
    pytest.param(
        lambda: Config(status_page_url='https://status.example/"><script>'),
        "status_page_url",
        "status.example",
        id="status-page-markup",
    ),
    pytest.param(lambda: Config(status_page_url=42), "status_page_url", "42", id="status-page-int"),
    pytest.param(
        lambda: Config(status_api_url="https://s.example/a b"),
        "status_api_url",
        "'https://s.example/a b'",
        id="status-api-space",
    ),
    pytest.param(
        lambda: Config(status_api_url="data:application/json,{}"),
        "status_api_url",
        "data:application/json",
        id="status-api-data",
    ),
    pytest.param(lambda: Config(health_url="ftp://x"), "health_url", "'ftp://x'", id="health-ftp"),
    pytest.param(
        lambda: Config(health_url="javascript:alert(1)"),
        "health_url",
        "'javascript:alert(1)'",
        id="health-javascript",
    ),
    pytest.param(lambda: Config(health_url="health"), "health_url", "'health'", id="health-bare"),
    pytest.param(
        # Protocol-relative: a browser reads this as another host, not a path.
        lambda: Config(health_url="//evil.example/health"),
        "health_url",
        "'//evil.example/health'",
        id="health-protocol-relative",
    ),
    pytest.param(lambda: Config(beacon_path="nope"), "beacon_path", "'nope'", id="beacon-no-slash"),
    pytest.param(lambda: Config(beacon_path="/"), "beacon_path", "'/'", id="beacon-root"),
    pytest.param(lambda: Config(beacon_path="/a b"), "beacon_path", "'/a b'", id="beacon-space"),
    pytest.param(
        lambda: Config(beacon_path="/beacon?x=1"), "beacon_path", "'/beacon?x=1'", id="beacon-query"
    ),
    pytest.param(
        # sendBeacon("//evil.example/b") goes to another host.
        lambda: Config(beacon_path="//evil.example/b"),
        "beacon_path",
        "'//evil.example/b'",
        id="beacon-protocol-relative",
    ),
    # Others.
    pytest.param(
        lambda: Config(template_dir="/nonexistent-gracefail-templates"),
        "template_dir",
        "/nonexistent-gracefail-templates",
        id="template-dir-missing",
    ),
    pytest.param(lambda: Config(default_locale="xx"), "default_locale", "'xx'", id="locale-xx"),
    pytest.param(
        lambda: Config(default_locale="pt"), "default_locale", "'pt'", id="locale-not-offered"
    ),
    pytest.param(
        lambda: Config(exceptions={ValueError: 500}), "exceptions", "500", id="exceptions-500"
    ),
    pytest.param(
        lambda: Config(exceptions={ValueError: "502"}), "exceptions", "'502'", id="exceptions-str"
    ),
    pytest.param(
        # A float status would end up in the status line as "502.0".
        lambda: Config(exceptions={KeyError: 502.0}),
        "exceptions",
        "502.0",
        id="exceptions-float-status",
    ),
    pytest.param(
        lambda: Config(exceptions={"ValueError": 502}),
        "exceptions",
        "'ValueError'",
        id="exceptions-undotted-name",
    ),
    pytest.param(lambda: Config(exceptions={int: 502}), "exceptions", "int", id="exceptions-int"),
    pytest.param(
        lambda: Config(exceptions=[ValueError]), "exceptions", "ValueError", id="exceptions-list"
    ),
    pytest.param(lambda: Config(timeout=0), "timeout", "0", id="timeout-zero"),
    pytest.param(lambda: Config(timeout=-1), "timeout", "-1", id="timeout-negative"),
    pytest.param(lambda: Config(timeout="5"), "timeout", "'5'", id="timeout-string"),
    pytest.param(lambda: Config(debug="yes"), "debug", "'yes'", id="debug-yes"),
    pytest.param(lambda: Config(debug=1), "debug", "1", id="debug-one"),
    pytest.param(
        lambda: Config(replace_api_responses="true"),
        "replace_api_responses",
        "'true'",
        id="replace-api-string",
    ),
    pytest.param(lambda: Config(token_ttl=5), "token_ttl", "5", id="token-ttl-5"),
    pytest.param(lambda: Config(token_ttl=10**9), "token_ttl", str(10**9), id="token-ttl-huge"),
    pytest.param(lambda: Config(token_ttl=3600.0), "token_ttl", "3600.0", id="token-ttl-float"),
    pytest.param(lambda: Config(token_ttl=True), "token_ttl", "True", id="token-ttl-bool"),
    pytest.param(lambda: Config(queue_size=0), "queue_size", "0", id="queue-size-zero"),
    pytest.param(lambda: Config(store=""), "store", "''", id="store-empty"),
    pytest.param(lambda: Config(store=None), "store", "None", id="store-none"),
    pytest.param(
        lambda: Config(recorders=[_NotARecorder()]), "recorders", "_NotARecorder", id="recorder"
    ),
]


@pytest.mark.parametrize(("build", "option", "value"), BAD)
def test_bad_values(build: Callable[[], object], option: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert option in message
    assert value in message
    assert message.startswith("gracefail: ")


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("hunter2-secret", id="short-str"),
        pytest.param(b"hunter2-secret", id="short-bytes"),
        pytest.param("short", id="five-chars"),
        pytest.param(12345678901234567890, id="int"),
    ],
)
def test_bad_secret_is_named_but_not_shown(secret: object) -> None:
    with pytest.raises(ConfigError, match="secret") as info:
        Config(secret=secret)
    message = str(info.value)
    assert "hunter2" not in message
    assert "'short'" not in message
    assert "1234567890" not in message


@pytest.mark.parametrize("secret", ["0123456789abcdef", b"0123456789abcdef", "x" * 200, None])
def test_good_secrets(secret: str | bytes | None) -> None:
    assert Config(secret=secret).secret == secret


# --------------------------------------------------------------------------- from_mapping


def test_from_mapping() -> None:
    config = Config.from_mapping(
        {
            "STATUS_PAGE_URL": "https://status.acme.example",
            "brand": {"name": "Acme"},
            "retry": {"cap": 30},
        }
    )
    assert config.status_page_url == "https://status.acme.example"
    assert config.brand == Brand(name="Acme")
    assert config.retry == RetryPolicy(cap=30)


def test_from_mapping_keys_in_either_case() -> None:
    config = Config.from_mapping(
        {
            "Debug": True,
            "TOKEN_TTL": 120,
            "BRAND": {"NAME": "Acme", "Color": "#000000"},
            "retry": {"RETRY_AFTER": 1},
        }
    )
    assert config.debug is True
    assert config.token_ttl == 120
    assert config.brand == Brand(name="Acme", color="#000000")
    assert config.retry.retry_after == 1


def test_from_mapping_accepts_built_objects() -> None:
    brand = Brand(name="Acme")
    assert Config.from_mapping({"brand": brand}).brand is brand


@pytest.mark.parametrize(
    ("options", "suggestion"),
    [
        pytest.param({"status_page": "https://s.example"}, "'status_page_url'", id="status-page"),
        pytest.param({"STATUS_PAGE": "https://s.example"}, "'status_page_url'", id="upper-case"),
        pytest.param({"beacon_url": "/b"}, "'beacon_path'", id="beacon-url"),
        pytest.param({"tokenttl": 60}, "'token_ttl'", id="token-ttl"),
        pytest.param({"brand": {"colour": "#fff"}}, "'brand.color'", id="nested-brand-colour"),
        pytest.param({"retry": {"caps": 30}}, "'retry.cap'", id="nested-retry-caps"),
    ],
)
def test_unknown_key_suggests_the_nearest(options: dict[str, Any], suggestion: str) -> None:
    with pytest.raises(ConfigError, match="unknown option") as info:
        Config.from_mapping(options)
    assert suggestion in str(info.value)


def test_unknown_key_without_near_match_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match="valid keys") as info:
        Config.from_mapping({"zzzzzz": 1})
    assert "status_page_url" in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["debug"], id="list"),
        pytest.param("debug=1", id="string"),
        pytest.param(None, id="none"),
    ],
)
def test_from_mapping_needs_a_mapping(options: Any) -> None:
    with pytest.raises(ConfigError, match="must be a dict"):
        Config.from_mapping(options)


def test_from_mapping_validates_values() -> None:
    with pytest.raises(ConfigError, match=r"retry\.cap"):
        Config.from_mapping({"retry": {"base": 10, "cap": 5}})


def test_replace_revalidates() -> None:
    config = Config(debug=False)
    assert config.replace(debug=True).debug is True
    assert config.debug is False
    with pytest.raises(ConfigError, match="timeout"):
        config.replace(timeout=0)


# --------------------------------------------------------------------------- delay_bounds


# Explicit numbers, so these rows test the formula rather than the defaults.
FORMULA = RetryPolicy(retry_after=5, base=2.0, cap=60.0, give_up_after=600.0)


@pytest.mark.parametrize(
    ("policy", "attempt", "bounds"),
    [
        pytest.param(FORMULA, 0, (5.0, 7.0), id="default-first"),
        pytest.param(FORMULA, 1, (0.0, 4.0), id="default-1"),
        pytest.param(FORMULA, 2, (0.0, 8.0), id="default-2"),
        pytest.param(FORMULA, 4, (0.0, 32.0), id="default-4"),
        pytest.param(FORMULA, 5, (0.0, 60.0), id="default-5-capped"),
        pytest.param(FORMULA, 6, (0.0, 60.0), id="default-6-capped"),
        pytest.param(RetryPolicy(retry_after=0, base=1, cap=10), 0, (0.0, 1.0), id="zero-after"),
        pytest.param(RetryPolicy(retry_after=0, base=1, cap=10), 3, (0.0, 8.0), id="small-3"),
        pytest.param(RetryPolicy(retry_after=0, base=1, cap=10), 4, (0.0, 10.0), id="small-cap"),
        pytest.param(
            RetryPolicy(retry_after=30, base=0.5, cap=0.5), 0, (30.0, 30.5), id="after-30"
        ),
        pytest.param(FORMULA, 1024, (0.0, 60.0), id="n-1024"),
        pytest.param(FORMULA, 10**12, (0.0, 60.0), id="n-huge"),
        pytest.param(RetryPolicy(cap=1e300, base=1.0), 10**6, (0.0, 2.0**60), id="cap-huge"),
    ],
)
def test_delay_bounds(policy: RetryPolicy, attempt: int, bounds: tuple[float, float]) -> None:
    assert policy.delay_bounds(attempt) == bounds


def test_delay_bounds_never_exceed_cap_and_grow() -> None:
    policy = RetryPolicy(base=1.5, cap=45)
    previous = 0.0
    for attempt in range(1, 200):
        low, high = policy.delay_bounds(attempt)
        assert low == 0.0
        assert previous <= high <= 45
        previous = high


def test_to_script() -> None:
    assert FORMULA.to_script() == {"after": 5, "base": 2.0, "cap": 60.0, "giveUpAfter": 600.0}


# --------------------------------------------------------------------------- logo


def test_logo_file_is_inlined(tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_bytes(SVG)
    for value in (str(logo), logo):
        brand = Brand(logo=value)  # type: ignore[arg-type]
        assert brand.logo is not None
        prefix = "data:image/svg+xml;base64,"
        assert brand.logo.startswith(prefix)
        assert base64.b64decode(brand.logo[len(prefix) :]) == SVG


def test_logo_png_file_is_inlined(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    brand = Brand(logo=str(logo))
    assert brand.logo is not None
    assert brand.logo.startswith("data:image/png;base64,")


def _svg_of_size(size: int) -> bytes:
    assert size >= len(SVG)
    return SVG[:-6] + b"<!--" + b"x" * (size - len(SVG) - 7) + b"--></svg>"


def _largest_fitting_svg() -> int:
    """Bytes of the largest SVG whose data: URI fits LOGO_BUDGET."""
    prefix = len("data:image/svg+xml;base64,")
    return (LOGO_BUDGET - prefix) // 4 * 3


def test_logo_over_6kb_is_refused(tmp_path: Path) -> None:
    logo = tmp_path / "big.svg"
    logo.write_bytes(_svg_of_size(7000))
    with pytest.raises(ConfigError, match=r"brand\.logo") as info:
        Brand(logo=str(logo))
    assert str(logo) in str(info.value)
    assert str(LOGO_BUDGET) in str(info.value)


def test_logo_at_the_budget_is_accepted(tmp_path: Path) -> None:
    logo = tmp_path / "edge.svg"
    logo.write_bytes(_svg_of_size(_largest_fitting_svg()))
    inlined = Brand(logo=str(logo)).logo
    assert inlined is not None
    assert len(inlined) <= LOGO_BUDGET


def test_logo_just_over_the_budget_is_refused(tmp_path: Path) -> None:
    logo = tmp_path / "over.svg"
    logo.write_bytes(_svg_of_size(_largest_fitting_svg() + 1))
    with pytest.raises(ConfigError, match=r"brand\.logo"):
        Brand(logo=str(logo))


def test_logo_data_uri_over_budget_is_refused() -> None:
    # The budget keeps the page under 16 KB; it holds however the logo is given.
    data_uri = "data:image/png;base64," + base64.b64encode(b"\x00" * 8000).decode()
    with pytest.raises(ConfigError, match=r"brand\.logo"):
        Brand(logo=data_uri)


def test_logo_file_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "logo.txt"
    notes.write_text("not an image")
    with pytest.raises(ConfigError, match=r"brand\.logo"):
        Brand(logo=str(notes))


def test_logo_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "logo.svg"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"brand\.logo"):
        Brand(logo=str(folder))


def test_logo_data_uri_is_kept() -> None:
    uri = "data:image/svg+xml;base64," + base64.b64encode(SVG).decode()
    assert Brand(logo=uri).logo == uri


def test_inlined_logo_survives_replace(tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_bytes(SVG)
    config = Config(brand=Brand(name="Acme", logo=str(logo)))
    logo.unlink()
    assert config.replace(debug=True).brand.logo == config.brand.logo


# --------------------------------------------------------------------------- config_from


def test_config_from_none() -> None:
    config = config_from(None, {"debug": True, "brand": {"name": "Acme"}})
    assert config.debug is True
    assert config.brand.name == "Acme"
    assert config_from(None, {}) == Config()


def test_config_from_config_with_overrides() -> None:
    base = Config(brand=Brand(name="Acme"), status_page_url="https://status.acme.example")
    config = config_from(base, {"debug": True})
    assert config.debug is True
    assert config.brand.name == "Acme"
    assert config.status_page_url == "https://status.acme.example"
    assert base.debug is False


def test_config_from_config_alone_is_the_same_object() -> None:
    base = Config(debug=True)
    assert config_from(base, {}) is base


@pytest.mark.parametrize(
    ("config", "options", "match"),
    [
        pytest.param("not a config", {}, "not a gracefail.Config", id="wrong-type"),
        pytest.param({"debug": True}, {}, "not a gracefail.Config", id="dict-as-config"),
        pytest.param(Config(), {"bogus": 1}, "unknown option", id="unknown-override"),
        pytest.param(Config(), {"token_ttl": 1}, "token_ttl", id="bad-override"),
        pytest.param(None, {"debug": "yes"}, "debug", id="bad-option"),
    ],
)
def test_config_from_errors(config: Any, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from(config, options)
