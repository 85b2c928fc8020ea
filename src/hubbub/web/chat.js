// hubbub chat: rooms, direct messages, presence, typing, history, unread counts, notifications.
// Every piece of user text is rendered with textContent: nothing a user types becomes HTML.
import { Client } from "/hubbub.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50; // history page size
const TYPING_EVERY = 2000; // ms between typing signals while typing
const TYPING_SHOWN = 3000; // ms a typing indicator stays without a new signal

const conversations = new Map(); // channel -> conversation
let me = "";
let client = null;
let current = null;
let everConnected = false;
let lastTypingSent = 0;
const typists = new Map(); // user -> timer

function roomChannel(name) { return `room:${name}`; }
// One name per conversation: members sorted, each once (the server refuses any other spelling).
function dmChannel(a, b) { return `dm:${[...new Set([a, b])].sort().join(",")}`; }
// Typing signals: typing:ROOM for rooms; dm-typing:alice,bob (members only) for direct messages.
function typingChannel(channel) {
  return channel.startsWith("dm:") ? `dm-typing:${channel.slice(3)}` : `typing:${channel.slice(5)}`;
}
function otherUser(channel) { return channel.slice(3).split(",").find((user) => user !== me) || me; }

async function fetchToken() {
  const response = await fetch(`/dev/token?user=${encodeURIComponent(me)}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `sign-in failed (${response.status})`);
  return body.token;
}

function conversation(channel) {
  let entry = conversations.get(channel);
  if (!entry) {
    const kind = channel.startsWith("dm:") ? "dm" : "room";
    entry = {
      channel, kind, title: kind === "dm" ? otherUser(channel) : `#${channel.slice(5)}`,
      messages: [], unread: 0, joined: false, loaded: false, oldest: null, epoch: null, element: null,
    };
    conversations.set(channel, entry);
    renderList();
  }
  return entry;
}

function renderList() {
  for (const [listId, kind] of [["rooms", "room"], ["dms", "dm"]]) {
    const items = [...conversations.values()].filter((c) => c.kind === kind)
      .sort((a, b) => a.title.localeCompare(b.title))
      .map((c) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.channel = c.channel;
        button.setAttribute("aria-current", String(c.channel === current));
        const title = document.createElement("span");
        title.textContent = c.title;
        button.append(title);
        if (c.unread > 0) {
          const badge = document.createElement("span");
          badge.className = "badge";
          badge.textContent = String(c.unread);
          badge.setAttribute("aria-label", `${c.unread} unread`);
          button.append(badge);
        }
        button.addEventListener("click", () => open(c.channel));
        item.append(button);
        return item;
      });
    $(listId).replaceChildren(...items);
  }
}

function messageElement(publication) {
  const item = document.createElement("li");
  item.dataset.offset = String(publication.offset ?? "");
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = publication.info ? publication.info.user : "server";
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = typeof publication.data.text === "string" ? publication.data.text : JSON.stringify(publication.data);
  item.append(author, text);
  return item;
}

function renderMessages() {
  const entry = conversations.get(current);
  $("messages").replaceChildren(...(entry ? entry.messages.map(messageElement) : []));
  $("messages").scrollTop = $("messages").scrollHeight;
}

function notify(entry, publication) {
  if (typeof Notification === "undefined" || Notification.permission !== "granted" || !document.hidden) return;
  const author = publication.info ? publication.info.user : "server";
  new Notification(`${author} in ${entry.title}`, { body: String(publication.data.text ?? "") });
}

function received(entry, publication) {
  if (entry.messages.some((m) => m.offset !== undefined && m.offset === publication.offset)) return;
  entry.messages.push(publication);
  if (publication.info) clearTypist(publication.info.user);
  if (entry.channel === current) {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(messageElement(publication));
    if (atBottom || (publication.info && publication.info.user === me)) list.scrollTop = list.scrollHeight;
  } else {
    entry.unread += 1;
    renderList();
    notify(entry, publication);
  }
}

async function loadHistory(entry) {
  const result = await client.history(entry.channel, { limit: PAGE, reverse: true });
  entry.epoch = result.epoch;
  const older = result.publications.reverse();
  const known = new Set(entry.messages.map((m) => m.offset));
  entry.messages = [...older.filter((p) => !known.has(p.offset)), ...entry.messages];
  entry.oldest = entry.messages.length ? entry.messages[0].offset : null;
  entry.loaded = true;
}

async function loadOlder() {
  const entry = conversations.get(current);
  if (!entry || entry.oldest === null || entry.oldest <= 1 || entry.loadingOlder) return;
  entry.loadingOlder = true;
  try {
    const list = $("messages");
    const before = list.scrollHeight;
    const result = await client.history(entry.channel, {
      limit: PAGE, reverse: true, since: { offset: entry.oldest, epoch: entry.epoch },
    });
    const older = result.publications.reverse();
    if (older.length) {
      entry.messages = [...older, ...entry.messages];
      entry.oldest = older[0].offset;
      list.prepend(...older.map(messageElement));
      list.scrollTop = list.scrollHeight - before;
    } else {
      entry.oldest = null;
    }
  } finally {
    entry.loadingOlder = false;
  }
}

async function join(entry) {
  if (entry.joined) return;
  entry.joined = true;
  await client.subscribe(entry.channel, {
    onPublication: (publication) => received(entry, publication),
    onJoin: () => { if (entry.channel === current) showPresence(entry); },
    onLeave: () => { if (entry.channel === current) showPresence(entry); },
    onUnrecovered: async () => { // the gap is gone from history: start the view again
      entry.messages = [];
      await loadHistory(entry);
      if (entry.channel === current) renderMessages();
    },
  });
  await client.subscribe(typingChannel(entry.channel), {
    onPublication: (publication) => {
      const user = publication.info && publication.info.user;
      if (user && user !== me && entry.channel === current) showTypist(user);
    },
  });
  await loadHistory(entry);
}

async function showPresence(entry) {
  if (entry.kind !== "room") {
    $("online").textContent = "";
    return;
  }
  const result = await client.presence(entry.channel);
  const users = [...new Set(Object.values(result.clients).map((c) => c.user))].sort();
  $("online").textContent = `online: ${users.join(", ")}`;
}

async function open(channel) {
  const entry = conversation(channel);
  current = channel;
  entry.unread = 0;
  typists.forEach((timer) => clearTimeout(timer));
  typists.clear();
  renderTypists();
  $("title").textContent = entry.title;
  renderList();
  await join(entry);
  renderMessages();
  await showPresence(entry);
  $("message").focus();
}

function renderTypists() {
  const names = [...typists.keys()];
  $("typing").textContent = names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

function showTypist(user) {
  clearTimeout(typists.get(user));
  typists.set(user, setTimeout(() => clearTypist(user), TYPING_SHOWN));
  renderTypists();
}

function clearTypist(user) {
  if (!typists.has(user)) return;
  clearTimeout(typists.get(user));
  typists.delete(user);
  renderTypists();
}

function knownRoom(publication) {
  const name = publication.data && publication.data.room;
  if (typeof name === "string" && /^[A-Za-z0-9_-]{1,32}$/.test(name)) conversation(roomChannel(name));
}

function knownDm(publication) {
  const channel = publication.data && publication.data.dm;
  if (typeof channel === "string" && /^dm:[A-Za-z0-9_-]{1,32},[A-Za-z0-9_-]{1,32}$/.test(channel)) {
    join(conversation(channel)); // subscribed at once: unread counts work for every DM
  }
}

async function start() {
  client = new Client(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/connection/websocket`,
    { token: fetchToken, name: "hubbub-chat" });
  client.addEventListener("state", (event) => {
    const { state } = event.detail;
    $("state").textContent = state;
    if (state === "connected") everConnected = true;
    $("banner").hidden = !(everConnected && (state === "connecting" || state === "disconnected"));
  });
  await client.connect();
  $("me").textContent = me;
  $("signin").hidden = true;
  $("app").hidden = false;
  await client.subscribe("rooms:index", { onPublication: knownRoom });
  for (const publication of (await client.history("rooms:index", { limit: 1000 })).publications) knownRoom(publication);
  await client.subscribe(`user:${me}`, { onPublication: knownDm });
  for (const publication of (await client.history(`user:${me}`, { limit: 100 })).publications) knownDm(publication);
  if (!conversations.has(roomChannel("lobby"))) await client.publish("rooms:index", { room: "lobby" });
  await open(roomChannel("lobby"));
}

async function signIn(name) {
  me = name;
  $("signin-error").textContent = "";
  try {
    await start();
    sessionStorage.setItem("hubbub-chat-user", me); // a reload signs in again as the same user
  } catch (error) {
    $("signin-error").textContent = String(error.message || error);
    sessionStorage.removeItem("hubbub-chat-user");
    if (client) client.close();
  }
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (typeof Notification !== "undefined" && Notification.permission === "default") {
    Notification.requestPermission(); // asked on a click, as browsers require
  }
  signIn($("name").value.trim());
});

const remembered = sessionStorage.getItem("hubbub-chat-user");
if (remembered) signIn(remembered);

$("message-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("message").value;
  if (!text.trim() || !current) return;
  $("message").value = "";
  lastTypingSent = 0; // the next keystroke starts a new typing signal at once
  await client.publish(current, { text });
});

$("message").addEventListener("input", () => {
  const now = Date.now();
  if (!current || now - lastTypingSent < TYPING_EVERY) return;
  lastTypingSent = now; // throttled here; the typing namespaces' publish_rate backs it up
  client.publish(typingChannel(current), { typing: true }).catch(() => {});
});

$("room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("room-name").value.trim();
  $("room-name").value = "";
  if (!conversations.has(roomChannel(name))) await client.publish("rooms:index", { room: name });
  await open(roomChannel(name));
});

$("dm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const other = $("dm-user").value.trim();
  $("dm-user").value = "";
  const channel = dmChannel(me, other);
  await client.publish(`user:${other}`, { dm: channel });
  await client.publish(`user:${me}`, { dm: channel });
  await open(channel);
});

$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 20) loadOlder();
});
