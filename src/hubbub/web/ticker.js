// hubbub ticker dashboard: live prices (conflated channels), a chart per chosen symbol, scores,
// updates per second and delivery latency. Rendering runs once per animation frame, whatever the
// update rate, so a fast feed costs the page a table refresh per frame, not per message.
import { fitCanvas } from "/canvas.js";
import { Client } from "/hubbub.js";

const $ = (id) => document.getElementById(id);
const POINTS = 300;
const latest = new Map(); // symbol -> { price, change, previous }
const dirty = new Set();
const rows = new Map(); // symbol -> { row, price, change }
const history = []; // prices of the chosen symbol
const latencies = [];
let chosen = null;
let updates = 0;
let everConnected = false;

const client = new Client(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/connection/websocket`,
  { name: "hubbub-ticker" });

client.addEventListener("state", (event) => {
  const { state } = event.detail;
  $("status").dataset.state = state;
  $("status").textContent = state;
  if (state === "connected") everConnected = true;
  $("banner").hidden = !(everConnected && (state === "connecting" || state === "disconnected"));
});

function row(symbol) {
  let entry = rows.get(symbol);
  if (!entry) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = symbol;
    tr.setAttribute("aria-selected", "false");
    tr.tabIndex = 0;
    const cells = ["symbol", "price", "change"].map((name) => {
      const td = document.createElement("td");
      td.className = name;
      tr.append(td);
      return td;
    });
    cells[0].textContent = symbol;
    tr.addEventListener("click", () => choose(symbol));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") choose(symbol); });
    entry = { row: tr, price: cells[1], change: cells[2] };
    rows.set(symbol, entry);
    const waiting = $("waiting");
    if (waiting) waiting.remove(); // the feed has started
    const body = $("prices");
    const after = [...body.children].find((other) => other.dataset.symbol > symbol);
    body.insertBefore(tr, after || null);
    $("symbol-count").textContent = String(rows.size);
  }
  return entry;
}

function choose(symbol) {
  chosen = symbol;
  history.length = 0;
  const value = latest.get(symbol);
  if (value) history.push(value.price);
  for (const [name, entry] of rows) entry.row.setAttribute("aria-selected", String(name === symbol));
  $("chart-title").textContent = `${symbol}: price`;
}

function onPrice(publication) {
  const data = publication.data;
  const previous = latest.get(data.symbol);
  latest.set(data.symbol, { price: data.price, change: data.change, previous: previous ? previous.price : data.price });
  dirty.add(data.symbol);
  updates += 1;
  if (typeof data.ts === "number") latencies.push(Date.now() - data.ts);
  if (data.symbol === chosen) {
    history.push(data.price);
    if (history.length > POINTS) history.shift();
  }
}

function onScore(publication) {
  const game = publication.data;
  let item = document.getElementById(`score-${game.home}-${game.away}`);
  if (!item) {
    item = document.createElement("li");
    item.id = `score-${game.home}-${game.away}`;
    $("scores").append(item);
  }
  item.textContent = `${game.home} ${game.home_score} : ${game.away_score} ${game.away}`;
}

function render() {
  for (const symbol of dirty) {
    const value = latest.get(symbol);
    const entry = row(symbol);
    entry.price.textContent = value.price.toFixed(2);
    entry.change.textContent = value.change.toFixed(2);
    entry.change.className = `change ${value.change >= 0 ? "up" : "down"}`;
    if (value.price !== value.previous) {
      const flash = value.price > value.previous ? "flash-up" : "flash-down";
      entry.price.className = "price";
      void entry.price.offsetWidth; // restart the animation
      entry.price.className = `price ${flash}`;
    }
  }
  dirty.clear();
  drawChart();
  requestAnimationFrame(render);
}

function drawChart() {
  const canvas = $("chart");
  const ratio = fitCanvas(canvas);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  const width = canvas.width / ratio;
  const height = canvas.height / ratio;
  context.clearRect(0, 0, width, height);
  if (history.length < 2) return;
  const low = Math.min(...history);
  const high = Math.max(...history);
  const span = high - low || 1;
  context.fillStyle = "#556";
  context.font = "12px system-ui";
  context.fillText(high.toFixed(2), 2, 12);
  context.fillText(low.toFixed(2), 2, height - 4);
  context.strokeStyle = "#2b59c3";
  context.lineWidth = 2;
  context.beginPath();
  history.forEach((price, index) => {
    const x = 60 + ((width - 60) * index) / (POINTS - 1);
    const y = 8 + (height - 16) * (1 - (price - low) / span);
    if (index === 0) context.moveTo(x, y); else context.lineTo(x, y);
  });
  context.stroke();
  canvas.dataset.points = String(history.length);
}

setInterval(() => {
  $("rate").textContent = String(updates);
  updates = 0;
  if (latencies.length) {
    const sorted = latencies.splice(0).sort((a, b) => a - b);
    $("latency").textContent = (sorted.reduce((sum, value) => sum + value, 0) / sorted.length).toFixed(1);
    $("latency-p99").textContent = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))].toFixed(1);
  }
}, 1000);

async function onIndex(publication) {
  const { symbols = [], games = [] } = publication.data;
  for (const symbol of symbols.slice(0, 120)) {
    row(symbol);
    await client.subscribe(`ticker:${symbol}`, { onPublication: onPrice });
  }
  for (const game of games.slice(0, 20)) await client.subscribe(`scores:${game}`, { onPublication: onScore });
  if (!chosen && symbols.length) choose(symbols[0]);
}

requestAnimationFrame(render);
await client.connect();
await client.subscribe("ticker:symbols", { onPublication: (publication) => { onIndex(publication); } });
