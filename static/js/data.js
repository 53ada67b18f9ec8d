// Data page: the candle chart (lightweight-charts) and live import progress over Socket.IO.
(function () {
  "use strict";

  // ---- chart ---------------------------------------------------------------------------
  const box = document.getElementById("candle-chart");
  const symbolSelect = document.getElementById("chart-symbol");
  const timeframeSelect = document.getElementById("chart-timeframe");
  const chartStatus = document.getElementById("chart-status");
  const EMA_COLORS = { ema_9: "#f59f00", ema_21: "#2f5bd3", ema_50: "#8e44ad", ema_200: "#1d2330" };
  const UP = "#0a7d3b", DOWN = "#c0262d";

  let chart = null, candleSeries = null, volumeSeries = null;
  const emaSeries = {};
  let requestSeq = 0;

  function seriesIndex() {
    const coverage = document.getElementById("data-coverage");
    try { return JSON.parse(coverage.dataset.series || "{}"); } catch (e) { return {}; }
  }

  function setChartStatus(text) { if (chartStatus) chartStatus.textContent = text ? "· " + text : ""; }

  function ensureChart() {
    if (chart || typeof LightweightCharts === "undefined") return chart;
    const LC = LightweightCharts;
    box.textContent = "";
    chart = LC.createChart(box, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#1d2330", fontSize: 12,
                panes: { separatorColor: "#e3e6eb" } },
      grid: { vertLines: { color: "#f0f2f5" }, horzLines: { color: "#f0f2f5" } },
      rightPriceScale: { borderColor: "#e3e6eb" },
      // Times arrive already shifted to IST (see data.py), so the axis reads IST.
      timeScale: { borderColor: "#e3e6eb", rightOffset: 4 },
      crosshair: { mode: LC.CrosshairMode.Normal },
    });
    candleSeries = chart.addSeries(LC.CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN,
      wickUpColor: UP, wickDownColor: DOWN,
    });
    Object.keys(EMA_COLORS).forEach((name) => {
      emaSeries[name] = chart.addSeries(LC.LineSeries, {
        color: EMA_COLORS[name], lineWidth: name === "ema_200" ? 2 : 1,
        priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
      });
    });
    // Volume in its own pane under the prices.
    volumeSeries = chart.addSeries(LC.HistogramSeries, {
      priceFormat: { type: "volume" }, priceLineVisible: false, lastValueVisible: false,
    }, 1);
    const panes = chart.panes();
    if (panes.length > 1) { panes[0].setStretchFactor(3); panes[1].setStretchFactor(1); }
    return chart;
  }

  function loadChart(symbol, timeframe) {
    if (!box || !symbol || !timeframe) return;
    if (!ensureChart()) { setChartStatus("chart library missing"); return; }
    const seq = ++requestSeq;
    box.dataset.symbol = symbol;
    box.dataset.timeframe = timeframe;
    box.dataset.state = "loading";
    setChartStatus("loading " + symbol + " " + timeframe + "…");
    const url = box.dataset.url + "?" + new URLSearchParams({ symbol: symbol, timeframe: timeframe });
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body: body })))
      .then(({ ok, body }) => {
        if (seq !== requestSeq) return; // a newer choice won
        if (!ok) throw new Error(body.error || "request failed");
        candleSeries.setData(body.candles);
        volumeSeries.setData(body.volume.map((v) => ({
          time: v.time, value: v.value, color: v.up ? "rgba(10,125,59,0.45)" : "rgba(192,38,45,0.45)",
        })));
        Object.keys(emaSeries).forEach((name) => emaSeries[name].setData(body.ema[name] || []));
        chart.applyOptions({ timeScale: { timeVisible: body.intraday, secondsVisible: false } });
        // Open on the recent past (about two sessions of 5m bars, a year of days);
        // the rest is a scroll or a pinch away.
        const visible = body.intraday ? 150 : 250;
        const count = body.candles.length;
        if (count > visible) {
          chart.timeScale().setVisibleLogicalRange({ from: count - visible, to: count + 3 });
        } else {
          chart.timeScale().fitContent();
        }
        box.dataset.state = "ready";
        box.dataset.count = String(body.candles.length);
        setChartStatus(body.candles.length + " candles of " + symbol + " " + timeframe);
      })
      .catch((err) => {
        if (seq !== requestSeq) return;
        box.dataset.state = "error";
        setChartStatus("could not load: " + err.message);
      });
  }

  function fillTimeframes(symbol, wanted) {
    const timeframes = seriesIndex()[symbol] || [];
    timeframeSelect.innerHTML = "";
    timeframes.forEach((tf) => timeframeSelect.add(new Option(tf, tf, false, tf === wanted)));
    if (!timeframes.includes(wanted) && timeframes.length) timeframeSelect.value = timeframes[0];
  }

  function fillSymbols() {
    const index = seriesIndex();
    const current = symbolSelect.value;
    symbolSelect.innerHTML = "";
    Object.keys(index).forEach((s) => symbolSelect.add(new Option(s, s, false, s === current)));
    if (!index[current] && symbolSelect.options.length) symbolSelect.selectedIndex = 0;
    fillTimeframes(symbolSelect.value, timeframeSelect.value);
  }

  function show(symbol, timeframe) {
    if (symbolSelect.value !== symbol) symbolSelect.value = symbol;
    fillTimeframes(symbol, timeframe);
    const params = new URLSearchParams({ symbol: symbol, timeframe: timeframeSelect.value });
    history.replaceState(null, "", "?" + params);
    loadChart(symbol, timeframeSelect.value);
  }

  if (symbolSelect && timeframeSelect) {
    symbolSelect.addEventListener("change", () => show(symbolSelect.value, timeframeSelect.value));
    timeframeSelect.addEventListener("change", () => show(symbolSelect.value, timeframeSelect.value));
  }
  // A symbol link in the coverage table switches the chart without a reload.
  document.addEventListener("click", (ev) => {
    const link = ev.target.closest("a.series-link");
    if (!link || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    const row = link.closest("tr");
    ev.preventDefault();
    show(row.dataset.symbol, row.dataset.timeframe);
    box.scrollIntoView({ behavior: "smooth", block: "nearest" });
  });
  document.body.addEventListener("htmx:afterSwap", (ev) => {
    if (ev.detail.target && ev.detail.target.id === "data-coverage") {
      const hadNone = !symbolSelect.value;
      fillSymbols();
      if (hadNone && symbolSelect.value) show(symbolSelect.value, timeframeSelect.value);
    }
  });
  if (box) loadChart(box.dataset.symbol, box.dataset.timeframe);

  // ---- import progress -------------------------------------------------------------------
  const socketBadge = document.getElementById("import-socket");
  const statusUrl = socketBadge ? socketBadge.dataset.statusUrl : "";
  const coverageUrl = socketBadge ? socketBadge.dataset.coverageUrl : "";
  window.ladderImportLive = false;

  function setSocket(state, text) {
    if (!socketBadge) return;
    socketBadge.dataset.state = state;
    socketBadge.textContent = text;
    socketBadge.className = "status " + (state === "connected" ? "status-on" : "status-off");
  }

  function refreshPartial(url, target) {
    if (typeof htmx !== "undefined" && document.querySelector(target)) {
      htmx.ajax("GET", url, { target: target, swap: "outerHTML" });
    }
  }

  const FILE_WORDS = { pending: "waiting", running: "importing", done: "imported", failed: "refused" };

  function paintJob(job) {
    const status = document.getElementById("import-status");
    if (!job || !status) return;
    const shown = status.dataset.job === job.id;
    if (job.finished) {
      // The server renders the outcome (rows stored, errors with line numbers).
      if (shown && status.dataset.state === job.state) return;
      refreshPartial(statusUrl, "#import-status");
      refreshPartial(coverageUrl, "#data-coverage");
      return;
    }
    if (!shown) { refreshPartial(statusUrl, "#import-status"); return; }
    job.files.forEach((file, i) => {
      const tr = status.querySelector('tr[data-file="' + i + '"]');
      if (!tr) return;
      const bar = tr.querySelector("progress");
      const pct = file.rows_total ? Math.floor((100 * file.rows_done) / file.rows_total) : 0;
      if (bar) bar.value = pct;
      const label = tr.querySelector(".pct");
      if (label) label.textContent = pct + "%";
      const state = tr.querySelector(".file-state");
      state.textContent = FILE_WORDS[file.state] || file.state;
      state.className = "file-state state-" + file.state;
    });
  }

  if (typeof io !== "undefined" && socketBadge) {
    const socket = io({ transports: ["websocket", "polling"] });
    socket.on("connect", () => {
      socket.emit("data_import_join", {}, (ack) => {
        window.ladderImportLive = !!(ack && ack.ok);
        setSocket(window.ladderImportLive ? "connected" : "refused",
                  window.ladderImportLive ? "live" : "not live");
        if (ack && ack.job) paintJob(ack.job);
      });
    });
    socket.on("disconnect", () => { window.ladderImportLive = false; setSocket("disconnected", "disconnected"); });
    socket.on("connect_error", (err) => { window.ladderImportLive = false; setSocket("refused", "not live: " + err.message); });
    socket.on("data_import", paintJob);
  }
})();
