"""Issue 12, defect 4: the page sends a beacon again after a 429 that says when.

The server limits beacons per user and per page view and answers 429 with
``Retry-After``; the page used to treat every 4xx as final, so a user behind a busy
proxy lost its ``shown`` for good. Now the beacon waits in sessionStorage and the
queue goes out again after the delay (plus jitter that grows while answers stay 429);
a 429 without ``Retry-After`` (the page view's bound) stays final.

recover.js runs under node with a fake DOM, fetch, timers and sessionStorage, as
written and as the page inlines it (minified); and once in Chromium, whose real fetch
must let the page read ``Retry-After``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from email.utils import formatdate
from importlib import resources
from typing import Any

import pytest

from gracefail.config import Config
from gracefail.render import Renderer
from tests.conftest import require

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
const stored = new Map();
const storage = {
  getItem: (key) => (stored.has(key) ? stored.get(key) : null),
  setItem: (key, value) => stored.set(key, String(value)),
  removeItem: (key) => stored.delete(key),
};
const timers = [];
const fetches = [];
const plan = input.plan.slice();
function fakeFetch(url, options) {
  const answer = plan.length ? plan.shift() : {status: 204};
  fetches.push({url: url, body: options.body, keepalive: !!options.keepalive,
                status: answer.status});
  if (answer.status === 0) {
    return Promise.reject(new TypeError("network error"));
  }
  return Promise.resolve({
    status: answer.status, ok: answer.status >= 200 && answer.status < 300,
    headers: {get: (name) => name.toLowerCase() === "retry-after" && answer.retryAfter !== undefined
      ? answer.retryAfter : null},
  });
}
const sandbox = {
  console: console, JSON: JSON, Math: Math, Date: Date, Promise: Promise,
  setTimeout: (fn, delay) => { timers.push({fn: fn, delay: delay, done: false});
                               return timers.length; },
  clearTimeout: (id) => { if (id && timers[id - 1]) { timers[id - 1].done = true; } },
  setInterval: () => 0, clearInterval: noop,
  fetch: fakeFetch,
  AbortController: class { constructor() { this.signal = {}; } abort() {} },
  performance: {now: () => 1234, timeOrigin: 0},
  sessionStorage: storage, localStorage: storage,
  history: {length: 1},
  location: {pathname: "/shop", search: "", href: "http://shop.test/shop",
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
const settle = () => new Promise((resolve) => setImmediate(resolve));

(async () => {
  vm.runInContext(input.script, sandbox, {filename: "recover.js"});
  // The first timer is the give-up deadline (the tab is hidden: no probe is scheduled).
  timers[0].done = true;
  const delays = [];
  for (let round = 0; round < 20; round++) {
    await settle();
    const pending = timers.filter((t) => !t.done);
    if (!pending.length) {
      break;
    }
    for (const timer of pending) {
      timer.done = true;
      delays.push(timer.delay);
      timer.fn();
    }
  }
  await settle();
  const queue = JSON.parse(storage.getItem("gracefail:queue") || "[]");
  process.stdout.write(JSON.stringify({fetches: fetches, delays: delays, queue: queue}));
})().catch((error) => { console.error(error); process.exit(1); });
"""

SECRET = "test-secret-0123456789abcdef"


def node() -> str:
    found = shutil.which("node") or ("/usr/bin/node" if os.path.exists("/usr/bin/node") else None)
    require(found is not None, "node", "apt-get install nodejs")
    assert found is not None
    return found


def renderer() -> Renderer:
    return Renderer(Config(secret=SECRET, recorders=[]))


def source_script() -> str:
    return (resources.files("gracefail") / "assets" / "recover.js").read_text("utf-8")


def inlined_script() -> str:
    return renderer().js


SCRIPTS = [pytest.param(source_script, id="source"), pytest.param(inlined_script, id="inlined")]


def run(script: Callable[[], str], plan: list[dict[str, Any]]) -> dict[str, Any]:
    config = renderer().script_config(502, "en", True)
    config.update(url="/shop", incident="abc", token="the-token")
    payload = json.dumps({"script": script(), "config": json.dumps(config), "plan": plan})
    done = subprocess.run(
        [node(), "-e", HARNESS], input=payload, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def kinds(result: dict[str, Any]) -> list[tuple[str, int]]:
    return [(json.loads(f["body"])["kind"], f["status"]) for f in result["fetches"]]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_429_with_retry_after_is_sent_again_after_it(script: Callable[[], str]) -> None:
    result = run(script, [{"status": 429, "retryAfter": "7"}, {"status": 204}])
    assert kinds(result) == [("shown", 429), ("shown", 204)]
    first, again = result["fetches"]
    assert first["body"] == again["body"], "the same beacon, from the queue"
    assert again["keepalive"], "fetch, whose answer the page can read (sendBeacon's it cannot)"
    [delay] = result["delays"]
    assert 7000 <= delay < 7000 + 2000
    assert result["queue"] == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_429_without_retry_after_is_final(script: Callable[[], str]) -> None:
    result = run(script, [{"status": 429}])
    assert kinds(result) == [("shown", 429)]
    assert result["delays"] == []
    assert result["queue"] == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_wait_grows_while_answers_stay_429(script: Callable[[], str]) -> None:
    plan: list[dict[str, Any]] = [{"status": 429, "retryAfter": "1"}] * 7 + [{"status": 204}]
    result = run(script, plan)
    assert [status for _, status in kinds(result)] == [429] * 7 + [204]
    delays = result["delays"]
    assert len(delays) == 7
    for round_, delay in enumerate(delays, start=1):
        assert 1000 <= delay < 1000 + min(60_000, 1000 * 2**round_)
    assert result["queue"] == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_retry_after_as_a_date(script: Callable[[], str]) -> None:
    later = formatdate(time.time() + 30, usegmt=True)
    result = run(script, [{"status": 429, "retryAfter": later}, {"status": 204}])
    [delay] = result["delays"]
    assert 27_000 <= delay < 31_000 + 2000


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("status", [400, 403, 413])
def test_other_refusals_stay_final(script: Callable[[], str], status: int) -> None:
    result = run(script, [{"status": status, "retryAfter": "3"}])
    assert kinds(result) == [("shown", status)]
    assert result["delays"] == []
    assert result["queue"] == []


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("status", [502, 0])
def test_server_down_still_waits_for_recovery(script: Callable[[], str], status: int) -> None:
    """A 5xx or no answer queues the beacon for after recovery, not on a timer."""
    result = run(script, [{"status": status}])
    assert result["delays"] == []
    assert [json.loads(body)["kind"] for body in result["queue"]] == ["shown"]


# -- in Chromium --------------------------------------------------------------------------


@pytest.mark.browser
def test_chromium_sends_the_beacon_again_after_retry_after() -> None:
    chromium = "/usr/bin/chromium"
    require(
        os.access(chromium, os.X_OK), "Chromium (/usr/bin/chromium)", "apt-get install chromium"
    )
    sync_api = pytest.importorskip("playwright.sync_api")
    from gracefail.classify import Failure
    from gracefail.core import Engine, RequestView

    engine = Engine(Config(secret=SECRET, recorders=[]))
    reply = engine.respond(
        Failure(502, "connection"),
        RequestView("GET", "/shop", headers={"accept": "text/html", "sec-fetch-mode": "navigate"}),
    )
    engine.close()
    beacons: list[tuple[float, str, int]] = []

    def handle(route: Any) -> None:
        request = route.request
        if request.url.endswith("/_gracefail/beacon"):
            status = 429 if not beacons else 204
            beacons.append((time.monotonic(), request.post_data or "", status))
            headers = {"retry-after": "1", "cache-control": "no-store"} if status == 429 else {}
            route.fulfill(status=status, headers=headers, body="")
        else:  # the page, and its probes: the origin is still down
            route.fulfill(status=502, headers=dict(reply.headers), body=reply.body)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("http://shop.test/**", handle)
            page.goto("http://shop.test/shop")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(s == 204 for _, _, s in beacons):
                page.wait_for_timeout(100)
            queue = page.evaluate("() => sessionStorage.getItem('gracefail:queue')")
        finally:
            browser.close()
    shown = [(at, status) for at, body, status in beacons if json.loads(body)["kind"] == "shown"]
    assert [status for _, status in shown] == [429, 204]
    assert shown[1][0] - shown[0][0] >= 1.0, "not before Retry-After"
    assert queue is None
