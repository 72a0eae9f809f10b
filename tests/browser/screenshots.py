"""Regenerate the page's screenshots in docs/screenshots/ (``make screenshots``).

Runs the browser tests' servers (the fake upstream, the Starlette app under uvicorn, a
fake Statuspage) and photographs the page in Debian's Chromium after its first failed
probe: desktop and mobile, 502 and 504, a non-English locale, and dark mode; and a refused
connection after three failed probes, when the second-stage tip shows.

Run from the repository root: ``python -m tests.browser.screenshots [--out DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from playwright.sync_api import sync_playwright

from tests.browser.apps import REFUSED_PREFIX
from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DEFAULT_OPTIONS,
    App,
    FakeStatuspage,
    Tab,
    Upstream,
    eventually,
)
from tests.conftest import ROOT

OUT = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 375, "height": 740}
ENGLISH = "en-US,en;q=0.9"


class Shot(NamedTuple):
    """One picture. upstream: the fake upstream's state for the page's key, or "refused"
    (a key the app's call to is refused: the "could not reach" story)."""

    name: str
    upstream: str
    viewport: dict[str, int]
    scheme: str = "light"
    language: str = ENGLISH
    scale: float = 1
    failures: int = 1


SHOTS = [
    Shot("page-502-desktop.png", "down", DESKTOP),
    Shot("page-504-desktop.png", "slow", DESKTOP),
    Shot("page-502-mobile.png", "down", MOBILE, scale=2),
    Shot("page-502-es-desktop.png", "down", DESKTOP, language="es-ES,es;q=0.9"),
    Shot("page-502-dark-desktop.png", "down", DESKTOP, scheme="dark"),
    Shot("page-502-dark-mobile.png", "down", MOBILE, scheme="dark", scale=2),
    # After tipsAfter (3) failed probes: the "if only you see this" tip is shown.
    Shot("page-502-refused-desktop.png", "refused", DESKTOP, failures=3),
]
# First probe after 1 to 3 s, then waits of up to 4 s, 8 s...: long enough to photograph.
RETRY = {"retry_after": 1, "base": 2, "cap": 60, "give_up_after": 600}
# After enough failed probes, with the next one more than a second away ("Next check in 2 s").
SETTLED = """(failures) => {
  var s = window.gracefail.state;
  return s.failures >= failures && !s.busy && s.nextAt - Date.now() > 1200;
}"""


def shoot(out: Path) -> list[Path]:
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    statuspage = FakeStatuspage()
    upstream = Upstream()
    with tempfile.TemporaryDirectory() as tmp:
        options: dict[str, Any] = {
            **DEFAULT_OPTIONS,
            "retry": RETRY,
            "status_api_url": statuspage.url,
        }
        app = App("asgi", upstream, Path(tmp) / "log.jsonl", options).start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for shot in SHOTS:
                    key = "shot-" + shot.name.removesuffix(".png")
                    if shot.upstream == "refused":
                        key = f"{REFUSED_PREFIX}-{key}"
                    else:
                        upstream.set(key, shot.upstream)
                    tab = Tab(
                        browser,
                        viewport=shot.viewport,
                        device_scale_factor=shot.scale,
                        color_scheme=shot.scheme,
                        reduced_motion="reduce",
                        extra_http_headers={
                            "Accept-Language": shot.language,
                            # A fixed incident id, so the pictures only change with the page.
                            "X-Request-ID": "7f3a9c2e5b1d4a68",
                        },
                    )
                    tab.goto(app.url(f"/{key}/orders/1042"))
                    tab.page.wait_for_selector("#gf-ls:not([hidden])")
                    eventually(
                        lambda t=tab, n=shot.failures: t.page.evaluate(SETTLED, n),
                        "a settled page",
                        30 * shot.failures,
                        tab.page,
                    )
                    path = out / shot.name
                    tab.page.screenshot(path=str(path), full_page=True, animations="disabled")
                    if tab.problems:
                        sys.exit(f"{shot.name}: {tab.problems}")
                    tab.close()
                    upstream.set(key, "up")
                    written.append(path)
                browser.close()
        finally:
            app.stop()
            upstream.stop()
            statuspage.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    args = parser.parse_args()
    for path in shoot(args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
