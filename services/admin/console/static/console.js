// hookline console: live rows over server-sent events. No inline script anywhere (CSP).
"use strict";

(function () {
  var parse = function (html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim(); // rendered by the server's escaping templates
    return template.content.firstElementChild;
  };

  var announce = function (text) {
    var status = document.querySelector("[data-live-status]");
    if (status) status.textContent = text;
  };

  var dropEmptyNote = function () {
    var empty = document.querySelector("[data-live-empty]");
    if (empty) empty.remove();
  };

  // A part of the page that is easier to fetch again than to patch (a run's timeline).
  // One fetch at a time; an event that arrives meanwhile asks for one more afterwards,
  // so the last change is never missed.
  var reloading = false;
  var again = false;
  var reload = function (element) {
    if (reloading) { again = true; return; }
    reloading = true;
    again = false;
    var finish = function () {
      reloading = false;
      if (again) {
        var current = document.getElementById(element.id) || element;
        reload(current);
      }
    };
    window.setTimeout(function () {
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (text) {
            var fresh = new DOMParser().parseFromString(text, "text/html");
            var selector = element.id ? "#" + element.id : "[data-live-reload]";
            var replacement = fresh.querySelector(selector);
            var target = document.querySelector(selector);
            if (replacement && target) {
              target.replaceWith(replacement);
              if (replacement.querySelector("tr, li")) dropEmptyNote();
              announce("Updated " + new Date().toLocaleTimeString());
            }
          }
          finish();
        })
        .catch(finish);
    }, 300);
  };

  var start = function () {
    var target = document.querySelector("[data-live], [data-live-reload]");
    if (!target || !window.EventSource) return;
    var query = target.getAttribute("data-live-query") || "";
    var source = new EventSource("/console/live" + (query ? "?" + query : ""));
    var count = 0;

    var onItem = function (kind) {
      return function (message) {
        var item = JSON.parse(message.data);
        var rows = document.querySelector('[data-live="' + kind + '"]');
        if (rows && item.row) {
          var row = parse(item.row);
          var existing = document.getElementById(row.id);
          if (existing) existing.replaceWith(row);
          else rows.insertBefore(row, rows.firstElementChild);
          row.classList.add("fresh");
          dropEmptyNote();
          count += 1;
          announce(count + " new or updated since this page loaded");
        }
        var whole = document.querySelector('[data-live-reload="' + kind + '"]');
        if (whole) reload(whole);
      };
    };
    // What landed between the page's render and the stream's start (or a reconnect):
    // fetch the live part once more.
    source.addEventListener("open", function () {
      var live = target.id ? document.getElementById(target.id) : null;
      if (live) reload(live);
    });
    source.addEventListener("delivery", onItem("delivery"));
    source.addEventListener("inbound", onItem("inbound"));
    window.addEventListener("pagehide", function () { source.close(); });
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
