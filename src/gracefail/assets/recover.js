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
 * the reader, in ES5 (the minifier parses ES5 only); long names and comments cost nothing.
 * window.gracefail ({delayBounds, state}) is what the tests drive: keep its shape.
 */
(function () {
  "use strict";

  var root = document.documentElement;
  var config;
  try {
    config = JSON.parse(document.getElementById("gf-config").textContent);
  } catch (error) {
    // No usable config: leave the page as it is without JavaScript (link and meta refresh).
    return;
  }
  // Lets the CSS hide what only makes sense without the script (the second-stage tips).
  root.classList.add("js");

  var strings = config.t;
  var policy = config.retry;
  var QUEUE_KEY = "gracefail:queue";
  // The page is served at the URL that failed: retry what the browser shows, which stays
  // right behind a proxy that rewrites paths and for pages exported to a proxy's error_page.
  var pageUrl = location.pathname + location.search;

  // Exposed as window.gracefail.state. nextAt: Date.now() of the next scheduled probe, 0 if
  // none; back: the origin answered again.
  var state = {
    attempts: 0,
    failures: 0,
    outcome: null,
    busy: false,
    paused: false,
    offline: false,
    gaveUp: false,
    back: false,
    nextAt: 0
  };
  var probeTimer = 0;
  var giveUpTimer = 0;
  // On the page's own clock (performance.now() counts from navigation start).
  var giveUpAt = 1000 * policy.giveUpAfter;

  function byId(id) {
    return document.getElementById(id);
  }

  var liveRegion = byId("gf-live");
  var countdown = byId("gf-count");
  var waitRow = byId("gf-wait");
  var retryButton = byId("gf-retry");
  var backButton = byId("gf-back");
  var fallbackLink = byId("gf-link");

  // Only real changes touch the DOM, so the live region (role="status") speaks on state
  // changes, not on every tick.
  function setText(element, value) {
    value = value || "";
    if (element.textContent !== value) {
      element.textContent = value;
    }
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
    if (attempt < 1) {
      return [retryPolicy.after, retryPolicy.after + retryPolicy.base];
    }
    // Capped at 2^60 as in Python, where a float power would overflow on a long-open page.
    var ceiling = retryPolicy.base * Math.pow(2, Math.min(attempt, 60));
    return [0, Math.min(retryPolicy.cap, ceiling)];
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
    try {
      if (queued.length) {
        // The newest 50: a tab left open for hours must not fill the storage.
        sessionStorage.setItem(QUEUE_KEY, JSON.stringify(queued.slice(-50)));
      } else {
        sessionStorage.removeItem(QUEUE_KEY);
      }
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
      elapsed_ms: Math.round(performance.now()),
      locale: config.locale
    });
  }

  // A 429 with Retry-After is the server's rate limit asking for later (it limits per user
  // and per page view, and many users may share one proxy): the beacon waits in the queue,
  // and the queue goes out again after that delay plus a jitter that grows while answers
  // stay 429, so pages throttled together do not come back together. One resend is
  // scheduled at a time; it sends the whole queue.
  var resendTimer = 0;
  var throttled = 0;

  // Retry-After in milliseconds (delta-seconds or an HTTP date, at most an hour), or -1.
  function retryAfterMs(response) {
    var value = response.headers.get("Retry-After") || "";
    var seconds = /^\s*\d+\s*$/.test(value) ?
      parseInt(value, 10) : (Date.parse(value) - Date.now()) / 1000;
    return seconds >= 0 ? 1000 * Math.min(seconds, 3600) : -1;
  }

  function resendLater(delayMs) {
    if (resendTimer) {
      return;
    }
    throttled++;
    var jitterMs = Math.random() * Math.min(60000, 1000 * Math.pow(2, throttled));
    resendTimer = setTimeout(function () {
      resendTimer = 0;
      flushQueue(false);
    }, delayMs + jitterMs);
  }

  // A 2xx ends a beacon's life, and so does a 4xx (a rejection: resending would not help),
  // except a 429 that says when to come back; a 5xx or no answer at all queues it for later.
  function postBeacon(body) {
    try {
      fetch(config.beacon, {
        method: "POST",
        body: body,
        keepalive: true,
        // The type sendBeacon gives a string: the server reads one format from both.
        headers: {"Content-Type": "text/plain;charset=UTF-8"},
        cache: "no-store",
        credentials: "same-origin"
      }).then(function (response) {
        var waitMs = response.status === 429 ? retryAfterMs(response) : -1;
        if (waitMs >= 0) {
          enqueue(body);
          resendLater(waitMs);
        } else if (response.status >= 500) {
          enqueue(body);
        } else if (response.ok) {
          throttled = 0;
        }
      }, function () {
        enqueue(body);
      });
    } catch (error) {
      enqueue(body);
    }
  }

  // sendBeacon outlives the page (navigation, closing the tab), but cannot tell whether the
  // server took the beacon: used only when leaving. True if the browser accepted it.
  function sendBeaconNow(body) {
    try {
      return !!(navigator.sendBeacon && navigator.sendBeacon(config.beacon, body));
    } catch (error) {
      return false;
    }
  }

  function report(kind) {
    postBeacon(beaconBody(kind));
  }

  // Resend the queue; when leaving, by sendBeacon, which survives the navigation. What is
  // handed over leaves the queue first, so a beacon is never sent twice by two pages.
  function flushQueue(leaving) {
    var queued = readQueue();
    var kept = [];
    writeQueue([]);
    queued.forEach(function (body) {
      if (!leaving) {
        postBeacon(body);
      } else if (!sendBeaconNow(body)) {
        kept.push(body);
      }
    });
    if (kept.length) {
      writeQueue(kept.concat(readQueue()));
    }
  }

  // Every page view ends in exactly one outcome (recovered, gave_up or abandoned): the first
  // one wins, and later ones get null and are not sent.
  function claimOutcome(kind) {
    if (state.outcome) {
      return null;
    }
    state.outcome = kind;
    return beaconBody(kind);
  }

  // fetch that gives up after limitMs, body included: an abort rejects like a network error,
  // so a server that accepts the connection and never answers cannot stall the page.
  function fetchWithin(url, options, limitMs) {
    var controller = new AbortController();
    setTimeout(function () {
      controller.abort();
    }, limitMs);
    options.signal = controller.signal;
    return fetch(url, options);
  }

  // -- probing ----------------------------------------------------------------------------

  // The countdown sits outside the live region, so it may change every second unheard.
  function showProgress() {
    var secondsLeft = 0;
    if (state.nextAt) {
      secondsLeft = Math.max(1, Math.ceil((state.nextAt - Date.now()) / 1000));
    }
    waitRow.hidden = state.back || !(state.busy || secondsLeft);
    var message = "";
    if (!state.back) {
      if (state.busy) {
        message = strings.js_checking;
      } else if (secondsLeft) {
        message = strings.js_next.replace("{s}", secondsLeft);
      }
    }
    setText(countdown, message);
  }

  function cancelProbe() {
    clearTimeout(probeTimer);
    state.nextAt = 0;
  }

  function scheduleProbe(delayMs) {
    cancelProbe();
    state.nextAt = Date.now() + delayMs;
    probeTimer = setTimeout(function () {
      probe(false);
    }, delayMs);
    showProgress();
  }

  // A wait drawn uniformly from delayBounds (full jitter).
  function scheduleNextProbe() {
    var bounds = delayBounds(state.attempts, policy);
    scheduleProbe(1000 * (bounds[0] + Math.random() * (bounds[1] - bounds[0])));
  }

  function armGiveUpTimer() {
    clearTimeout(giveUpTimer);
    giveUpTimer = setTimeout(giveUp, Math.max(0, giveUpAt - performance.now()));
  }

  // Safe methods (GET, HEAD) probe the page itself; unsafe ones only the health URL, so a
  // form is never resubmitted behind the user's back. A manual probe (the button) runs even
  // when the tab is hidden, offline or after giving up: the user asked for it.
  function probe(manual) {
    if (state.busy || state.back || (!manual && state.gaveUp)) {
      return;
    }
    cancelProbe();
    if (!manual && document.hidden) {
      // Nobody is looking: wait for visibilitychange rather than load the server.
      state.paused = true;
      showProgress();
      return;
    }
    if (!manual && navigator.onLine === false) {
      goOffline();
      return;
    }
    state.busy = true;
    state.paused = false;
    state.attempts++;
    report("retry");
    showProgress();
    var target = config.safe ? pageUrl : config.health;
    // A fresh query parameter and no-store: no cache between here and the origin may answer
    // for it. The header lets the server count the failure as a probe, not as a new one.
    var cacheBuster = "_gf=" + Math.random().toString(36).slice(2);
    var url = target + (target.indexOf("?") < 0 ? "?" : "&") + cacheBuster;
    fetchWithin(url, {
      cache: "no-store",
      credentials: "same-origin",
      // A redirect (to a login page, say) means the app answers again: treat it as up
      // rather than follow it.
      redirect: "manual",
      headers: {"X-Gracefail-Probe": "1"}
    }, 20000).then(function (response) {
      return response.type === "opaqueredirect" ||
        (response.status > 0 && response.status < 500);
    }, function () {
      return false;
    }).then(function (isUp) {
      state.busy = false;
      if (isUp) {
        recovered();
      } else {
        stillDown();
      }
    });
  }

  function recovered() {
    cancelProbe();
    clearTimeout(giveUpTimer);
    state.back = true;
    var outcome = claimOutcome("recovered");
    showProgress();
    if (config.safe) {
      announce(strings.js_back);
      // Leaving now: sendBeacon survives the navigation, fetch might not.
      if (outcome && !sendBeaconNow(outcome)) {
        postBeacon(outcome);
      }
      flushQueue(true);
      // replace() keeps the error page out of history. To a URL with a #fragment it would
      // only scroll: reload keeps both the history entry and the fragment.
      if (location.hash) {
        location.reload();
      } else {
        location.replace(pageUrl);
      }
      return;
    }
    // After a POST the page stays: only the user knows whether to send the request again.
    announce(strings.js_service_back);
    retryButton.hidden = true;
    backButton.hidden = history.length < 2;
    fallbackLink.hidden = false;
    if (outcome) {
      postBeacon(outcome);
    }
    flushQueue(false);
  }

  function stillDown() {
    state.failures++;
    if (state.failures >= config.tipsAfter) {
      // Retries have not helped: show the second-stage tips.
      root.classList.add("gf-more");
    }
    if (state.gaveUp) {
      // A manual retry after giving up failed: say so, and keep waiting for the user.
      announce(strings.js_gave_up);
      showProgress();
      return;
    }
    if (performance.now() >= giveUpAt) {
      giveUp();
      return;
    }
    if (navigator.onLine === false) {
      goOffline();
      return;
    }
    announce(strings.js_still);
    if (document.hidden) {
      state.paused = true;
      showProgress();
      return;
    }
    scheduleNextProbe();
  }

  // Hidden or offline, nobody is watching: wait, sending nothing. Back in view (or online),
  // the page checks once more, and stillDown() gives up if that fails too.
  function giveUp() {
    if (state.gaveUp || state.back) {
      return;
    }
    cancelProbe();
    clearTimeout(giveUpTimer);
    if (navigator.onLine === false) {
      goOffline();
      return;
    }
    if (document.hidden) {
      state.paused = true;
      showProgress();
      return;
    }
    state.gaveUp = true;
    var outcome = claimOutcome("gave_up");
    if (outcome) {
      postBeacon(outcome);
    }
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

  window.addEventListener("offline", function () {
    if (!state.back && !state.gaveUp) {
      goOffline();
    }
  });

  window.addEventListener("online", function () {
    if (state.offline && !state.back && !state.gaveUp) {
      state.offline = false;
      announce(strings.js_online);
      probe(false);
    }
  });

  // A hidden tab pauses and sends nothing; back in view, it probes within about a second
  // (jittered: a user switching back is not a reason for all tabs to come at once).
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (state.nextAt) {
        cancelProbe();
        state.paused = true;
      }
    } else if (state.paused && !state.back && !state.gaveUp && !state.offline) {
      state.paused = false;
      scheduleProbe(200 + Math.random() * 800);
    }
  });

  // Restored from the back/forward cache: probe again at once, with a fresh give-up
  // deadline. The outcome already claimed stays claimed: never a second one. A POST page
  // that saw the service back has nothing more to do.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted || (state.back && !config.safe)) {
      return;
    }
    state.back = false;
    state.gaveUp = false;
    state.busy = false;
    state.paused = false;
    state.offline = false;
    giveUpAt = performance.now() + 1000 * policy.giveUpAfter;
    armGiveUpTimer();
    probe(false);
  });

  // Leaving before any outcome: the user gave up on us. pagehide, not unload: it fires
  // on mobile and keeps the back/forward cache usable.
  window.addEventListener("pagehide", function () {
    cancelProbe();
    var outcome = claimOutcome("abandoned");
    if (outcome && !sendBeaconNow(outcome)) {
      postBeacon(outcome);
    }
  });

  retryButton.addEventListener("click", function () {
    if (state.busy || state.back) {
      return;
    }
    report("manual_retry");
    announce(strings.js_checking);
    probe(true);
  });

  backButton.addEventListener("click", function () {
    history.back();
  });

  [].forEach.call(document.querySelectorAll("a.gf-st"), function (statusLink) {
    statusLink.addEventListener("click", function () {
      report("status_click");
    });
  });

  // -- live status ------------------------------------------------------------------------
  // From a Statuspage-compatible summary.json. Any failure (down, slow, not JSON, an
  // unexpected shape) leaves the page as it was: it is a bonus, never a dependency.
  function refreshLiveStatus() {
    if (!config.statusApi || document.hidden) {
      return;
    }
    fetchWithin(config.statusApi, {cache: "no-store", credentials: "omit"}, 3000)
      .then(function (response) {
        return response.json();
      })
      .then(function (summary) {
        var overall = summary.status;
        var element = byId("gf-ls");
        var affected = [];
        (summary.components || []).forEach(function (component) {
          if (component && component.status !== "operational" &&
              typeof component.name === "string" && affected.indexOf(component.name) < 0) {
            affected.push(component.name);
          }
        });
        if (!overall || typeof overall.description !== "string") {
          return;
        }
        // The indicator becomes a class name: only the known ones, never what the API says.
        var known = /^(none|minor|major|critical)$/.test(overall.indicator);
        element.className = "ls i-" + (known ? overall.indicator : "x");
        var line = strings.js_status.replace("{s}", overall.description);
        if (affected.length) {
          // At most six names: a big outage must not push the page's own words away.
          line += " \u00b7 " + strings.js_affected.replace("{s}", affected.slice(0, 6).join(", "));
        }
        // textContent: the API's words are text, never markup.
        element.lastChild.textContent = line;
        element.hidden = false;
      })
      .catch(function () {});
  }

  // -- start ------------------------------------------------------------------------------

  window.gracefail = {delayBounds: delayBounds, state: state};
  // The script retries by itself: the button replaces the plain link that works without it.
  retryButton.hidden = false;
  fallbackLink.hidden = true;
  // Beacons an earlier page of this tab could not deliver get another chance.
  flushQueue(false);
  report("shown");
  armGiveUpTimer();
  if (navigator.onLine === false) {
    goOffline();
  } else if (document.hidden) {
    state.paused = true;
  } else {
    scheduleNextProbe();
  }
  setInterval(showProgress, 1000);
  refreshLiveStatus();
  setInterval(refreshLiveStatus, 300000);
})();
