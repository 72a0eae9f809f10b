// gracefail recover.js: retries with backoff, reports through beacons, shows live status.
// Reads the JSON in #gf-config (built by render.py). Strings are cfg.t.js_* from the locale:
// js_checking, js_still, js_offline, js_online, js_back, js_service_back, js_gave_up;
// js_next ("{s}" = whole seconds left), js_status ("{s}" = status description),
// js_affected ("{s}" = comma-separated component names).
// render.py compacts this file line by line (strips indentation, drops blank and "//" lines):
// comments only on lines of their own, a semicolon after every statement, no multi-line strings.
(function () {
"use strict";
var d = document, w = window, nav = navigator, root = d.documentElement, cfg;
try {
cfg = JSON.parse(d.getElementById("gf-config").textContent);
} catch (e) {
return;
}
root.classList.add("js");
var T = cfg.t, R = cfg.retry, Q = "gracefail:queue";
// The page is served at the URL that failed: retry what the browser shows, which stays right
// behind a proxy that rewrites paths and for pages exported to a proxy's error_page.
var here = location.pathname + location.search;
// Exposed as window.gracefail.state. nextAt: Date.now() of the next scheduled probe, 0 if none.
var st = {attempts: 0, failures: 0, outcome: null, busy: false, paused: false, offline: false, gaveUp: false, back: false, nextAt: 0};
var timer = 0, gtimer = 0, giveUpAt = 1000 * R.giveUpAfter;
function $(id) {
return d.getElementById(id);
}
var live = $("gf-live"), count = $("gf-count"), wait = $("gf-wait"), btn = $("gf-retry"), back = $("gf-back"), link = $("gf-link");
// Only real changes reach the live region, so screen readers hear state changes, not ticks.
function text(el, s) {
s = s || "";
if (el.textContent !== s) { el.textContent = s; }
}
function say(s) {
text(live, s);
}
// Must equal RetryPolicy.delay_bounds(n) in config.py: the wait (seconds) before probe n+1.
function delayBounds(n, r) {
r = r || R;
if (n < 1) { return [r.after, r.after + r.base]; }
return [0, Math.min(r.cap, r.base * Math.pow(2, Math.min(n, 60)))];
}
// Beacons go by fetch while the page lives; those that fail wait in sessionStorage.
function qget() {
try {
var a = JSON.parse(sessionStorage.getItem(Q) || "[]");
return Array.isArray(a) ? a : [];
} catch (e) {
return [];
}
}
function qset(a) {
try {
if (a.length) { sessionStorage.setItem(Q, JSON.stringify(a.slice(-50))); } else { sessionStorage.removeItem(Q); }
} catch (e) {}
}
function qpush(b) {
qset(qget().concat([b]));
}
function body(kind) {
return JSON.stringify({token: cfg.token, kind: kind, attempt: st.attempts, elapsed_ms: Math.round(performance.now()), locale: cfg.locale});
}
// 2xx/4xx: done (a 4xx is a rejection, resending would not help); 5xx or no answer: queue it.
function post(b) {
try {
fetch(cfg.beacon, {method: "POST", body: b, keepalive: true, headers: {"Content-Type": "text/plain;charset=UTF-8"}, cache: "no-store", credentials: "same-origin"}).then(function (r) {
if (r.status >= 500) { qpush(b); }
}, function () {
qpush(b);
});
} catch (e) {
qpush(b);
}
}
function sb(b) {
try {
return !!(nav.sendBeacon && nav.sendBeacon(cfg.beacon, b));
} catch (e) {
return false;
}
}
function beacon(kind) {
post(body(kind));
}
// Resend the queue; when leaving, sendBeacon outlives the navigation. What is handed over leaves the queue.
function flush(leaving) {
var a = qget(), rest = [];
qset([]);
a.forEach(function (b) {
if (!leaving) { post(b); } else if (!sb(b)) { rest.push(b); }
});
if (rest.length) { qset(rest.concat(qget())); }
}
// The first outcome wins (recovered, gave_up or abandoned): one per page view.
function outcome(kind) {
if (st.outcome) { return null; }
st.outcome = kind;
return body(kind);
}
// fetch that gives up after "limit" ms, body included (aborting rejects like a network error).
function get(url, opts, limit) {
var ctl = new AbortController();
setTimeout(function () {
ctl.abort();
}, limit);
opts.signal = ctl.signal;
return fetch(url, opts);
}
// The countdown is outside the live region and may change every second.
function show() {
var left = st.nextAt ? Math.max(1, Math.ceil((st.nextAt - Date.now()) / 1000)) : 0;
wait.hidden = st.back || !(st.busy || left);
text(count, st.back ? "" : st.busy ? T.js_checking : left ? T.js_next.replace("{s}", left) : "");
}
function stop() {
clearTimeout(timer);
st.nextAt = 0;
}
function schedule(delay) {
stop();
st.nextAt = Date.now() + delay;
timer = setTimeout(probe, delay);
show();
}
function plan() {
var b = delayBounds(st.attempts, R);
schedule(1000 * (b[0] + Math.random() * (b[1] - b[0])));
}
function armGiveUp() {
clearTimeout(gtimer);
gtimer = setTimeout(giveUp, Math.max(0, giveUpAt - performance.now()));
}
// Safe methods probe the page itself, unsafe ones only the health URL: nothing is ever resubmitted.
function probe(manual) {
if (st.busy || st.back || (!manual && st.gaveUp)) { return; }
stop();
if (!manual && d.hidden) {
st.paused = true;
return show();
}
if (!manual && nav.onLine === false) { return offline(); }
st.busy = true;
st.paused = false;
st.attempts++;
beacon("retry");
show();
var u = cfg.safe ? here : cfg.health;
get(u + (u.indexOf("?") < 0 ? "?" : "&") + "_gf=" + Math.random().toString(36).slice(2), {cache: "no-store", credentials: "same-origin", redirect: "manual", headers: {"X-Gracefail-Probe": "1"}}, 20000).then(function (r) {
return r.type === "opaqueredirect" || (r.status > 0 && r.status < 500);
}, function () {
return false;
}).then(function (ok) {
st.busy = false;
if (ok) { up(); } else { down(); }
});
}
function up() {
stop();
clearTimeout(gtimer);
st.back = true;
var b = outcome("recovered");
show();
if (cfg.safe) {
say(T.js_back);
if (b && !sb(b)) { post(b); }
flush(true);
// replace() to a URL with a #fragment would only scroll: reload keeps both the entry and the fragment.
if (location.hash) { location.reload(); } else { location.replace(here); }
return;
}
say(T.js_service_back);
btn.hidden = true;
back.hidden = history.length < 2;
link.hidden = false;
if (b) { post(b); }
flush(false);
}
function down() {
st.failures++;
if (st.failures >= cfg.tipsAfter) { root.classList.add("gf-more"); }
if (st.gaveUp) {
say(T.js_gave_up);
return show();
}
if (performance.now() >= giveUpAt) { return giveUp(); }
if (nav.onLine === false) { return offline(); }
say(T.js_still);
if (d.hidden) {
st.paused = true;
return show();
}
plan();
}
// Hidden or offline, nobody is watching: wait (sending nothing); back, the page checks once
// more and down() gives up if that fails too.
function giveUp() {
if (st.gaveUp || st.back) { return; }
stop();
clearTimeout(gtimer);
if (nav.onLine === false) { return offline(); }
if (d.hidden) {
st.paused = true;
return show();
}
st.gaveUp = true;
var b = outcome("gave_up");
if (b) { post(b); }
root.classList.add("gf-more");
say(T.js_gave_up);
show();
}
function offline() {
stop();
st.offline = true;
say(T.js_offline);
show();
}
w.addEventListener("offline", function () {
if (!st.back && !st.gaveUp) { offline(); }
});
w.addEventListener("online", function () {
if (st.offline && !st.back && !st.gaveUp) {
st.offline = false;
say(T.js_online);
probe();
}
});
// A hidden tab pauses and sends nothing; back in view, it probes within about a second.
d.addEventListener("visibilitychange", function () {
if (d.hidden) {
if (st.nextAt) {
stop();
st.paused = true;
}
} else if (st.paused && !st.back && !st.gaveUp && !st.offline) {
st.paused = false;
schedule(200 + Math.random() * 800);
}
});
// Restored from the back/forward cache: probe again at once, but never send a second outcome.
w.addEventListener("pageshow", function (e) {
if (!e.persisted || (st.back && !cfg.safe)) { return; }
st.back = st.gaveUp = st.busy = st.paused = st.offline = false;
giveUpAt = performance.now() + 1000 * R.giveUpAfter;
armGiveUp();
probe();
});
w.addEventListener("pagehide", function () {
stop();
var b = outcome("abandoned");
if (b && !sb(b)) { post(b); }
});
btn.addEventListener("click", function () {
if (st.busy || st.back) { return; }
beacon("manual_retry");
say(T.js_checking);
probe(true);
});
back.addEventListener("click", function () {
history.back();
});
[].forEach.call(d.querySelectorAll("a.gf-st"), function (a) {
a.addEventListener("click", function () {
beacon("status_click");
});
});
// Live status from a Statuspage-compatible summary.json; any failure leaves the page as it was.
function liveStatus() {
if (!cfg.statusApi || d.hidden) { return; }
get(cfg.statusApi, {cache: "no-store", credentials: "omit"}, 3000).then(function (r) {
return r.json();
}).then(function (j) {
var s = j.status, el = $("gf-ls"), names = [];
(j.components || []).forEach(function (c) {
if (c && c.status !== "operational" && typeof c.name === "string" && names.indexOf(c.name) < 0) { names.push(c.name); }
});
if (!s || typeof s.description !== "string") { return; }
el.className = "ls i-" + (/^(none|minor|major|critical)$/.test(s.indicator) ? s.indicator : "x");
el.lastChild.textContent = T.js_status.replace("{s}", s.description) + (names.length ? " \u00b7 " + T.js_affected.replace("{s}", names.slice(0, 6).join(", ")) : "");
el.hidden = false;
}).catch(function () {});
}
w.gracefail = {delayBounds: delayBounds, state: st};
btn.hidden = false;
link.hidden = true;
flush(false);
beacon("shown");
armGiveUp();
if (nav.onLine === false) {
offline();
} else if (d.hidden) {
st.paused = true;
} else {
plan();
}
setInterval(show, 1000);
liveStatus();
setInterval(liveStatus, 300000);
})();
