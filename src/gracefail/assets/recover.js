/*
 * gracefail recover.js: brings the user back to the page that failed, without hammering the
 * server, and reports what the user went through.
 *
 * Reads the JSON in #gf-config (built by render.py's Renderer.script_config). Its "t" holds
 * the locale's js_* strings: js_checking, js_still, js_offline, js_online, js_back,
 * js_service_back, js_gave_up; js_next ("{s}" = whole seconds left), js_status ("{s}" = the
 * status description), js_affected ("{s}" = comma-separated component names).
 *
 * render.py minifies this file (calmjs.parse: local names shortened, comments and spaces
 * dropped) before inlining it, and the page's CSP hashes the minified text. So write for
 * the reader, in ES5 (the minifier parses ES5 only); long local names and comments cost
 * nothing. What does cost, in a page that must stay under 16 KB with any brand, are global
 * and property names and keywords: hence local aliases for the globals used most (doc, nav,
 * win, math, after, stopTimer, now, pageAge, on), one var statement per scope, and guard
 * clauses on one line.
 * window.gracefail ({delayBounds, state, tab}) is what the tests drive: keep its shape.
 *
 * Tabs: every page of this origin in this browser profile shares one prober (see "tabs"
 * below). A page whose config has no token (the exported pages, the service worker's)
 * sends no beacons: no server could accept them.
 */
(function () {
  "use strict";

  var doc = document,
    nav = navigator,
    win = window,
    math = Math,
    after = setTimeout,
    stopTimer = clearTimeout,
    root = doc.documentElement,
    config;
  try {
    config = JSON.parse(doc.getElementById("gf-config").textContent);
  } catch (error) {
    // No usable config: leave the page as it is without JavaScript (link and meta refresh).
    return;
  }
  // Lets the CSS hide what only makes sense without the script (the second-stage tips).
  root.classList.add("js");

  var strings = config.t,
    policy = config.retry,
    QUEUE_KEY = "gracefail:queue",
    // The page is served at the URL that failed: retry what the browser shows, which stays
    // right behind a proxy that rewrites paths and for pages exported to a proxy's error_page.
    pageUrl = location.pathname + location.search,
    // Exposed as window.gracefail.state. nextAt: Date.now() of the next scheduled probe, 0
    // if none; back: the origin answered again. busy, paused, offline, gaveUp: see reset().
    state = {attempts: 0, failures: 0, outcome: null, nextAt: 0},
    probeTimer = 0,
    giveUpTimer = 0,
    // On the page's own clock (performance.now() counts from navigation start).
    giveUpAt = 1000 * policy.giveUpAfter,
    liveRegion = byId("gf-live"),
    countdown = byId("gf-count"),
    waitRow = byId("gf-wait"),
    retryButton = byId("gf-retry"),
    backButton = byId("gf-back"),
    fallbackLink = byId("gf-link");

  // The flags of a page waiting for the origin: at the start, and back from the back/forward
  // cache.
  function reset() {
    state.back = state.gaveUp = state.busy = state.paused = state.offline = false;
  }

  function byId(id) {
    return doc.getElementById(id);
  }

  function randomId() {
    return math.random().toString(36).slice(2);
  }

  function now() {
    return Date.now();
  }

  function on(target, type, listener) {
    target.addEventListener(type, listener);
  }

  // Milliseconds since this page's navigation started.
  function pageAge() {
    return performance.now();
  }

  function offline() {
    return nav.onLine === false;
  }

  // Only real changes touch the DOM, so the live region (role="status") speaks on state
  // changes, not on every tick.
  function setText(element, value) {
    value = value || "";
    if (element.textContent !== value) element.textContent = value;
  }

  function announce(message) {
    setText(liveRegion, message);
  }

  // Must equal RetryPolicy.delay_bounds(n) in config.py (tests/test_retry_policy_js.py checks):
  // the interval, in seconds, the wait before probe n+1 is drawn from. The first wait honours
  // Retry-After; the others are capped exponential backoff with full jitter, so pages that
  // failed together spread out instead of returning as a herd.
  function delayBounds(attempt, retryPolicy) {
    retryPolicy = retryPolicy || policy;
    if (attempt < 1) return [retryPolicy.after, retryPolicy.after + retryPolicy.base];
    // Capped at 2^60 as in Python, where a float power would overflow on a long-open page.
    return [0, math.min(retryPolicy.cap, retryPolicy.base * math.pow(2, math.min(attempt, 60)))];
  }

  // -- beacons ----------------------------------------------------------------------------
  // Beacons go by fetch while the page lives. Those that fail (the server is down, which is
  // the whole point of this page) wait in sessionStorage and go out after recovery, from
  // this page or from the next one of the tab.

  function readQueue() {
    try {
      var queued = JSON.parse(sessionStorage.getItem(QUEUE_KEY) || "[]");
      return Array.isArray(queued) ? queued : [];
    } catch (error) {
      return [];
    }
  }

  function writeQueue(queued) {
    // Storage may be full or forbidden (private modes): then the beacons are lost, the page
    // still works.
    // The newest 50: a tab left open for hours must not fill the storage.
    try {
      if (queued.length) sessionStorage.setItem(QUEUE_KEY, JSON.stringify(queued.slice(-50)));
      else sessionStorage.removeItem(QUEUE_KEY);
    } catch (error) {}
  }

  function enqueue(body) {
    writeQueue(readQueue().concat([body]));
  }

  function beaconBody(kind) {
    return JSON.stringify({
      token: config.token,
      kind: kind,
      attempt: state.attempts,
      elapsed_ms: math.round(pageAge()),
      locale: config.locale
    });
  }

  // A 429 with Retry-After is the server's rate limit asking for later (it limits per user
  // and per page view, and many users may share one proxy): the beacon waits in the queue,
  // and the queue goes out again after that delay plus a jitter that grows while answers
  // stay 429, so pages throttled together do not come back together. One resend is
  // scheduled at a time; it sends the whole queue.
  var resendTimer = 0,
    throttled = 0;

  // Retry-After in milliseconds (delta-seconds or an HTTP date, at most an hour), or -1.
  function retryAfterMs(response) {
    var value = response.headers.get("Retry-After") || "",
      seconds = /^\s*\d+\s*$/.test(value) ? +value : (Date.parse(value) - now()) / 1000;
    return seconds >= 0 ? 1000 * math.min(seconds, 3600) : -1;
  }

  function resendLater(delayMs) {
    if (resendTimer) return;
    throttled++;
    resendTimer = after(function () {
      resendTimer = 0;
      flushQueue();
    }, delayMs + math.random() * math.min(60000, 1000 * math.pow(2, throttled)));
  }

  // A 2xx ends a beacon's life, and so does a 4xx (a rejection: resending would not help),
  // except a 429 that says when to come back; a 5xx or no answer at all queues it for later.
  function postBeacon(body) {
    if (!config.token) return;
    try {
      fetch(config.beacon, {
        method: "POST",
        body: body,
        // A string body goes as text/plain;charset=UTF-8, the type sendBeacon gives it: the
        // server reads one format from both.
        keepalive: true
      }).then(function (response) {
        var waitMs = response.status === 429 ? retryAfterMs(response) : -1;
        if (waitMs >= 0) {
          enqueue(body);
          resendLater(waitMs);
        } else if (response.status >= 500) enqueue(body);
        else if (response.ok) throttled = 0;
      }, function () {
        enqueue(body);
      });
    } catch (error) {
      enqueue(body);
    }
  }

  // sendBeacon outlives the page (navigation, closing the tab), but cannot tell whether the
  // server took the beacon: used only when leaving. True if the browser accepted it (or
  // there is nothing to send); falsy if not.
  function sendBeaconNow(body) {
    try {
      return !config.token || !!(nav.sendBeacon && nav.sendBeacon(config.beacon, body));
    } catch (error) {}
  }

  function report(kind) {
    postBeacon(beaconBody(kind));
  }

  // Resend the queue; when leaving, by sendBeacon, which survives the navigation. What is
  // handed over leaves the queue first, so a beacon is never sent twice by two pages.
  function flushQueue(leaving) {
    var queued = readQueue(),
      kept = [];
    writeQueue([]);
    queued.forEach(function (body) {
      if (!leaving) postBeacon(body);
      else if (!sendBeaconNow(body)) kept.push(body);
    });
    if (kept.length) writeQueue(kept.concat(readQueue()));
  }

  // Every page view ends in exactly one outcome (recovered, gave_up or abandoned): the first
  // one wins, and later ones get nothing and are not sent.
  function claimOutcome(kind) {
    if (state.outcome) return;
    state.outcome = kind;
    return beaconBody(kind);
  }

  // fetch that gives up after limitMs, body included: an abort rejects like a network error,
  // so a server that accepts the connection and never answers cannot stall the page.
  function fetchWithin(url, options, limitMs) {
    var controller = new AbortController();
    after(function () {
      controller.abort();
    }, limitMs);
    options.signal = controller.signal;
    return fetch(url, options);
  }

  // -- tabs -------------------------------------------------------------------------------
  // Every page of this origin in this browser profile shares one prober. The shared record
  // {tab, n, at, up, busy} names the page that probed last (tab: the leader), the attempts
  // made so far (n: the backoff goes on from there in a new tab or after a reload), when
  // the leader probes next (at, Date.now() time), whether it is probing now (busy: its
  // turn then lasts up to PROBE_LIMIT), and once a probe found its URL back, that URL (up).
  // It is kept in localStorage (a reload finds it) and sent to the other pages by
  // BroadcastChannel. They wait, and one of them takes over when the leader misses its turn
  // by GRACE: closed, frozen, hidden, offline or given up. A message may arrive before the
  // storage it was written to: a page that reads an older record only waits a little longer
  // and reads again. With neither API the record stays in this page, which then leads
  // itself: each page probes on its own, as before.
  var TABS_KEY = "gracefail:tabs",
    GRACE = 1500,
    PROBE_LIMIT = 20000,
    tabId = randomId(),
    target = config.safe ? pageUrl : config.health,
    // This page's own first probe time: a page that takes over waits for its Retry-After.
    firstAt = now() + 1000 * policy.after,
    shared,
    channel;

  // Whole attempts and a numeric turn near now (one further away than the longest wait and
  // a probe, either way, is stale or corrupt): anything else is not used.
  function usable(record) {
    return record && record.n === (record.n | 0) && record.at === +record.at &&
      math.abs(record.at - now()) < 1000 * policy.cap + 30000;
  }

  // The record in localStorage, else (storage unusable) this page's copy; null if unusable.
  function readShared() {
    var record = shared;
    try {
      record = JSON.parse(localStorage.getItem(TABS_KEY));
    } catch (error) {}
    return usable(record) ? record : null;
  }

  function share(record) {
    record.tab = tabId;
    record.n = state.attempts;
    shared = record;
    try {
      localStorage.setItem(TABS_KEY, JSON.stringify(record));
    } catch (error) {}
    if (channel) channel.postMessage(record);
  }

  // Another page wrote: its probe failed (this page says so too and waits for the next
  // turn), or its URL is back (this page recovers if it shows the same URL, else probes its
  // own once: another route may still be failing).
  function heard(record) {
    if (!usable(record) || state.back) return;
    shared = record;
    if (record.up) return record.up === target ? recovered() : probe(true);
    if (!record.busy && record.n > state.attempts) {
      state.attempts = record.n;
      if (!state.busy) stillDown();
    }
  }

  // Without BroadcastChannel (Safari before 15.4) the lease still keeps one prober; the
  // other pages then learn of its results at their own next turn.
  try {
    channel = new BroadcastChannel(TABS_KEY);
    channel.onmessage = function (event) {
      heard(event.data);
    };
  } catch (error) {}

  // This page leads: its next turn, drawn from delayBounds (full jitter), told to the others.
  function lead() {
    var bounds = delayBounds(state.attempts);
    share({at: now() + 1000 * (bounds[0] + math.random() * (bounds[1] - bounds[0]))});
  }

  // -- probing ----------------------------------------------------------------------------

  // The countdown sits outside the live region, so it may change every second unheard.
  function showProgress() {
    var secondsLeft = state.nextAt && math.max(1, math.ceil((state.nextAt - now()) / 1000));
    waitRow.hidden = state.back || !(state.busy || secondsLeft);
    setText(countdown, state.back ? "" :
      state.busy ? strings.js_checking :
      secondsLeft ? strings.js_next.replace("{s}", secondsLeft) : "");
  }

  function cancelProbe() {
    stopTimer(probeTimer);
    state.nextAt = 0;
  }

  function scheduleProbe(delayMs) {
    cancelProbe();
    state.nextAt = now() + delayMs;
    probeTimer = after(probe, delayMs);
    showProgress();
  }

  // The next turn: this page's own (drawn now if no page leads), or, when another page
  // leads, a moment after that page's turn, to take over if it misses it.
  function scheduleNextProbe() {
    var record = readShared();
    if (!record || record.up) {
      lead();
      record = shared;
    }
    state.attempts = math.max(state.attempts, record.n);
    scheduleProbe(record.tab === tabId ? record.at - now() :
      math.max(record.at, firstAt, now()) - now() + GRACE * (1 + math.random()));
  }

  function armGiveUpTimer() {
    stopTimer(giveUpTimer);
    giveUpTimer = after(giveUp, math.max(0, giveUpAt - pageAge()));
  }

  // Hidden: nobody is looking, wait for visibilitychange rather than load the server.
  function pause() {
    state.paused = true;
    showProgress();
  }

  // Safe methods (GET, HEAD) probe the page itself; unsafe ones only the health URL, so a
  // form is never resubmitted behind the user's back. A manual probe (the button) runs even
  // when the tab is hidden, offline or after giving up: the user asked for it. A timer's
  // probe runs only in this page's turn.
  function probe(manual) {
    if (state.busy || state.back || (!manual && state.gaveUp)) return;
    cancelProbe();
    var record = readShared();
    if (!manual) {
      if (doc.hidden) return pause();
      if (offline()) return goOffline();
      // Another page leads and its turn has not passed: wait for its word.
      if (record && !record.up && record.tab !== tabId &&
          record.at + (record.busy ? PROBE_LIMIT : GRACE) > now()) {
        return scheduleNextProbe();
      }
    }
    state.busy = true;
    state.paused = false;
    state.attempts++;
    // The turn is this page's until the probe ends, or its time is up.
    share({at: now(), busy: 1});
    report("retry");
    showProgress();
    // A fresh query parameter and no-store: no cache between here and the origin may answer
    // for it. The header lets the server count the failure as a probe, not as a new one.
    fetchWithin(target + (target.indexOf("?") < 0 ? "?" : "&") + "_gf=" + randomId(), {
      // fetch's default credentials (same-origin) send the app's cookies with it.
      cache: "no-store",
      // A redirect (to a login page, say) means the app answers again: treat it as up
      // rather than follow it.
      redirect: "manual",
      headers: {"X-Gracefail-Probe": "1"}
    }, PROBE_LIMIT).then(function (response) {
      return response.type === "opaqueredirect" ||
        (response.status > 0 && response.status < 500);
    }, function () {
      return false;
    }).then(function (isUp) {
      state.busy = false;
      if (isUp) {
        share({at: now(), up: target});
        recovered();
      } else {
        lead();
        stillDown();
      }
    });
  }

  function recovered() {
    cancelProbe();
    stopTimer(giveUpTimer);
    state.back = true;
    var outcome = claimOutcome("recovered");
    showProgress();
    if (config.safe) {
      announce(strings.js_back);
      // Leaving now: sendBeacon survives the navigation, fetch might not.
      if (outcome && !sendBeaconNow(outcome)) postBeacon(outcome);
      flushQueue(true);
      // replace() keeps the error page out of history. To a URL with a #fragment it would
      // only scroll: reload keeps both the history entry and the fragment.
      return location.hash ? location.reload() : location.replace(pageUrl);
    }
    // After a POST the page stays: only the user knows whether to send the request again.
    announce(strings.js_service_back);
    retryButton.hidden = true;
    backButton.hidden = history.length < 2;
    fallbackLink.hidden = false;
    if (outcome) postBeacon(outcome);
    flushQueue();
  }

  function stillDown() {
    state.failures++;
    // Retries have not helped: show the second-stage tips.
    if (state.failures >= config.tipsAfter) root.classList.add("gf-more");
    if (state.gaveUp) {
      // A manual retry after giving up failed: say so, and keep waiting for the user.
      announce(strings.js_gave_up);
      return showProgress();
    }
    if (pageAge() >= giveUpAt) return giveUp();
    if (offline()) return goOffline();
    announce(strings.js_still);
    if (doc.hidden) return pause();
    scheduleNextProbe();
  }

  // Hidden or offline, nobody is watching: wait, sending nothing. Back in view (or online),
  // the page checks once more, and stillDown() gives up if that fails too.
  function giveUp() {
    if (state.gaveUp || state.back) return;
    cancelProbe();
    stopTimer(giveUpTimer);
    if (offline()) return goOffline();
    if (doc.hidden) return pause();
    state.gaveUp = true;
    var outcome = claimOutcome("gave_up");
    if (outcome) postBeacon(outcome);
    root.classList.add("gf-more");
    announce(strings.js_gave_up);
    showProgress();
  }

  function goOffline() {
    cancelProbe();
    state.offline = true;
    announce(strings.js_offline);
    showProgress();
  }

  // -- events -----------------------------------------------------------------------------

  on(win, "offline", function () {
    if (!state.back && !state.gaveUp) goOffline();
  });

  // The leader probes at once (its turn has passed); the other pages wait for its word.
  on(win, "online", function () {
    if (state.offline && !state.back && !state.gaveUp) {
      state.offline = false;
      announce(strings.js_online);
      scheduleNextProbe();
    }
  });

  // A hidden tab pauses and sends nothing; back in view, it probes within about a second
  // (jittered: a user switching back is not a reason for all tabs to come at once), if it
  // is its turn.
  on(doc, "visibilitychange", function () {
    if (doc.hidden) {
      if (state.nextAt) {
        cancelProbe();
        pause();
      }
    } else if (state.paused && !state.back && !state.gaveUp && !state.offline) {
      state.paused = false;
      scheduleProbe(200 + math.random() * 800);
    }
  });

  // Restored from the back/forward cache: probe again at once, with a fresh give-up
  // deadline. The outcome already claimed stays claimed: never a second one. A POST page
  // that saw the service back has nothing more to do.
  on(win, "pageshow", function (event) {
    if (!event.persisted || (state.back && !config.safe)) return;
    reset();
    giveUpAt = pageAge() + 1000 * policy.giveUpAfter;
    armGiveUpTimer();
    probe();
  });

  // Leaving before any outcome: the user gave up on us. pagehide, not unload: it fires
  // on mobile and keeps the back/forward cache usable.
  on(win, "pagehide", function () {
    cancelProbe();
    var outcome = claimOutcome("abandoned");
    if (outcome && !sendBeaconNow(outcome)) postBeacon(outcome);
  });

  on(retryButton, "click", function () {
    if (state.busy || state.back) return;
    report("manual_retry");
    announce(strings.js_checking);
    probe(true);
  });

  on(backButton, "click", function () {
    history.back();
  });

  [].forEach.call(doc.querySelectorAll("a.gf-st"), function (statusLink) {
    on(statusLink, "click", function () {
      report("status_click");
    });
  });

  // -- live status ------------------------------------------------------------------------
  // From a Statuspage-compatible summary.json. Any failure (down, slow, not JSON, an
  // unexpected shape) leaves the page as it was: it is a bonus, never a dependency.
  function refreshLiveStatus() {
    if (!config.statusApi || doc.hidden) return;
    fetchWithin(config.statusApi, {cache: "no-store", credentials: "omit"}, 3000)
      .then(function (response) {
        return response.json();
      })
      .then(function (summary) {
        var overall = summary.status,
          element = byId("gf-ls"),
          affected = [],
          line;
        (summary.components || []).forEach(function (component) {
          if (component && component.status !== "operational" &&
              typeof component.name === "string" && affected.indexOf(component.name) < 0) {
            affected.push(component.name);
          }
        });
        if (!overall || typeof overall.description !== "string") return;
        // The indicator becomes a class name: only the known ones, never what the API says.
        element.className = "ls i-" +
          (/^(none|minor|major|critical)$/.test(overall.indicator) ? overall.indicator : "x");
        line = strings.js_status.replace("{s}", overall.description);
        // At most six names: a big outage must not push the page's own words away.
        if (affected.length) {
          line += " · " + strings.js_affected.replace("{s}", affected.slice(0, 6).join(", "));
        }
        // textContent: the API's words are text, never markup.
        element.lastChild.textContent = line;
        element.hidden = false;
      })
      .catch(function () {});
  }

  // -- start ------------------------------------------------------------------------------

  reset();
  window.gracefail = {delayBounds: delayBounds, state: state, tab: tabId};
  // The script retries by itself: the button replaces the plain link that works without it.
  retryButton.hidden = false;
  fallbackLink.hidden = true;
  // Beacons an earlier page of this tab could not deliver get another chance.
  flushQueue();
  report("shown");
  armGiveUpTimer();
  if (offline()) goOffline();
  else if (doc.hidden) pause();
  else scheduleNextProbe();
  setInterval(showProgress, 1000);
  refreshLiveStatus();
  setInterval(refreshLiveStatus, 300000);
})();
