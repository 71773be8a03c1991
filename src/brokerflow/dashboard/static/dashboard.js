// brokerflow market dashboard: state from /api/state, history from /api/bars, then live over
// server-sent events (/api/stream). No framework; lightweight-charts is served by brokerflow.
"use strict";

const view = {
  symbol: null,
  window: "1s",
  venue: null,
  lastTime: null,
  tiles: {},
  updates: 0,
  source: null,
  // Milliseconds from each bar's close (its computedTime) to this page receiving it.
  latencies: [],
};

const $ = (id) => document.getElementById(id);
const num = (text) => (text === null || text === undefined ? null : Number(text));
const decimals = (text) => (text && text.includes(".") ? text.split(".")[1].length : 0);
// "102.00000000" -> "102.00", "0.25000000" -> "0.25", "0.00012300" -> "0.000123".
function trim(text) {
  if (text === null || text === undefined) return "—";
  if (!text.includes(".")) return text;
  const [whole, frac] = text.split(".");
  const kept = frac.replace(/0+$/, "");
  return `${whole}.${kept.length >= 2 ? kept : kept.padEnd(2, "0")}`;
}
function age(seconds) {
  if (seconds === null) return "—";
  if (seconds < 90) return `${seconds.toFixed(1)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

const chart = LightweightCharts.createChart($("chart"), {
  autoSize: true,
  layout: { background: { color: "#161c23" }, textColor: "#d7dde4", attributionLogo: true },
  grid: { vertLines: { color: "#1f2730" }, horzLines: { color: "#1f2730" } },
  timeScale: { timeVisible: true, secondsVisible: true, borderColor: "#26303b" },
  rightPriceScale: { borderColor: "#26303b" },
});
const candles = chart.addSeries(LightweightCharts.CandlestickSeries, {
  upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a", wickDownColor: "#ef5350",
  borderVisible: false,
});
const vwapLine = chart.addSeries(LightweightCharts.LineSeries, {
  color: "#f5a623", lineWidth: 1, priceLineVisible: false, lastValueVisible: false,
});
const volume = chart.addSeries(LightweightCharts.HistogramSeries, {
  priceScaleId: "volume", priceFormat: { type: "volume" }, color: "#3d4b5a",
  priceLineVisible: false, lastValueVisible: false,
});
chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

function points(bar) {
  if (bar.open === null) {
    return [{ time: bar.time }, { time: bar.time }, { time: bar.time, value: 0 }];
  }
  return [
    { time: bar.time, open: num(bar.open), high: num(bar.high), low: num(bar.low), close: num(bar.close) },
    { time: bar.time, value: num(bar.vwap) },
    { time: bar.time, value: num(bar.volume), color: num(bar.close) >= num(bar.open) ? "#1f5f58" : "#6b2b2a" },
  ];
}

async function loadChart() {
  const params = new URLSearchParams({ symbol: view.symbol, window: view.window, limit: "500" });
  const answer = await (await fetch(`/api/bars?${params}`)).json();
  view.venue = answer.venue || null;
  $("chart-venue").textContent = view.venue ? `venue ${view.venue}` : "no bars yet";
  const bars = answer.bars;
  const precision = Math.min(8, Math.max(2, ...bars.map((b) => decimals(trim(b.close)))));
  candles.applyOptions({ priceFormat: { type: "price", precision, minMove: 10 ** -precision } });
  vwapLine.applyOptions({ priceFormat: { type: "price", precision, minMove: 10 ** -precision } });
  const [c, v, vol] = [[], [], []];
  for (const bar of bars) {
    const [candle, vw, vl] = points(bar);
    c.push(candle); v.push(vw); vol.push(vl);
  }
  candles.setData(c);
  vwapLine.setData(v.filter((p) => p.value !== null));
  volume.setData(vol);
  view.lastTime = bars.length ? bars[bars.length - 1].time : null;
  chart.timeScale().scrollToRealTime();
}

function onBar(bar) {
  if (bar.symbol !== view.symbol || bar.window !== view.window) return;
  if (view.venue === null) { view.venue = bar.venue; $("chart-venue").textContent = `venue ${bar.venue}`; }
  if (bar.venue !== view.venue) return;
  if (view.lastTime !== null && bar.time < view.lastTime) return;
  const [candle, vw, vl] = points(bar);
  candles.update(candle);
  if (vw.value !== undefined && vw.value !== null) vwapLine.update(vw);
  volume.update(vl);
  view.lastTime = bar.time;
}

function tileElement(symbol) {
  let el = document.querySelector(`.tile[data-symbol="${symbol}"]`);
  if (el) return el;
  el = document.createElement("div");
  el.className = "tile stale";
  el.dataset.symbol = symbol;
  el.innerHTML = `<div class="top"><span class="sym">${symbol}</span><span class="fresh" title="freshness"></span></div>
    <div class="last">—</div><div class="chg">—</div>
    <dl><dt>VWAP 1m</dt><dd class="vwap">—</dd><dt>spread</dt><dd class="spread">—</dd>
    <dt>trades/min</dt><dd class="tpm">—</dd><dt>age</dt><dd class="age">—</dd></dl>`;
  el.addEventListener("click", () => select(symbol));
  $("tiles").appendChild(el);
  return el;
}

function renderTile(tile) {
  view.tiles[tile.symbol] = { ...tile, receivedAt: Date.now() };
  const el = tileElement(tile.symbol);
  el.classList.toggle("stale", tile.stale);
  el.classList.toggle("selected", tile.symbol === view.symbol);
  el.querySelector(".last").textContent = trim(tile.last);
  const chg = el.querySelector(".chg");
  chg.textContent = tile.changePct === null ? "—" : `${tile.changePct > 0 ? "+" : ""}${tile.changePct}%`;
  chg.className = `chg ${tile.changePct === null ? "" : Number(tile.changePct) >= 0 ? "up" : "down"}`;
  el.querySelector(".vwap").textContent = trim(tile.vwap1m);
  el.querySelector(".spread").textContent = trim(tile.spread);
  el.querySelector(".tpm").textContent = tile.tradesPerMin ?? "—";
  el.querySelector(".age").textContent = age(tile.ageS);
  el.title = tile.venue ? `venue ${tile.venue}; newest bar ended ${tile.barEnd}` : "no bars yet";
}

function renderBook(book) {
  if (book.symbol !== view.symbol) return;
  $("book-state").textContent = book.synced ? `seq ${book.sequence}` : "waiting for a snapshot";
  const rows = [];
  for (const [price, qty, orders] of [...book.asks].reverse()) {
    rows.push(`<tr><td></td><td></td><td class="px ask">${price}</td><td class="ask">${qty}</td><td>${orders}</td></tr>`);
  }
  for (const [price, qty, orders] of book.bids) {
    rows.push(`<tr><td>${orders}</td><td class="bid">${qty}</td><td class="px bid">${price}</td><td></td><td></td></tr>`);
  }
  $("book").querySelector("tbody").innerHTML = rows.join("") || `<tr><td colspan="5">no orders on the book</td></tr>`;
  $("tape").querySelector("tbody").innerHTML = "";
  for (const trade of [...(book.trades || [])].reverse()) onTrade(trade);
}

function onTrade(trade) {
  if (trade.symbol !== view.symbol) return;
  const body = $("tape").querySelector("tbody");
  const row = document.createElement("tr");
  row.innerHTML = `<td>${trade.time.slice(11, 23)}</td><td>${trade.price}</td><td>${trade.quantity}</td><td class="${trade.side}">${trade.side}</td>`;
  body.insertBefore(row, body.firstChild);
  while (body.children.length > 50) body.removeChild(body.lastChild);
}

function renderHealth(health) {
  if (!health || !health.rates) return;
  const rates = Object.entries(health.rates).map(([k, v]) => `<div><span class="k">${k}</span> ${v}/s</div>`);
  $("rates").innerHTML = `<div class="k">records in</div>${rates.join("")}`;
  const lag = Object.entries(health.lag || {}).map(([g, n]) => `<div class="${n > 1000 ? "warn" : ""}"><span class="k">${g}</span> ${n}</div>`);
  $("lag").innerHTML = `<div class="k">consumer lag</div>${lag.join("") || "<div>no groups</div>"}`;
  const dead = Object.entries(health.deadLetters || {}).map(([r, n]) => `<div class="warn"><span class="k">${r}</span> ${n}</div>`);
  $("dead").innerHTML = `<div class="k">dead letters</div>${dead.join("") || "<div>none</div>"}`;
}

async function select(symbol) {
  view.symbol = symbol;
  $("symbol").value = symbol;
  document.querySelectorAll(".tile").forEach((el) => el.classList.toggle("selected", el.dataset.symbol === symbol));
  await loadChart();
  renderBook(await (await fetch(`/api/book?symbol=${encodeURIComponent(symbol)}`)).json());
}

function connect() {
  const source = new EventSource("/api/stream");
  view.source = source;
  source.onopen = () => { $("connection").textContent = "live"; $("connection").className = "on"; };
  source.onerror = () => { $("connection").textContent = "reconnecting"; $("connection").className = "off"; };
  source.addEventListener("bar", (e) => {
    const bar = JSON.parse(e.data);
    view.updates += 1;
    view.latencies.push(Date.now() - Date.parse(bar.computedTime));
    if (view.latencies.length > 10000) view.latencies.shift();
    onBar(bar);
  });
  source.addEventListener("tile", (e) => renderTile(JSON.parse(e.data)));
  source.addEventListener("book", (e) => renderBook(JSON.parse(e.data)));
  source.addEventListener("trade", (e) => onTrade(JSON.parse(e.data)));
  source.addEventListener("health", (e) => renderHealth(JSON.parse(e.data)));
}

async function start() {
  const state = await (await fetch("/api/state")).json();
  for (const symbol of state.symbols) {
    const option = document.createElement("option");
    option.value = option.textContent = symbol;
    $("symbol").appendChild(option);
  }
  state.tiles.forEach(renderTile);
  renderHealth(state.health);
  $("symbol").addEventListener("change", (e) => select(e.target.value));
  document.querySelectorAll(".windows button").forEach((button) => button.addEventListener("click", async () => {
    document.querySelectorAll(".windows button").forEach((b) => b.classList.toggle("on", b === button));
    view.window = button.dataset.window;
    await loadChart();
  }));
  const first = state.tiles.find((t) => t.last !== null) || state.tiles[0];
  connect();
  if (first) await select(first.symbol);
  document.body.dataset.ready = "1";
}

// For tests and the curious: what the chart and the tiles hold now.
window.dashboard = {
  view,
  candles: () => candles.data(),
  lastCandle: () => {
    const data = candles.data();
    return data.length ? data[data.length - 1] : null;
  },
  select,
};

start();
