// perezvon console: the Now page follows the daemon over server-sent events. The server sends
// the live part of the page already rendered (and escaped); this only swaps it in.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) {
    return;
  }
  var badge = document.getElementById("live-state");
  var es = new EventSource("/events");
  es.addEventListener("now", function (e) {
    live.innerHTML = e.data;
    live.setAttribute("data-events", String(Number(live.getAttribute("data-events") || "0") + 1));
    if (badge) {
      badge.className = "badge ok";
      badge.textContent = badge.getAttribute("data-live");
    }
  });
  es.onerror = function () {
    if (badge) {
      badge.className = "badge warn";
      badge.textContent = badge.getAttribute("data-stale");
    }
  };
})();
