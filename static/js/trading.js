// Live trading panel: the server says "trading changed" over Socket.IO; htmx re-fetches the
// panel partial, so the HTML is rendered on the server only (Webapp.web.trading).
(function () {
  "use strict";
  if (!document.getElementById("trading-panel") || typeof io === "undefined") return;

  let inFlight = false;
  let again = false;

  function openDetails() {
    return Array.from(document.querySelectorAll("#trading-panel details[id]"))
      .filter((d) => d.open).map((d) => d.id);
  }

  function refresh() {
    // htmx loads with `defer`; an event before it is ready is caught up by the next one.
    const panel = document.getElementById("trading-panel");
    if (!panel || typeof htmx === "undefined") return;
    if (inFlight) { again = true; return; } // one request at a time; the last change wins
    inFlight = true;
    const wasOpen = openDetails();
    htmx.ajax("GET", panel.dataset.src, { target: "#trading-panel", swap: "outerHTML" })
      .catch(() => {})
      .finally(() => {
        // The swap brings a closed <details>; keep the ones the trader had opened.
        wasOpen.forEach((id) => {
          const el = document.getElementById(id);
          if (el) el.open = true;
        });
        inFlight = false;
        if (again) { again = false; refresh(); }
      });
  }

  const socket = window.ladderSocket || io({ transports: ["websocket", "polling"] });
  let connectedBefore = false;
  socket.on("connect", () => {
    // After a reconnect the panel may have missed pushes: fetch it once.
    if (connectedBefore) refresh();
    connectedBefore = true;
  });
  socket.on("trading", refresh);
})();
