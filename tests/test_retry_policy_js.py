"""The page's script and RetryPolicy.delay_bounds draw waits from the same intervals.

recover.js runs whole under node, both as written and as the page inlines it (minified),
in a small harness that fakes the DOM it touches (no timer ever fires, no request is
made); its ``window.gracefail.delayBounds`` is then
called for n = 0..12 with several policies, and with none (the page's own config), and
compared with :meth:`gracefail.RetryPolicy.delay_bounds`. In CI (``CI=true``) a missing
node fails; elsewhere it skips.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest

from gracefail import RetryPolicy

ATTEMPTS = range(13)
POLICIES = [
    RetryPolicy(),
    RetryPolicy(retry_after=0, base=0.5, cap=0.5, give_up_after=30),
    RetryPolicy(retry_after=5, base=4.0, cap=62.0, give_up_after=1800),
    RetryPolicy(retry_after=30, base=1.5, cap=300.0, give_up_after=3600),
    RetryPolicy(retry_after=3600, base=60.0, cap=90.0, give_up_after=86400),
    RetryPolicy(retry_after=1, base=3.0, cap=1e6, give_up_after=600),
]

HARNESS = r"""
"use strict";
const fs = require("fs");
const vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));

function element(id) {
  const el = {
    id: id, hidden: false, textContent: id === "gf-config" ? input.config : "",
    classList: {add() {}, remove() {}, contains() { return false; }},
    addEventListener() {}, setAttribute() {}, appendChild() {}, querySelector() { return null; },
  };
  el.lastChild = {textContent: ""};
  el.firstChild = {textContent: ""};
  return el;
}
const elements = {};
const noop = () => {};
const storage = {getItem: () => null, setItem: noop, removeItem: noop};
const sandbox = {
  console: console, JSON: JSON, Math: Math, Date: Date, Promise: Promise,
  setTimeout: () => 0, clearTimeout: noop, setInterval: () => 0, clearInterval: noop,
  fetch: () => new Promise(noop),
  AbortController: class { constructor() { this.signal = {}; } abort() {} },
  performance: {now: () => 0, timeOrigin: 0},
  sessionStorage: storage, localStorage: storage,
  history: {length: 1},
  location: {pathname: "/checkout", search: "?step=2", href: "http://127.0.0.1/checkout?step=2",
             replace: noop, reload: noop},
  navigator: {onLine: true, sendBeacon: () => true},
  addEventListener: noop, removeEventListener: noop,
  document: {
    hidden: true, visibilityState: "hidden",
    documentElement: element("html"),
    getElementById: (id) => (elements[id] = elements[id] || element(id)),
    querySelector: () => null, querySelectorAll: () => [],
    addEventListener: noop, removeEventListener: noop,
    createElement: element,
  },
};
sandbox.window = sandbox;
sandbox.self = sandbox;
vm.createContext(sandbox);
vm.runInContext(input.script, sandbox, {filename: "recover.js"});
const api = sandbox.gracefail;
if (!api || typeof api.delayBounds !== "function") {
  throw new Error("recover.js did not expose window.gracefail.delayBounds");
}
const out = input.cases.map((c) => c.policy === null
  ? api.delayBounds(c.n)
  : api.delayBounds(c.n, c.policy));
process.stdout.write(JSON.stringify(out));
"""


def node() -> str:
    found = shutil.which("node") or ("/usr/bin/node" if os.path.exists("/usr/bin/node") else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is needed to run recover.js (apt-get install nodejs)")
        pytest.skip("node is not installed")
    return found


def source_script() -> str:
    return (resources.files("gracefail") / "assets" / "recover.js").read_text("utf-8")


def inlined_script() -> str:
    """The script exactly as the page carries it."""
    from gracefail.config import Config
    from gracefail.render import Renderer

    return Renderer(Config(secret="x" * 32, recorders=[])).js


SCRIPTS = [pytest.param(source_script, id="source"), pytest.param(inlined_script, id="inlined")]


def run_script(
    script: str, config: dict[str, Any], cases: list[dict[str, Any]]
) -> list[list[float]]:
    payload = json.dumps({"script": script, "config": json.dumps(config), "cases": cases})
    done = subprocess.run(
        [node(), "-e", HARNESS],
        input=payload,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[list[float]] = json.loads(done.stdout)
    return result


def page_config(policy: RetryPolicy) -> dict[str, Any]:
    """The JSON the page's script reads, as the renderer builds it."""
    from gracefail.config import Config
    from gracefail.render import Renderer

    renderer = Renderer(Config(retry=policy, secret="x" * 32, recorders=[]))
    config = renderer.script_config(502, "en", True)
    config.update(url="/checkout?step=2", incident="abc", token="t")
    return config


def same(js: list[float], py: tuple[float, float]) -> bool:
    return len(js) == 2 and all(
        math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12) for a, b in zip(js, py, strict=True)
    )


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("page_policy", [RetryPolicy(), POLICIES[2]], ids=["default", "other"])
def test_delay_bounds_match_python(page_policy: RetryPolicy, script: Callable[[], str]) -> None:
    cases: list[dict[str, Any]] = [
        {"n": n, "policy": policy.to_script()} for policy in POLICIES for n in ATTEMPTS
    ]
    # Without an explicit policy the script uses the page's own (RetryPolicy.to_script()).
    cases += [{"n": n, "policy": None} for n in ATTEMPTS]
    got = run_script(script(), page_config(page_policy), cases)
    expected = [policy.delay_bounds(n) for policy in POLICIES for n in ATTEMPTS]
    expected += [page_policy.delay_bounds(n) for n in ATTEMPTS]
    wrong = [
        (case, js, py)
        for case, js, py in zip(cases, got, expected, strict=True)
        if not same(js, py)
    ]
    assert not wrong, f"JavaScript and Python disagree (case, js, python): {wrong[:5]}"


def test_the_page_inlines_a_minified_script() -> None:
    """Comments, indentation and long names are for the reader of recover.js, not the page."""
    source, inlined = source_script(), inlined_script()
    assert "/*" in source
    assert "/*" not in inlined
    assert "\n  " not in inlined
    assert len(inlined) < 0.5 * len(source)
    # Local names are shortened; what the page's API and the DOM know by name stays.
    assert "scheduleNextProbe" in source
    assert "scheduleNextProbe" not in inlined
    assert "window.gracefail={delayBounds:" in inlined
