/*
 * gracefail register.js: what a healthy page loads to install gracefail's service worker
 * (<script src="/_gracefail/register.js" defer></script>, or the template helpers).
 *
 * worker.py serves it minified after one line that sets SETTINGS: {enabled, worker, scope,
 * prefix}. Enabled, it registers the worker once the page has loaded (the worker's install
 * then fetches its pages, and should not compete with the page's own loading), unless the
 * site has a service worker of its own at that scope: that one is never replaced. With
 * Config.service_worker off, the same URL removes gracefail's worker and its caches, so a
 * page that still carries the tag cleans up after it.
 */
(function () {
  "use strict";

  var settings = SETTINGS,
    container = navigator.serviceWorker,
    workerUrl;
  if (!container) {
    // An old browser, or not a secure context (http:// other than localhost).
    return;
  }
  workerUrl = new URL(settings.worker, location.href).href;

  function ours(registration) {
    var worker = registration.active || registration.waiting || registration.installing;
    return !!worker && worker.scriptURL === workerUrl;
  }

  function register() {
    var scope = new URL(settings.scope, location.href).href;
    container.getRegistration(scope).then(function (existing) {
      if (existing && existing.scope === scope && !ours(existing)) {
        return null;
      }
      return container.register(settings.worker, {scope: settings.scope, updateViaCache: "none"});
    }).catch(function () {});
  }

  if (!settings.enabled) {
    container.getRegistrations().then(function (registrations) {
      registrations.forEach(function (registration) {
        if (ours(registration)) {
          registration.unregister();
        }
      });
    }).catch(function () {});
    if (window.caches) {
      caches.keys().then(function (names) {
        names.forEach(function (name) {
          if (name.indexOf(settings.prefix) === 0) {
            caches.delete(name);
          }
        });
      }).catch(function () {});
    }
  } else if (document.readyState === "complete") {
    register();
  } else {
    window.addEventListener("load", register);
  }
})();
