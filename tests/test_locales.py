"""Locales: the shipped seven stay complete and consistent; a template_dir's locales/*.json
overrides single strings or adds a language; bad files are named with their line; and
`gracefail check` reports the strings a locale lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gracefail import Config, ConfigError
from gracefail.classify import Failure
from gracefail.cli import main
from gracefail.config import LOCALES
from gracefail.core import Engine, RequestView
from gracefail.locales import load, placeholders
from gracefail.render import Renderer

SECRET = "locales-secret-0123456789"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
SHIPPED = Path(__import__("gracefail").__file__).parent / "locales"


def shipped(locale: str) -> dict[str, str]:
    strings: dict[str, str] = json.loads((SHIPPED / f"{locale}.json").read_text("utf-8"))
    return strings


def theme(tmp_path: Path, **files: dict[str, str] | str) -> Path:
    folder = tmp_path / "locales"
    folder.mkdir()
    for name, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content)
        (folder / f"{name.replace('_', '-')}.json").write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("locale", LOCALES)
def test_every_shipped_locale_has_every_key_with_the_same_placeholders(locale: str) -> None:
    english, strings = shipped("en"), shipped(locale)
    assert set(strings) == set(english), set(strings) ^ set(english)
    for key, text in strings.items():
        assert text.strip(), (locale, key)
        # {brand} may be left out of a sentence; what the page or script fills may not.
        needed = placeholders(english[key]) - {"{brand}"}
        assert needed <= placeholders(text) <= placeholders(english[key]) | {"{brand}"}, (
            locale,
            key,
        )


def test_a_locale_file_overrides_single_strings(tmp_path: Path) -> None:
    folder = theme(tmp_path, de={"heading": "Gleich wieder da"}, en={"heading": "Back soon"})
    gracefail = Engine(Config(secret=SECRET, recorders=[], template_dir=folder))
    german = gracefail.respond(
        Failure(502, "connection"), RequestView("GET", "/", "", {**NAV, "accept-language": "de"})
    ).body.decode()
    assert "<h1>Gleich wieder da</h1>" in german
    assert shipped("de")["tips_heading"] in german, "the other German strings stay"
    french = gracefail.renderer.locales["fr"]
    assert french["heading"] == shipped("fr")["heading"], "English overrides stay English"


def test_a_locale_file_adds_a_language(tmp_path: Path) -> None:
    dutch = {
        "heading": "Deze pagina is nu niet beschikbaar",
        "js_next": "Volgende poging over {s} s",
    }
    renderer = Renderer(
        Config(secret=SECRET, recorders=[], template_dir=theme(tmp_path, nl=dutch)), strict=True
    )
    assert renderer.locale_names == (*LOCALES, "nl")
    assert len(renderer.pages) == 4 * (len(LOCALES) + 1)
    body, _, _ = renderer.body(
        "html", Failure(502, "connection"), "nl", True, "incident", "token", "/x"
    )
    page = body.decode()
    assert '<html lang="nl">' in page
    assert "<h1>Deze pagina is nu niet beschikbaar</h1>" in page
    assert shipped("en")["tips_heading"] in page, "English fills what Dutch lacks"
    assert set(renderer.wording.missing) == {"nl"}
    assert "heading" not in renderer.wording.missing["nl"]
    assert "tips_heading" in renderer.wording.missing["nl"]


def test_an_added_language_is_chosen_from_accept_language(tmp_path: Path) -> None:
    folder = theme(tmp_path, nl={"heading": "Deze pagina is nu niet beschikbaar"})
    gracefail = Engine(Config(secret=SECRET, recorders=[], template_dir=folder))
    view = RequestView("GET", "/", "", {**NAV, "accept-language": "nl-NL,nl;q=0.9"})
    page = gracefail.respond(Failure(502, "connection"), view).body.decode()
    assert '<html lang="nl">' in page


def test_a_themes_own_keys_are_missing_where_it_gives_no_words(tmp_path: Path) -> None:
    wording = load(LOCALES, theme(tmp_path, en={"nav_help": "Help"}, de={"nav_help": "Hilfe"}))
    assert wording.table["de"]["nav_help"] == "Hilfe"
    assert wording.table["fr"]["nav_help"] == "Help"
    assert dict(wording.missing) == {
        locale: ("nav_help",) for locale in LOCALES if locale not in ("en", "de")
    }


def test_file_names_are_matched_to_the_shipped_locales_case_insensitively(tmp_path: Path) -> None:
    wording = load(LOCALES, theme(tmp_path, pt_br={"heading": "Já volta"}))
    assert wording.names == LOCALES
    assert wording.table["pt-BR"]["heading"] == "Já volta"


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        pytest.param(
            "de", '{\n  "heading": "Gleich"\n  "tip_wait": "Warten"\n}',
            r"locales/de\.json, line 3 column 3: not valid JSON \(Expecting ',' delimiter\)",
            id="invalid-json",
        ),
        pytest.param("de", '["heading"]', r"de\.json: expected a JSON object", id="not-an-object"),
        pytest.param("de", '{"heading": 1}', "the values of heading are not strings", id="number"),
        pytest.param("dutch!", "{}", "not a language tag", id="file-name"),
    ],
)  # fmt: skip
def test_bad_locale_files_fail_at_start_up_naming_the_file(
    tmp_path: Path, name: str, content: str, error: str
) -> None:
    folder = theme(tmp_path, **{name: content})
    with pytest.raises(ConfigError, match=error):
        Engine(Config(secret=SECRET, recorders=[], template_dir=folder))
    with pytest.raises(ConfigError, match=error):  # and with messages, when the Config is made
        Config(template_dir=folder, messages={"/x": {"heading": "x"}})
    result = CliRunner().invoke(main, ["check", "--template-dir", str(folder)])
    assert result.exit_code == 1
    assert f"{folder / 'locales'}" in result.output


def test_check_reports_the_strings_a_locale_lacks(tmp_path: Path) -> None:
    folder = theme(tmp_path, nl={"heading": "Even niet beschikbaar"}, en={"nav_help": "Help"})
    result = CliRunner().invoke(main, ["check", "--template-dir", str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    [dutch] = [line for line in lines if line.startswith("  missing   nl ")]
    assert f"({folder / 'locales' / 'nl.json'})" in dutch
    assert "shown in English: " in dutch
    lacking = dutch.split("shown in English: ", 1)[1].split(", ")
    assert "tips_heading" in lacking
    assert "maintenance_heading" in lacking
    assert "heading" not in lacking
    [german] = [line for line in lines if line.startswith("  missing   de ")]
    assert german.endswith("(no locales/de.json) lacks 1 string, shown in English: nav_help")
    assert any(line.startswith("    nl ") for line in lines), "the added language's page sizes"
    report = json.loads(
        CliRunner().invoke(main, ["check", "--template-dir", str(folder), "--json"]).output
    )
    assert report["missing_keys"]["de"] == ["nav_help"]
    assert report["variants"] == 4 * (len(LOCALES) + 1)


def test_check_says_nothing_is_missing_for_the_shipped_locales() -> None:
    result = CliRunner().invoke(main, ["check"])
    assert "missing" not in result.output
