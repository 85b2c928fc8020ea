// hubbub admin view: signs in with the admin key, then draws what /admin/ws pushes.
// All server text goes through textContent: nothing is parsed as HTML.
import { fitCanvas } from "/admin/canvas.js";

const $ = (id) => document.getElementById(id);
const WINDOW = 300; // samples kept for the plots (5 minutes at one per second)
const series = { in: [], out: [], connections: [] };
let key = sessionStorage.getItem("hubbub-admin-key"); // null: not signed in ("" is a valid key on loopback)
let socket = null;
let retry = 0;

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function push(list, value) {
  list.push(value);
  if (list.length > WINDOW) list.shift();
}

// Each plot's legend: the colour and name of every line, as text beside the canvas.
function drawLegend(canvas, lines) {
  let legend = canvas.nextElementSibling;
  if (!legend || !legend.classList.contains("legend")) {
    legend = document.createElement("p");
    legend.className = "legend";
    canvas.after(legend);
  }
  if (legend.childElementCount === lines.length) return;
  legend.replaceChildren(...lines.map((line) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = line.color;
    item.append(swatch, line.name);
    return item;
  }));
}

function drawPlot(canvas, lines) {
  drawLegend(canvas, lines);
  const ratio = fitCanvas(canvas);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  const width = canvas.width / ratio;
  const height = canvas.height / ratio;
  context.clearRect(0, 0, width, height);
  const max = Math.max(1, ...lines.flatMap((line) => line.values));
  context.strokeStyle = "#e4e6ea";
  context.fillStyle = "#556";
  context.font = "12px system-ui";
  for (let step = 0; step <= 4; step += 1) {
    const y = height - 16 - ((height - 24) * step) / 4;
    context.beginPath();
    context.moveTo(40, y);
    context.lineTo(width, y);
    context.stroke();
    const label = (max * step) / 4;
    context.fillText(max < 8 ? label.toFixed(2).replace(/\.?0+$/, "") : String(Math.round(label)), 2, y + 4);
  }
  for (const line of lines) {
    context.strokeStyle = line.color;
    context.lineWidth = 2;
    context.beginPath();
    line.values.forEach((value, index) => {
      const x = 40 + ((width - 40) * index) / (WINDOW - 1);
      const y = height - 16 - ((height - 24) * value) / max;
      if (index === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
  }
  canvas.dataset.points = String(lines[0].values.length);
  canvas.dataset.last = String(lines[0].values[lines[0].values.length - 1] ?? 0);
}

function fillTable(body, rows) {
  body.replaceChildren(...rows.map((cells) => {
    const row = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = String(cell);
      row.append(td);
    }
    return row;
  }));
}

function show(snapshot) {
  nodeCount = (snapshot.nodes || []).length || 1;
  push(series.in, snapshot.messages_in_per_s);
  push(series.out, snapshot.messages_out_per_s);
  push(series.connections, snapshot.connections);
  $("connections").textContent = snapshot.connections;
  $("users").textContent = snapshot.users;
  $("channels").textContent = snapshot.channels;
  $("rate-in").textContent = snapshot.messages_in_per_s;
  $("rate-out").textContent = snapshot.messages_out_per_s;
  $("dropped").textContent = snapshot.dropped_per_s;
  fillTable($("nodes"), snapshot.nodes.map((n) => [n.id, n.version, n.uptime, n.connections]));
  fillTable($("top-channels"), snapshot.top_channels.map((c) => [c.channel, c.rate, c.subscribers]));
}

function redraw() {
  drawPlot($("plot-messages"), [
    { values: series.in, color: "#2b59c3", name: "messages in" },
    { values: series.out, color: "#1f8a4c", name: "deliveries" },
  ]);
  drawPlot($("plot-connections"), [{ values: series.connections, color: "#b7791f", name: "connections" }]);
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/admin/ws`;
  socket = new WebSocket(url);
  socket.onopen = () => socket.send(JSON.stringify({ key }));
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.error) {
      signOut(message.error);
      return;
    }
    if (message.history) {
      series.in.length = series.out.length = series.connections.length = 0;
      message.history.forEach(show);
    } else if (message.snapshot) {
      show(message.snapshot);
    }
    retry = 0;
    redraw();
    setStatus("live", "live");
    $("signin").hidden = true;
    $("dashboard").hidden = false;
  };
  socket.onclose = (event) => {
    if (event.code === 1008 || key === null) return;
    // Exponential backoff with full jitter: many admin tabs must not reconnect in step.
    const delay = Math.random() * Math.min(10000, 250 * 2 ** retry);
    retry += 1;
    setStatus("reconnecting", "reconnecting");
    setTimeout(connect, delay);
  };
}

function signOut(reason) {
  key = null;
  sessionStorage.removeItem("hubbub-admin-key");
  if (socket) socket.close();
  $("dashboard").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = reason;
  setStatus("signed-out", "signed out");
}

let nodeCount = 1; // from the latest snapshot: with several nodes, a disconnect counts only this one's

async function callApi(path, body, output, describe = (reply) => `done: ${JSON.stringify(reply)}`) {
  output.classList.remove("error");
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `apikey ${key}` },
      body: JSON.stringify(body),
    });
    const reply = await response.json();
    output.textContent = response.ok ? describe(reply) : `error: ${reply.error.message}`;
    if (!response.ok) output.classList.add("error");
  } catch (error) {
    output.textContent = `error: ${error}`;
    output.classList.add("error");
  }
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  key = $("key").value;
  sessionStorage.setItem("hubbub-admin-key", key);
  $("signin-error").textContent = "";
  connect();
});

$("disconnect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  callApi("/api/disconnect", { user: $("disconnect-user").value }, $("disconnect-result"), (reply) => {
    const elsewhere = nodeCount > 1 ? " on this node (the other nodes were told to close theirs)" : "";
    if (reply.connections === 0) return `no connections for that user${elsewhere}`;
    return `done: ${reply.connections} connection${reply.connections === 1 ? "" : "s"} closed${elsewhere}`;
  });
});

$("publish-form").addEventListener("submit", (event) => {
  event.preventDefault();
  let data;
  try {
    data = JSON.parse($("publish-data").value);
  } catch (error) {
    $("publish-result").textContent = `error: data is not JSON (${error.message})`;
    $("publish-result").classList.add("error");
    return;
  }
  callApi("/api/publish", { channel: $("publish-channel").value, data }, $("publish-result"));
});

if (key !== null) connect();
