/*
 * gracefail sw.js: the opt-in service worker (Config.service_worker). It answers for the
 * failures no server of the site can answer: the host unreachable (refused, reset, DNS),
 * or a 502/503/504 that is not gracefail's own (a CDN's or load balancer's page, a proxy
 * never set up for gateway mode). Then it shows the branded page it cached while the site
 * was healthy, which recovers exactly like the server's.
 *
 * What it never does: touch a request that is not a GET navigation (sub-resources, API
 * calls and form posts go to the network as if it were not there), cache one of the app's
 * own pages, or change a response that is not a navigation failure.
 *
 * worker.py serves this file minified (calmjs.parse, ES5 like recover.js), after one line
 * that sets SETTINGS: {enabled, version, bundle, prefix, marks: {incident, token, url},
 * maxUrl, retryAfter}. The version names gracefail's version and the pages: when either
 * changes, so does this file, and the browser installs the new worker, which fetches its
 * pages. With Config.service_worker off (enabled false) it is a worker that removes itself:
 * it deletes gracefail's caches and unregisters, handling nothing meanwhile.
 */
(function () {
  "use strict";

  var settings = SETTINGS,
    marks = settings.marks,
    CACHE = settings.prefix + settings.version,
    REASONS = {502: "Bad Gateway", 504: "Gateway Timeout"},
    // A page's inline scripts and styles: the CSP names each one's hash. The config block
    // (type="application/json") is data, not script: no hash.
    BLOCK = /<(script|style)\b([^>]*)>([\s\S]*?)<\/\1>/gi;

  if (!settings.enabled) {
    self.addEventListener("install", function () {
      self.skipWaiting();
    });
    self.addEventListener("activate", function (event) {
      event.waitUntil(
        caches.keys().then(function (names) {
          return Promise.all(names.filter(function (name) {
            return name.indexOf(settings.prefix) === 0;
          }).map(function (name) {
            return caches.delete(name);
          }));
        }).then(function () {
          return self.registration.unregister();
        })
      );
    });
    return;
  }

  function base64(bytes) {
    return btoa(String.fromCharCode.apply(null, new Uint8Array(bytes)));
  }

  function sha256(text) {
    return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)).then(base64);
  }

  // Whether the page's CSP allows exactly what the page inlines: a page whose script or
  // style lost its hash would stand there without working, so it is never served.
  function matchesCsp(entry) {
    var hashes = [],
      block;
    if (!entry || typeof entry.html !== "string" || typeof entry.csp !== "string") {
      return Promise.resolve(false);
    }
    BLOCK.lastIndex = 0;
    while ((block = BLOCK.exec(entry.html))) {
      if (!/application\/json/i.test(block[2])) {
        hashes.push(sha256(block[3]));
      }
    }
    return Promise.all(hashes).then(function (digests) {
      return digests.length > 0 && digests.every(function (digest) {
        return entry.csp.indexOf("'sha256-" + digest + "'") >= 0;
      });
    });
  }

  // The pages this worker's version cached at install, or null.
  function cachedPages() {
    return caches.open(CACHE).then(function (cache) {
      return cache.match(settings.bundle);
    }).then(function (response) {
      return response ? response.json() : null;
    }).then(function (bundle) {
      return bundle && bundle.version === settings.version ? bundle.pages : null;
    });
  }

  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#x27;");
  }

  // An incident id made here, in the browser (no server saw this failure): 16 URL-safe
  // characters like the server's, after "sw-", so support can tell where it came from.
  function newIncident() {
    return "sw-" + base64(crypto.getRandomValues(new Uint8Array(12)))
      .replace(/\+/g, "-").replace(/\//g, "_");
  }

  // The cached page for one failed navigation, as the middleware would fill it: a fresh
  // incident, no beacon token (none could be signed here: the page then sends no beacons),
  // and the retry link to the URL that failed (the same rules as render.safe_url). Null
  // when there is no page, or its CSP does not match it.
  function page(request, status) {
    return cachedPages().then(function (pages) {
      var entry = pages && pages[status];
      return matchesCsp(entry).then(function (usable) {
        if (!usable) {
          return null;
        }
        var url = new URL(request.url),
          path = url.pathname + url.search,
          incident = newIncident();
        if (/^\/[\/\\]/.test(path)) {
          path = "/." + path;
        }
        path = escapeHtml(path);
        return new Response(
          entry.html.split(marks.incident).join(incident).split(marks.token).join("")
            .split(marks.url).join(path.length <= settings.maxUrl ? path : ""),
          {
            status: status,
            statusText: REASONS[status],
            headers: {
              "Content-Type": "text/html; charset=utf-8",
              "Cache-Control": "no-store",
              "Content-Security-Policy": entry.csp,
              "Referrer-Policy": "same-origin",
              "Retry-After": String(settings.retryAfter),
              "X-Content-Type-Options": "nosniff",
              "X-Gracefail-Incident": incident,
              "X-Gracefail-Source": "worker"
            }
          }
        );
      });
    }).catch(function () {
      return null;
    });
  }

  // The network's answer, by navigation preload when the browser started it.
  function fromNetwork(event) {
    return Promise.resolve(event.preloadResponse).then(function (preloaded) {
      return preloaded || fetch(event.request);
    });
  }

  self.addEventListener("install", function (event) {
    event.waitUntil(
      fetch(settings.bundle, {cache: "no-store"}).then(function (response) {
        if (!response.ok) {
          throw new Error("gracefail: the worker's pages answered " + response.status);
        }
        return response.json();
      }).then(function (bundle) {
        // A server of another version answered (a deploy under way): install later.
        if (!bundle || bundle.version !== settings.version) {
          throw new Error("gracefail: the worker's pages are of another version");
        }
        return Promise.all([matchesCsp(bundle.pages[502]), matchesCsp(bundle.pages[504])])
          .then(function (usable) {
            if (!usable[0] || !usable[1]) {
              throw new Error("gracefail: a cached page does not match its CSP");
            }
            return caches.open(CACHE);
          }).then(function (cache) {
            return cache.put(settings.bundle, new Response(JSON.stringify(bundle), {
              headers: {"Content-Type": "application/json"}
            }));
          });
      }).then(function () {
        return self.skipWaiting();
      })
    );
  });

  // The new version takes over at once; the caches of the versions before go.
  self.addEventListener("activate", function (event) {
    event.waitUntil(
      caches.keys().then(function (names) {
        return Promise.all(names.filter(function (name) {
          return name.indexOf(settings.prefix) === 0 && name !== CACHE;
        }).map(function (name) {
          return caches.delete(name);
        }));
      }).then(function () {
        var preload = self.registration.navigationPreload;
        return preload && preload.enable();
      }).then(function () {
        return self.clients.claim();
      })
    );
  });

  self.addEventListener("fetch", function (event) {
    var request = event.request;
    if (request.mode !== "navigate" || request.method !== "GET") {
      // Not ours: without respondWith the browser does what it would do without a worker.
      return;
    }
    event.respondWith(fromNetwork(event).then(function (response) {
      var status = response.status;
      if ((status === 502 || status === 503 || status === 504) &&
          !response.headers.has("X-Gracefail-Incident")) {
        return page(request, status === 504 ? 504 : 502).then(function (own) {
          return own || response;
        });
      }
      return response;
    }, function () {
      // No answer at all: refused, reset, DNS, offline.
      return page(request, 502).then(function (own) {
        return own || Response.error();
      });
    }));
  });
})();
