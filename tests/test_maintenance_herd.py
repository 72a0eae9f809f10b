"""The herd at a known end: 10,000 maintenance pages waiting for the same planned end come
back spread out, at most 5% of them in the busiest second.

The page's own script runs under node, once per page, in a small harness that fakes the
DOM it touches and records the first timer it sets (no request is made, no timer fires
unless the test fires it). In CI (``CI=true``) a missing node fails; elsewhere it skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter

from gracefail import Config
from gracefail.maintenance import Maintenance, MaintenanceWatch
from gracefail.maintenance_page import SPREAD, MaintenanceGate
from tests.conftest import require

PAGES = 10_000

HARNESS = r"""
"use strict";
const fs = require("fs");
const vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const script = new vm.Script(input.script);
const firsts = [];
let nodes = null;
let timers = null;
const context = {
  document: {getElementById: (id) => nodes[id] || null},
  setTimeout: (fn, ms) => { timers.push([fn, ms]); return timers.length; },
  fetch: () => Promise.resolve({status: 503}),
  location: {pathname: "/shop", search: "",
             replace: () => { throw new Error("no navigation expected"); }},
  Math, JSON, Intl,
  Date: class extends Date {
    constructor(...args) { if (args.length) { super(...args); } else { super(input.now); } }
    static now() { return input.now; }
  },
};
vm.createContext(context);
let last = null;
for (let page = 0; page < input.pages; page++) {
  nodes = {
    "gf-config": {textContent: input.settings},
    "gf-live": {textContent: ""},
    "gf-end": {textContent: ""},
  };
  timers = [];
  script.runInContext(context);
  firsts.push(timers[0][1]);
  last = {nodes, timers};
}
// The last page's first probe, fired after the end: the site still answers 503.
input.now += 1000 * 3600;
last.timers[0][0]();
setTimeout(() => {
  console.log(JSON.stringify({
    firsts,
    end: last.nodes["gf-end"].textContent,
    state: last.nodes["gf-live"].textContent,
    retries: last.timers.length,
  }));
}, 0);
"""


def test_ten_thousand_pages_waiting_for_one_end_come_back_spread_out() -> None:
    node = shutil.which("node")
    require(node is not None, "node", "apt-get install nodejs")
    assert node is not None
    now = time.time()
    ends = now + 5.0
    state = Maintenance(started=now - 60, ends=ends, message="", set_by="test")
    config = Config(secret="herd-test-secret-0123456789", recorders=[])
    gate = MaintenanceGate(config, watch=MaintenanceWatch("unused.sqlite3"))
    body, _ = gate.body(
        "html", state, incident="herd", safe=True, url="/shop", retry_after=5, now=now
    )
    page = body.decode()
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    settings = re.search(
        r'<script type="application/json" id="gf-config">(.*?)</script>', page, re.S
    )
    assert script is not None
    assert settings is not None
    run = subprocess.run(
        [node, "-e", HARNESS],
        input=json.dumps({"script": script.group(1), "settings": settings.group(1),
                          "pages": PAGES, "now": now * 1000}),
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result = json.loads(run.stdout)
    firsts = result["firsts"]
    assert len(firsts) == PAGES
    # Nobody comes back before the planned end, everyone within the spread after it (the
    # page has the end to the second, rounded up).
    assert min(firsts) >= 5000
    assert max(firsts) <= 6000 + SPREAD * 1000
    per_second = Counter(int((now * 1000 + delay) // 1000) for delay in firsts)
    busiest = max(per_second.values())
    assert busiest <= 0.05 * PAGES, f"{busiest} pages in the busiest second"
    # The end is shown in the reader's local time, not left as the ISO text.
    assert result["end"]
    assert "T" not in result["end"]
    # Past the end and still down: the page says so and keeps probing.
    assert "longer than planned" in result["state"]
    assert result["retries"] == 2
    print(f"known end: {busiest} of {PAGES} pages ({busiest / PAGES:.1%}) in the busiest second")
