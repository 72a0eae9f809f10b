"""Regenerate the page's screenshots in docs/screenshots/ (``make screenshots``).

Runs the browser tests' servers (the fake upstream, the Starlette app under uvicorn, a
fake Statuspage) and photographs the page in Debian's Chromium after its first failed
probe: desktop and mobile, 502 and 504, a non-English locale, and dark mode.

Run from the repository root: ``python -m tests.browser.screenshots [--out DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

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
# (file, upstream state, viewport, colour scheme, Accept-Language, device scale)
SHOTS: list[tuple[str, str, dict[str, int], str, str, float]] = [
    ("page-502-desktop.png", "down", DESKTOP, "light", "en-US,en;q=0.9", 1),
    ("page-504-desktop.png", "slow", DESKTOP, "light", "en-US,en;q=0.9", 1),
    ("page-502-mobile.png", "down", MOBILE, "light", "en-US,en;q=0.9", 2),
    ("page-502-es-desktop.png", "down", DESKTOP, "light", "es-ES,es;q=0.9", 1),
    ("page-502-dark-desktop.png", "down", DESKTOP, "dark", "en-US,en;q=0.9", 1),
    ("page-502-dark-mobile.png", "down", MOBILE, "dark", "en-US,en;q=0.9", 2),
]
# First probe after 1 to 3 s, then waits of up to 4 s, 8 s...: long enough to photograph.
RETRY = {"retry_after": 1, "base": 2, "cap": 60, "give_up_after": 600}
# After a failed probe, with the next one more than a second away ("Next check in 2 s").
SETTLED = """() => {
  var s = window.gracefail.state;
  return s.failures >= 1 && !s.busy && s.nextAt - Date.now() > 1200;
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
                for name, state, viewport, scheme, language, scale in SHOTS:
                    key = "shot-" + name.removesuffix(".png")
                    upstream.set(key, state)
                    tab = Tab(
                        browser,
                        viewport=viewport,
                        device_scale_factor=scale,
                        color_scheme=scheme,
                        reduced_motion="reduce",
                        extra_http_headers={
                            "Accept-Language": language,
                            # A fixed incident id, so the pictures only change with the page.
                            "X-Request-ID": "7f3a9c2e5b1d4a68",
                        },
                    )
                    tab.goto(app.url(f"/{key}/orders/1042"))
                    tab.page.wait_for_selector("#gf-ls:not([hidden])")
                    eventually(
                        lambda t=tab: t.page.evaluate(SETTLED), "a settled page", 30, tab.page
                    )
                    path = out / name
                    tab.page.screenshot(path=str(path), full_page=True, animations="disabled")
                    if tab.problems:
                        sys.exit(f"{name}: {tab.problems}")
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
