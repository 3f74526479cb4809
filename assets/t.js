// Vitals browser tracker: page views (also single-page navigation), custom events and
// identify, sent to this Vitals server's PostHog-compatible capture endpoint with the org's
// project write key. No cookies: the anonymous id lives in sessionStorage (one tab's visit)
// unless the script tag asks for localStorage with data-persistence="localStorage".
//
//   <script src="https://vitals.example.com/t.js" data-key="vpk_…" defer></script>
//   vitals.track("signup_clicked", {plan: "pro"}); vitals.identify("user-42", {email: "…"});
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.vitals) return;
  var key = script.getAttribute("data-key");
  var host = new URL(script.src).origin;
  var store = script.getAttribute("data-persistence") === "localStorage" ? window.localStorage : window.sessionStorage;
  var autoPageviews = script.getAttribute("data-pageviews") !== "off";

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = (Math.random() * 16) | 0;
      return (c === "x" ? r : (r & 3) | 8).toString(16);
    });
  }
  function read(name) { try { return store.getItem("vitals_" + name); } catch (e) { return null; } }
  function write(name, value) { try { store.setItem("vitals_" + name, value); } catch (e) { /* private mode */ } }

  var distinctId = read("id") || uuid();
  write("id", distinctId);
  var session = read("session") || uuid();
  write("session", session);
  var queue = [];
  var timer = null;

  function send(useBeacon) {
    timer = null;
    if (!queue.length || !key) return;
    var body = JSON.stringify({ api_key: key, batch: queue.splice(0, queue.length), sent_at: new Date().toISOString() });
    var url = host + "/batch/";
    if (useBeacon && navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], { type: "text/plain" }))) return;
    // text/plain keeps it a simple request: no preflight.
    fetch(url, { method: "POST", body: body, keepalive: true, headers: { "Content-Type": "text/plain" } }).catch(function () {});
  }
  function capture(event, properties) {
    var props = {};
    var k;
    for (k in properties || {}) props[k] = properties[k];
    props.$current_url = location.href;
    props.$pathname = location.pathname;
    props.$host = location.host;
    props.$referrer = document.referrer || "$direct";
    props.$screen_width = window.screen ? screen.width : null;
    props.$session_id = session;
    props.$lib = "vitals-js";
    queue.push({ event: event, distinct_id: distinctId, uuid: uuid(), timestamp: new Date().toISOString(), properties: props });
    if (!timer) timer = setTimeout(send, 500);
  }
  function pageview() { capture("$pageview", { title: document.title }); }

  window.vitals = {
    track: capture,
    identify: function (id, traits) {
      if (!id || String(id) === distinctId) return;
      var anon = distinctId;
      distinctId = String(id);
      write("id", distinctId);
      capture("$identify", { $anon_distinct_id: anon, $set: traits || {} });
    },
    reset: function () { distinctId = uuid(); write("id", distinctId); },
    flush: function () { send(false); }
  };

  if (autoPageviews) {
    var last = location.href;
    var changed = function () {
      if (location.href !== last) { last = location.href; pageview(); }
    };
    var push = history.pushState;
    history.pushState = function () { push.apply(this, arguments); changed(); };
    var replace = history.replaceState;
    history.replaceState = function () { replace.apply(this, arguments); changed(); };
    window.addEventListener("popstate", changed);
    pageview();
  }
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") send(true); });
  window.addEventListener("pagehide", function () { send(true); });
})();
