// hubbub chat: rooms, direct messages, presence, typing, history, unread counts, notifications.
// Every piece of user text is rendered with textContent: nothing a user types becomes HTML.
import { Client } from "/hubbub.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50; // history page size
const TYPING_EVERY = 2000; // ms between typing signals while typing
const TYPING_SHOWN = 3000; // ms a typing indicator stays without a new signal

const NAME = /^[A-Za-z0-9_-]{1,32}$/; // user and room names: safe inside channel names
const NAME_RULE = "1 to 32 letters, digits, _ or - (no spaces)";
const conversations = new Map(); // channel -> conversation
const pending = new Map(); // message id -> { channel, text, element }: typed, not yet confirmed
let me = "";
let client = null;
let current = null;
let everConnected = false;
let lastDisconnect = null; // why the server ended the connection for good, from its disconnect push

// The server ended the session for good (an admin, a refused token): say why, stop input.
function ended(reason) {
  $("ended").textContent = `Disconnected by the server: ${reason}. Reload the page to sign in again.`;
  $("ended").hidden = false;
  $("banner").hidden = true;
  for (const element of document.querySelectorAll("#app input, #app button")) element.disabled = true;
}
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
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error ? body.error.message : `sign-in failed (${response.status})`);
    error.permanent = response.status >= 400 && response.status < 500; // asking again will not help
    throw error;
  }
  return body.token;
}

function showError(id, error) {
  $(id).textContent = error ? String(error.message || error) : "";
}

function conversation(channel) {
  let entry = conversations.get(channel);
  if (!entry) {
    const kind = channel.startsWith("dm:") ? "dm" : "room";
    entry = {
      channel, kind, title: kind === "dm" ? otherUser(channel) : `#${channel.slice(5)}`,
      messages: [], unread: 0, joined: false, loaded: false, oldest: null, epoch: null, element: null,
      top: 0, read: 0, seen: {}, // newest offset, where I read up to (kept by the server), others' reads
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
        button.addEventListener("click", () => {
          userChose = true;
          open(c.channel);
        });
        item.append(button);
        return item;
      });
    $(listId).replaceChildren(...items);
  }
  // On a phone the list folds away: its toggle carries the unread total, so no badge is out of sight.
  const total = [...conversations.values()].reduce((sum, c) => sum + (c.channel === current ? 0 : c.unread), 0);
  $("unread-total").textContent = String(total);
  $("unread-total").hidden = total === 0;
  $("unread-total").setAttribute("aria-label", `${total} unread`);
}

function showConversations(shown) {
  $("app").classList.toggle("show-nav", shown);
  $("nav-toggle").setAttribute("aria-expanded", String(shown));
}

function messageElement(publication) {
  const item = document.createElement("li");
  item.dataset.offset = String(publication.offset ?? "");
  if (publication.data && typeof publication.data.mid === "string") item.dataset.mid = publication.data.mid;
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = authorOf(publication);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = typeof publication.data.text === "string" ? publication.data.text : JSON.stringify(publication.data);
  item.append(author, text);
  if (typeof publication.time === "number") { // the server's time of publication
    const at = document.createElement("time");
    const when = new Date(publication.time);
    at.dateTime = when.toISOString();
    at.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    at.title = when.toLocaleString();
    item.append(at);
  }
  return item;
}

// A user's name; for what the server API published, the name its `info` gives, else "server".
function authorOf(publication) {
  const info = publication.info;
  if (info && info.user) return info.user;
  const name = info && info.info && info.info.name;
  return typeof name === "string" && name ? name : "server";
}

function renderMessages() {
  const entry = conversations.get(current);
  const waiting = [...pending.values()].filter((p) => p.channel === current).map((p) => p.element);
  $("messages").replaceChildren(...(entry ? entry.messages.map(messageElement) : []), ...waiting); // still sending
  $("messages").scrollTop = $("messages").scrollHeight;
  renderOlder(entry);
}

// "Load older" shows while history goes further back than what is loaded.
function renderOlder(entry) {
  $("older").hidden = !(entry && entry.oldest !== null && entry.oldest > 1);
}

// A tall window may show a whole page without a scrollbar, and scrolling up then never starts:
// load older pages until the list scrolls or the beginning is reached.
async function fillWindow() {
  const list = $("messages");
  for (let pages = 0; pages < 20 && list.scrollHeight <= list.clientHeight; pages += 1) {
    const entry = conversations.get(current);
    if (!entry || entry.oldest === null || entry.oldest <= 1) return;
    if (!(await loadOlder())) return;
  }
}

function notify(entry, publication) {
  if (typeof Notification === "undefined" || Notification.permission !== "granted" || !document.hidden) return;
  const author = authorOf(publication);
  const title = entry.kind === "dm" ? author : `${author} in ${entry.title}`; // a DM's title is its author
  new Notification(title, { body: String(publication.data.text ?? "") });
}

// Unread counts derive from read positions the server keeps: every tab and device agrees.
function setUnread(entry) {
  entry.unread = Math.max(0, entry.top - entry.read);
}

async function markRead(entry) {
  if (entry.top <= entry.read || client.state !== "connected") return;
  try {
    entry.read = await client.markRead(entry.channel, entry.top);
  } catch (error) {
    console.warn("hubbub chat: marking as read failed", error); // the next message tries again
  }
}

async function refreshUnread() {
  const channels = [...conversations.keys()].slice(0, 128);
  if (!channels.length) return;
  const states = await client.readPositions(channels);
  for (const [channel, state] of Object.entries(states)) {
    const entry = conversations.get(channel);
    if (!entry) continue;
    entry.top = Math.max(entry.top, state.offset);
    entry.read = Math.max(entry.read, state.read);
    entry.seen = { ...entry.seen, ...(state.seen || {}) };
    if (channel === current) markRead(entry);
    else setUnread(entry);
  }
  renderList();
  renderSeen();
}

function onRead(event) {
  const { channel, user, offset } = event.detail;
  const entry = conversations.get(channel);
  if (!entry) return;
  if (user === me) { // read in another tab or device
    entry.read = Math.max(entry.read, offset);
    setUnread(entry);
    renderList();
  } else {
    entry.seen[user] = Math.max(entry.seen[user] || 0, offset);
    renderSeen();
  }
}

// In a DM: "seen" once the other member has read my last message.
function renderSeen() {
  const entry = conversations.get(current);
  let seen = false;
  if (entry && entry.kind === "dm") {
    const mine = entry.messages.filter((m) => m.info && m.info.user === me && m.offset !== undefined);
    const last = mine.length ? mine[mine.length - 1].offset : null;
    seen = last !== null && (entry.seen[otherUser(entry.channel)] || 0) >= last;
  }
  $("seen").textContent = seen ? "seen" : "";
}

function received(entry, publication) {
  if (entry.messages.some((m) => m.offset !== undefined && m.offset === publication.offset)) return;
  const mid = publication.data && publication.data.mid;
  if (typeof mid === "string" && entry.messages.some((m) => m.data && m.data.mid === mid)) return; // a resend
  if (typeof mid === "string" && pending.has(mid)) {
    pending.get(mid).element.remove(); // confirmed: the pending line gives way to the real one
    pending.delete(mid);
  }
  entry.messages.push(publication);
  if (typeof publication.offset === "number") entry.top = Math.max(entry.top, publication.offset);
  if (publication.info) clearTypist(publication.info.user);
  if (entry.channel === current) {
    markRead(entry);
    renderSeen();
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(messageElement(publication));
    if (atBottom || (publication.info && publication.info.user === me)) list.scrollTop = list.scrollHeight;
  } else {
    setUnread(entry);
    renderList();
    notify(entry, publication);
  }
}

async function loadHistory(entry) {
  const result = await client.history(entry.channel, { limit: PAGE, reverse: true });
  entry.epoch = result.epoch;
  entry.top = Math.max(entry.top, result.offset);
  const older = result.publications.reverse();
  const known = new Set(entry.messages.map((m) => m.offset));
  entry.messages = uniqueMessages([...older.filter((p) => !known.has(p.offset)), ...entry.messages]);
  entry.oldest = entry.messages.length ? entry.messages[0].offset : null;
  entry.loaded = true;
}

// A message resent after an unanswered attempt can be in history twice: show its first copy only.
function uniqueMessages(publications) {
  const seen = new Set();
  return publications.filter((p) => {
    const mid = p.data && p.data.mid;
    if (typeof mid !== "string") return true;
    if (seen.has(mid)) return false;
    seen.add(mid);
    return true;
  });
}

async function loadOlder() {
  const entry = conversations.get(current);
  if (!entry || entry.oldest === null || entry.oldest <= 1 || entry.loadingOlder) return false;
  entry.loadingOlder = true;
  try {
    const list = $("messages");
    const before = list.scrollHeight;
    const result = await client.history(entry.channel, {
      limit: PAGE, reverse: true, since: { offset: entry.oldest, epoch: entry.epoch },
    });
    const known = new Set(entry.messages.map((m) => m.offset));
    const older = result.publications.reverse().filter((p) => !known.has(p.offset)); // no duplicate
    if (older.length) {
      entry.messages = uniqueMessages([...older, ...entry.messages]);
      entry.oldest = older[0].offset;
      list.prepend(...older.map(messageElement));
      list.scrollTop = list.scrollHeight - before;
    } else {
      entry.oldest = null;
    }
    renderOlder(entry);
    return older.length > 0;
  } finally {
    entry.loadingOlder = false;
  }
}

async function join(entry) {
  if (entry.joined) return;
  entry.joined = true;
  try {
    await subscribeTo(entry);
  } catch (error) {
    entry.joined = false;
    throw error;
  }
}

async function subscribeTo(entry) {
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

let opening = 0; // the latest open(): an earlier one still joining must not take the view back

async function open(channel) {
  const ticket = ++opening;
  const existed = conversations.has(channel);
  const entry = conversation(channel);
  try {
    await join(entry);
  } catch (error) {
    if (!existed) { // never joined: no dead entry in the list
      conversations.delete(channel);
      renderList();
    }
    throw error;
  }
  if (ticket !== opening) return; // the user went elsewhere meanwhile
  current = channel;
  entry.unread = 0;
  markRead(entry);
  typists.forEach((timer) => clearTimeout(timer));
  typists.clear();
  renderTypists();
  $("title").textContent = entry.title;
  renderList();
  showConversations(false); // on a phone, back to the conversation
  renderMessages();
  renderSeen();
  await fillWindow();
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
    // Subscribed at once, so unread counts work for every DM; what arrived before the subscribe
    // came with its history, so the count is taken from the server's read positions then.
    const entry = conversation(channel);
    const fresh = !entry.joined;
    join(entry)
      .then(() => (fresh && client.state === "connected" ? refreshUnread() : undefined))
      .catch((error) => console.warn("hubbub chat: joining a direct message failed", error));
  }
}

async function start() {
  client = new Client(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/connection/websocket`,
    { token: fetchToken, name: "hubbub-chat" });
  client.addEventListener("state", (event) => {
    const { state } = event.detail;
    $("state").textContent = state;
    if (state === "connected") {
      const back = everConnected;
      everConnected = true;
      resendPending();
      if (back) refreshUnread().catch((error) => console.warn("hubbub chat: unread counts", error));
    }
    $("banner").hidden = !(everConnected && (state === "connecting" || state === "disconnected"));
    if (everConnected && state === "failed") ended(lastDisconnect || event.detail.reason || "connection lost");
  });
  client.addEventListener("read", onRead);
  client.addEventListener("disconnect", (event) => {
    if (!event.detail.reconnect) lastDisconnect = event.detail.reason;
  });
  await client.connect();
  $("me").textContent = me;
  $("signin").hidden = true;
  $("app").hidden = false;
}

let lobbyByDefault = false; // setUp opened #lobby itself (the user had chosen nothing yet)
let userChose = false; // the user picked, created or started a conversation: setUp leaves the view alone

// What follows the sign-in: the room list, the DM inbox, the lobby, unread counts. Safe to run
// again: subscriptions already made are kept, and a view the user chose is left alone.
async function setUp() {
  await client.subscribe("rooms:index", { onPublication: knownRoom });
  for (const publication of (await client.history("rooms:index", { limit: 1000 })).publications) knownRoom(publication);
  await client.subscribe(`user:${me}`, { onPublication: knownDm });
  for (const publication of (await client.history(`user:${me}`, { limit: 100 })).publications) knownDm(publication);
  if (!conversations.has(roomChannel("lobby"))) await client.publish("rooms:index", { room: "lobby" });
  if (!userChose && (opening === 0 || (lobbyByDefault && current === null))) { // unless the user chose one
    lobbyByDefault = true;
    await open(roomChannel("lobby"));
  }
  await refreshUnread();
}

// A connection lost during the set-up (a server restart) is not a failed sign-in: hubbub.js
// reconnects, and the set-up runs again once the connection is back.
async function setUpWhileConnected() {
  for (;;) {
    try {
      await setUp();
      return;
    } catch (error) {
      if (client.state === "closed" || client.state === "failed") return;
      console.warn("hubbub chat: the connection went during set-up; again when it is back", error);
      try {
        await client.whenConnected();
      } catch {
        return; // the client failed for good: the page says why (ended)
      }
    }
  }
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
    return;
  }
  await setUpWhileConnected();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!NAME.test(name)) {
    showError("signin-error", `Names use ${NAME_RULE}.`);
    return;
  }
  if (typeof Notification !== "undefined" && Notification.permission === "default") {
    Notification.requestPermission(); // asked on a click, as browsers require
  }
  signIn(name);
});

const remembered = sessionStorage.getItem("hubbub-chat-user");
if (remembered) signIn(remembered);

$("message-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("message").value;
  if (!text.trim() || !current) return;
  $("message").value = "";
  lastTypingSent = 0; // the next keystroke starts a new typing signal at once
  const mid = `${me}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const element = messageElement({ data: { text, mid }, info: { user: me } });
  element.classList.add("pending");
  element.title = "sending…";
  $("messages").append(element);
  $("messages").scrollTop = $("messages").scrollHeight;
  pending.set(mid, { channel: current, text, element, sending: false });
  sendPending(mid);
});

// A typed message is sent once it can be: now, or when the connection is back. Its id (`mid`)
// makes a resend after an unanswered attempt show once: the copy the server already has wins.
async function sendPending(mid) {
  const message = pending.get(mid);
  if (!message || message.sending || client.state !== "connected") return;
  message.sending = true;
  showError("send-error", null);
  try {
    await client.publish(message.channel, { text: message.text, mid });
  } catch (error) {
    if (error.code !== undefined && !error.temporary) { // refused: say why, keep the text
      message.element.classList.add("failed");
      message.element.title = String(error.message);
      pending.delete(mid);
      showError("send-error", `Not sent: ${error.message}`);
    } else if (error.code !== undefined) { // temporary (too many requests): say so, try again soon
      showError("send-error", `Not sent yet (${error.message}); trying again…`);
      setTimeout(() => sendPending(mid), 1000 + Math.random() * 1000);
    } // no reply (connection lost): sent again when the connection is back
  } finally {
    message.sending = false;
  }
}

function resendPending() {
  for (const mid of pending.keys()) sendPending(mid);
}

$("message").addEventListener("input", () => {
  const now = Date.now();
  if (!current || now - lastTypingSent < TYPING_EVERY) return;
  lastTypingSent = now; // throttled here; the typing namespaces' publish_rate backs it up
  client.publish(typingChannel(current), { typing: true }).catch(() => {});
});

$("room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("room-name").value.trim();
  if (!NAME.test(name)) {
    showError("room-error", `Room names use ${NAME_RULE}.`);
    return; // what was typed stays in the box
  }
  showError("room-error", null);
  userChose = true; // before the publish: a set-up finishing meanwhile must not open #lobby over it
  try {
    if (!conversations.has(roomChannel(name))) await client.publish("rooms:index", { room: name });
    await open(roomChannel(name));
    $("room-name").value = "";
  } catch (error) {
    if (current === null) userChose = false; // nothing opened after all: the set-up may open #lobby
    showError("room-error", error);
  }
});

$("dm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const other = $("dm-user").value.trim();
  if (!NAME.test(other)) {
    showError("dm-error", `User names use ${NAME_RULE}.`);
    return;
  }
  showError("dm-error", null);
  userChose = true;
  try {
    const channel = dmChannel(me, other);
    await client.publish(`user:${other}`, { dm: channel });
    await client.publish(`user:${me}`, { dm: channel });
    await open(channel);
    $("dm-user").value = "";
  } catch (error) {
    if (current === null) userChose = false;
    showError("dm-error", error);
  }
});

$("older").addEventListener("click", () => loadOlder());
$("nav-toggle").addEventListener("click", () => showConversations(!$("app").classList.contains("show-nav")));

$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 20) loadOlder();
});
