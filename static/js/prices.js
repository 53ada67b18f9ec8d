// Live prices: the server pushes coalesced rows over Socket.IO; this only paints them.
(function () {
  "use strict";
  const table = document.getElementById("prices");
  const status = document.getElementById("socket-status");
  if (!table || typeof io === "undefined") return;
  const body = table.tBodies[0];

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
    status.className = "status " + (state === "connected" ? "status-on" : "status-off");
  }

  function cell(tr, cls) { return tr.querySelector("td." + cls); }

  function rowFor(symbol) {
    let tr = body.querySelector('tr[data-symbol="' + CSS.escape(symbol) + '"]');
    if (tr) return tr;
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    tr = document.createElement("tr");
    tr.dataset.symbol = symbol;
    tr.innerHTML = '<td></td><td class="num ltp"></td><td class="num change"></td>' +
                   '<td class="num volume"></td><td class="time"></td>';
    tr.firstChild.textContent = symbol;
    // Keep the table sorted by symbol, as the server renders it.
    const after = Array.from(body.rows).find((r) => r.dataset.symbol > symbol);
    body.insertBefore(tr, after || null);
    return tr;
  }

  function paint(row) {
    const tr = rowFor(row.symbol);
    const ltp = cell(tr, "ltp");
    const before = parseFloat(ltp.textContent);
    const now = parseFloat(row.ltp);
    ltp.textContent = row.ltp;
    ltp.classList.remove("tick-up", "tick-down");
    if (!isNaN(before) && now !== before) ltp.classList.add(now > before ? "tick-up" : "tick-down");
    const change = cell(tr, "change");
    change.textContent = row.change_pct || "";
    change.classList.toggle("up", row.direction === "up");
    change.classList.toggle("down", row.direction === "down");
    cell(tr, "volume").textContent = row.volume;
    cell(tr, "time").textContent = row.time;
  }

  const socket = io({ transports: ["websocket", "polling"] });
  window.ladderSocket = socket; // one socket per page: trading.js listens on it too
  socket.on("connect", () => setStatus("connected", "live"));
  socket.on("disconnect", () => setStatus("disconnected", "disconnected"));
  socket.on("connect_error", (err) => setStatus("refused", "not connected: " + err.message));
  socket.on("prices", (rows) => rows.forEach(paint));
})();
