// hubbub.js: the browser client for hubbub's hubbub.json.v1 protocol (docs/protocol.md).
// A dependency-free ES module: import { Client } from "/hubbub.js".
//
// It reconnects after a dropped connection with exponential backoff and full jitter, connects
// again, and resubscribes every channel from the last offset it saw, so publications missed
// meanwhile arrive once, in order, before new ones. When the server cannot fill the gap
// (`recovered: false`), the subscription's onUnrecovered callback runs so the app can reload.
//
// Where a WebSocket cannot open (a proxy that breaks upgrades), it falls back to HTTP streaming
// (a streamed response for what the server sends, POSTs for what it sends; docs/protocol.md),
// and while on it tries the WebSocket again now and then, switching back when it opens.

const SUBPROTOCOL = "hubbub.json.v1";
const NO_RECONNECT = new Set([1002, 1003, 1007, 1008, 1009, 1010]);

export function reconnectAllowed(code) {
  return !(code >= 3500 && code <= 3999) && !NO_RECONNECT.has(code);
}

// The HTTP-streaming endpoint beside a WebSocket URL: ws://host/connection/websocket -> http://host/connection/stream
export function streamUrlFor(url) {
  const base = typeof location === "undefined" ? undefined : location.href;
  const target = new URL(url, base);
  target.protocol = target.protocol === "wss:" ? "https:" : target.protocol === "ws:" ? "http:" : target.protocol;
  target.pathname = "/connection/stream";
  target.search = "";
  return target.href;
}

const OPEN = 1;
const CLOSED = 3;

// What the Client needs of a WebSocket, over HTTP streaming: one POST whose streamed response
// carries the server's messages (one JSON line each) and POSTs for the client's, numbered so the
// server puts them in order and drops a retried copy. Needs fetch with streamed bodies.
export class HttpStreamSocket {
  constructor(url, { retries = 5 } = {}) {
    this.url = url;
    this.sendUrl = url.replace(/\/?$/, "/send");
    this.readyState = 0;
    this.protocol = "http-stream";
    this.streamId = null;
    this.seq = 0;
    this.queue = [];
    this.sending = false;
    this.retries = retries;
    this.aborter = new AbortController();
    this.onopen = this.onmessage = this.onclose = null;
    this.run();
  }

  async run() {
    let code = 1006;
    let reason = "";
    try {
      const response = await fetch(this.url, { method: "POST", cache: "no-store", signal: this.aborter.signal });
      if (!response.ok || !response.body) {
        if (response.status === 403) code = 1008;
        throw new Error(`stream refused: HTTP ${response.status}`);
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        let end;
        while ((end = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, end);
          buffered = buffered.slice(end + 1);
          if (!line.trim()) continue; // a keep-alive
          if (this.streamId === null) {
            this.streamId = JSON.parse(line).stream.id;
            this.readyState = OPEN;
            if (this.onopen) this.onopen();
          } else if (line.startsWith('{"closed":')) {
            ({ code, reason } = JSON.parse(line).closed);
          } else if (this.onmessage) {
            this.onmessage({ data: line });
          }
        }
      }
    } catch (error) {
      // the network, a refusal or close(): the close code says which
    }
    this.finish(code, reason);
  }

  send(text) {
    if (this.readyState !== OPEN) throw new Error("not connected");
    this.queue.push(text);
    this.pump();
  }

  // One POST at a time, carrying everything queued meanwhile; a failed one is retried as it was.
  async pump() {
    if (this.sending) return;
    this.sending = true;
    while (this.queue.length && this.readyState === OPEN) {
      const body = JSON.stringify({ stream: this.streamId, seq: ++this.seq }) + "\n" + this.queue.splice(0).join("\n");
      let delivered = false;
      for (let attempt = 0; attempt <= this.retries && this.readyState === OPEN && !delivered; attempt++) {
        try {
          const response = await fetch(this.sendUrl, {
            method: "POST", body, cache: "no-store", headers: { "Content-Type": "text/plain" },
          });
          if (response.status === 202) delivered = true;
          else if (response.status === 413) return this.close(1009, "message too big");
          else if (response.status === 404) return this.close(1006, "stream ended");
          else if (response.status < 500 && response.status !== 429) return this.close(1008, `HTTP ${response.status}`);
        } catch (error) {
          // the network: try again
        }
        if (!delivered) await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      }
      if (!delivered) return this.close(1006, "commands could not be sent");
    }
    this.sending = false;
  }

  close(code = 1000, reason = "") {
    this.aborter.abort();
    this.finish(code, reason);
  }

  finish(code, reason) {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.sending = false;
    if (this.onclose) this.onclose({ code, reason, wasClean: code !== 1006 });
  }
}

// The server's /health on the public port, when the page may fetch it (same origin); else null.
function healthUrlFor(url) {
  if (typeof location === "undefined" || typeof fetch === "undefined") return null;
  try {
    const target = new URL(url, location.href);
    const health = new URL("/health", target);
    health.protocol = target.protocol === "wss:" ? "https:" : "http:";
    return health.origin === location.origin ? health.href : null;
  } catch (error) {
    return null;
  }
}

// A token itself, or what a token function returns (or resolves to) now.
async function tokenFrom(source) {
  return typeof source === "function" ? await source() : source;
}

export class ReplyError extends Error {
  constructor(error) {
    super(`${error.code}: ${error.message}`);
    this.code = error.code;
    this.temporary = Boolean(error.temporary);
  }
}

export class Subscription {
  constructor(client, channel, options) {
    this.client = client;
    this.channel = channel;
    this.offset = options.since ? options.since.offset : null;
    this.epoch = options.since ? options.since.epoch : null;
    this.recovered = null;
    this.unsubscribed = null; // why the server ended it ({code, reason}), when it did
    this.serverSide = false; // subscribed by the server (token `channels`, connect hook, server API)
    this.options = options;
  }

  // options.token: a subscription token, or a function returning one (or a promise of one),
  // called at every subscribe and when the server asks for a fresh one ahead of its expiry.
  tokenValue() {
    return tokenFrom(this.options.token);
  }

  applyResult(result) {
    if (result.was_recovering) this.recovered = Boolean(result.recovered);
    // A fresh start (first subscribe, or a gap that could not be filled) takes the stream's
    // position, after delivering what the reply carries (a conflated channel's snapshot).
    const fresh = result.epoch !== undefined && (!result.was_recovering || !this.recovered);
    if (result.epoch !== undefined) this.epoch = result.epoch;
    if (fresh) this.offset = null;
    for (const publication of result.publications || []) this.deliver(publication);
    if (fresh) this.offset = Math.max(this.offset ?? 0, result.offset ?? 0);
    if (result.was_recovering && !this.recovered && this.options.onUnrecovered) {
      this.client.callSafely(this.options.onUnrecovered, this);
    }
  }

  deliver(publication) {
    if (publication.offset !== undefined) {
      if (this.offset !== null && publication.offset <= this.offset) return; // seen already
      this.offset = publication.offset;
    }
    if (this.options.onPublication) this.client.callSafely(this.options.onPublication, publication);
  }

  unsubscribe() {
    return this.client.unsubscribe(this.channel);
  }
}

export class Client extends EventTarget {
  // token: a string, or a function returning a token or a promise of one (called again on
  // reconnect and when the server asks for a refresh).
  // probeInterval: while waiting to reconnect, GET /health of the server's origin about this often
  // (ms, jittered; only while the page is visible and the server is same-origin) and reconnect at
  // once when it answers; 0 turns the probe off. The browser's `online` event also retries at once.
  // data: any JSON, sent with every connect for the application's connect hook.
  // transports: what to try, in order: "websocket", then "http-stream" (HTTP streaming, at
  // streamUrl) once a WebSocket failed to open; while streaming, a WebSocket is tried again
  // every upgradeInterval ms and used when it opens. ["websocket"] turns the fallback off.
  // Server-side subscriptions arrive as a "subscribed" event whose detail is the Subscription: set
  // its options.onPublication (and onJoin, ...) in the listener, before its publications come.
  constructor(url, { token = null, name = "hubbub-js", minReconnectDelay = 200, maxReconnectDelay = 20000,
    commandTimeout = 10000, probeInterval = 1000, data = undefined, transports = ["websocket", "http-stream"],
    streamUrl = undefined, upgradeInterval = 30000 } = {}) {
    super();
    this.url = url;
    this.transports = transports;
    this.transport = transports[0];
    this.streamUrl = streamUrl || (transports.includes("http-stream") ? streamUrlFor(url) : null);
    this.upgradeInterval = upgradeInterval;
    this.upgradeTimer = null;
    this.data = data;
    this.token = token;
    this.name = name;
    this.minReconnectDelay = minReconnectDelay;
    this.maxReconnectDelay = maxReconnectDelay;
    this.commandTimeout = commandTimeout;
    this.state = "disconnected";
    this.clientId = null;
    this.subscriptions = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.socket = null;
    this.closing = false;
    this.connectedWaiters = [];
    this.retryTimer = null;
    this.probeTimer = null;
    this.probeInterval = probeInterval;
    this.healthUrl = healthUrlFor(url);
    if (typeof window !== "undefined") window.addEventListener("online", () => this.retryNow());
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, transport: this.transport, ...detail } }));
  }

  callSafely(callback, argument) {
    try {
      callback(argument);
    } catch (error) {
      console.error("hubbub: a callback failed", error); // never fatal to the connection
    }
  }

  reconnectDelay(attempt) {
    return Math.random() * Math.min(this.maxReconnectDelay, this.minReconnectDelay * 2 ** Math.min(attempt, 32));
  }

  connect() {
    this.closing = false;
    if (this.state === "disconnected" || this.state === "failed") this.open();
    return this.whenConnected();
  }

  close() {
    this.closing = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    clearTimeout(this.upgradeTimer);
    if (this.socket) this.socket.close(1000);
    this.setState("closed");
  }

  whenConnected() {
    if (this.state === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => this.connectedWaiters.push({ resolve, reject }));
  }

  tokenValue() {
    return tokenFrom(this.token);
  }

  open() {
    this.setState("connecting");
    const socket = this.transport === "http-stream" ? new HttpStreamSocket(this.streamUrl) : new WebSocket(this.url, SUBPROTOCOL);
    this.socket = socket;
    socket.opened = false;
    socket.onopen = () => {
      socket.opened = true;
      this.handshake(socket);
    };
    socket.onmessage = (event) => {
      for (const line of String(event.data).split("\n")) {
        if (line.trim()) this.dispatch(JSON.parse(line));
      }
    };
    socket.onclose = (event) => this.closed(socket, event);
  }

  async handshake(socket) {
    try {
      const params = { name: this.name };
      const token = await this.tokenValue();
      if (token) params.token = token;
      if (this.data !== undefined) params.data = this.data;
      const subs = {}; // where server-side subscriptions left off: the server recovers from there
      for (const subscription of this.subscriptions.values()) {
        if (subscription.serverSide && subscription.offset !== null && subscription.epoch !== null) {
          subs[subscription.channel] = { offset: subscription.offset, epoch: subscription.epoch };
        }
      }
      if (Object.keys(subs).length) params.subs = subs;
      const result = await this.command("connect", params, {
        requireConnected: false, onResult: (r) => this.keepServerSide(r.subs || []),
      });
      this.clientId = result.client;
      for (const subscription of this.subscriptions.values()) {
        if (!subscription.serverSide) await this.sendSubscribe(subscription, false);
      }
      this.attempt = 0;
      this.setState("connected");
      if (this.transport === "http-stream") this.planUpgrade(socket);
      for (const waiter of this.connectedWaiters.splice(0)) waiter.resolve();
    } catch (error) {
      const renewable = error instanceof ReplyError && error.code === 109 && typeof this.token === "function";
      // A token function may throw an error with `permanent: true`: asking again will not help.
      if ((error instanceof ReplyError && !error.temporary && !renewable) || (error && error.permanent)) {
        this.fail(error); // a refused token will be refused again (an expired one is asked for anew)
      } else if (socket.readyState === OPEN) {
        socket.close(4000);
      }
    }
  }

  fail(error) {
    this.closing = true;
    if (this.socket) this.socket.close(1000);
    this.setState("failed", { reason: error.message });
    for (const waiter of this.connectedWaiters.splice(0)) waiter.reject(error);
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearTimeout(this.upgradeTimer);
    const switched = this.nextTransport(socket.opened);
    for (const entry of this.pending.values()) entry.reject(new Error("connection lost before the reply"));
    this.pending.clear();
    if (this.closing) return;
    if (!reconnectAllowed(event.code)) {
      this.fail(new Error(`server closed the connection with code ${event.code}: ${event.reason}`));
      return;
    }
    this.setState("disconnected", { code: event.code, reason: event.reason });
    const delay = switched ? 0 : this.reconnectDelay(this.attempt); // another transport: try it at once
    if (!switched) this.attempt += 1;
    this.retryTimer = setTimeout(() => this.retryNow(), delay);
    this.probe();
  }

  // After a connection that never opened: the next transport in `transports` (round again after
  // the last). True when it changed.
  nextTransport(opened) {
    if (opened || this.transports.length < 2 || this.upgrading) {
      this.upgrading = false;
      return false;
    }
    const index = this.transports.indexOf(this.transport);
    this.transport = this.transports[(index + 1) % this.transports.length];
    return index + 1 < this.transports.length; // back to the first one waits out the backoff
  }

  // While streaming: try a WebSocket every upgradeInterval; when one opens, reconnect over it
  // (the subscriptions recover from their offsets, so nothing is missed on the way).
  planUpgrade(stream) {
    if (!this.transports.includes("websocket") || !this.upgradeInterval) return;
    this.upgradeTimer = setTimeout(() => {
      if (this.socket !== stream || this.closing) return;
      const probe = new WebSocket(this.url, SUBPROTOCOL);
      probe.onopen = () => {
        probe.close(1000);
        if (this.socket !== stream || this.closing) return;
        this.transport = "websocket";
        this.upgrading = true; // the stream's close is ours: no transport change, no backoff
        this.attempt = 0;
        stream.close(4001, "upgrading to a WebSocket");
      };
      probe.onclose = () => {
        if (this.socket === stream && this.transport === "http-stream") this.planUpgrade(stream);
      };
    }, this.upgradeInterval);
  }

  // Reconnect now (the backoff timer ran out, the browser came online, or /health answered).
  retryNow() {
    if (this.closing || this.state !== "disconnected") return;
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    this.probeTimer = null;
    this.open();
  }

  // While waiting out the backoff, ask /health now and then: when the server is back, go at once
  // instead of sleeping out a delay that grew while it was away. Jittered, so a crowd spreads out.
  probe() {
    if (!this.healthUrl || !this.probeInterval || this.probeTimer) return;
    const tick = async () => {
      this.probeTimer = null;
      if (this.closing || this.state !== "disconnected") return;
      if (typeof document === "undefined" || document.visibilityState === "visible") {
        try {
          const response = await fetch(this.healthUrl, { cache: "no-store" });
          if (response.ok) {
            this.retryNow();
            return;
          }
        } catch (error) {
          // still away: keep probing
        }
      }
      this.probeTimer = setTimeout(tick, this.probeInterval * (0.5 + Math.random() / 2));
    };
    this.probeTimer = setTimeout(tick, this.probeInterval * (0.5 + Math.random() / 2));
  }

  dispatch(message) {
    if (message.id !== undefined) {
      const entry = this.pending.get(message.id);
      if (!entry) return;
      this.pending.delete(message.id);
      if (message.error) {
        entry.reject(new ReplyError(message.error));
        return;
      }
      const method = Object.keys(message).find((key) => key !== "id");
      const result = message[method] || {};
      if (entry.onResult) entry.onResult(result); // in order with the pushes that follow
      entry.resolve(result);
      return;
    }
    const push = message.push;
    if (!push) return;
    const subscription = push.channel !== undefined ? this.subscriptions.get(push.channel) : undefined;
    if (push.pub && subscription) {
      subscription.deliver(push.pub);
    } else if (push.join && subscription && subscription.options.onJoin) {
      this.callSafely(subscription.options.onJoin, push.join.info);
    } else if (push.leave && subscription && subscription.options.onLeave) {
      this.callSafely(subscription.options.onLeave, push.leave.info);
    } else if (push.message) {
      this.dispatchEvent(new CustomEvent("message", { detail: push.message }));
    } else if (push.read) {
      this.dispatchEvent(new CustomEvent("read", { detail: { channel: push.channel, ...push.read } }));
    } else if (push.sub_refresh && subscription) {
      this.subRefresh(subscription);
    } else if (push.subscribe && push.channel !== undefined) {
      this.serverSubscribed(push.channel, push.subscribe);
    } else if (push.unsubscribe && subscription) {
      this.serverUnsubscribed(subscription, push.unsubscribe);
    } else if (push.refresh) {
      this.refresh();
    } else if (push.disconnect) {
      this.dispatchEvent(new CustomEvent("disconnect", { detail: push.disconnect }));
    }
  }

  async refresh() {
    if (typeof this.token !== "function") return;
    try {
      await this.command("refresh", { token: await this.tokenValue() });
    } catch (error) {
      console.warn("hubbub: token refresh failed", error);
    }
  }

  async subRefresh(subscription) {
    if (typeof subscription.options.token !== "function") return;
    try {
      await this.command("sub_refresh", { channel: subscription.channel, token: await subscription.tokenValue() });
    } catch (error) {
      console.warn("hubbub: subscription token refresh failed", error);
    }
  }

  // Server-side subscriptions the server no longer makes end at connect; each one it makes is
  // announced by a subscribe push.
  keepServerSide(channels) {
    for (const [channel, subscription] of this.subscriptions) {
      if (subscription.serverSide && !channels.includes(channel)) this.subscriptions.delete(channel);
    }
  }

  serverSubscribed(channel, result) {
    let subscription = this.subscriptions.get(channel);
    if (!subscription) {
      subscription = new Subscription(this, channel, {});
      subscription.serverSide = true;
      this.subscriptions.set(channel, subscription);
      this.dispatchEvent(new CustomEvent("subscribed", { detail: subscription }));
    }
    subscription.applyResult(result);
  }

  // The server ended a subscription. An expired token with a token function subscribes again
  // (recovering what came meanwhile); otherwise it ends and onUnsubscribed says why.
  serverUnsubscribed(subscription, notice) {
    if (notice.code === 109 && typeof subscription.options.token === "function") {
      this.sendSubscribe(subscription, true).catch((error) => console.warn("hubbub: resubscribe failed", error));
      return;
    }
    subscription.unsubscribed = notice;
    if (this.subscriptions.get(subscription.channel) === subscription) this.subscriptions.delete(subscription.channel);
    if (subscription.options.onUnsubscribed) this.callSafely(subscription.options.onUnsubscribed, notice);
  }

  async command(method, params, { requireConnected = true, onResult = null } = {}) {
    if (requireConnected && this.state !== "connected") {
      if (this.state === "closed" || this.state === "failed") throw new Error(`client is ${this.state}`);
      await this.whenConnected();
    }
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) throw new Error("not connected");
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no reply within ${this.commandTimeout} ms`));
      }, this.commandTimeout);
      const done = (callback) => (value) => {
        clearTimeout(timer);
        callback(value);
      };
      this.pending.set(id, { resolve: done(resolve), reject: done(reject), onResult });
      socket.send(JSON.stringify({ id, [method]: params }));
    });
  }

  // options: { since: {offset, epoch}, token, onPublication, onJoin, onLeave, onUnrecovered, onUnsubscribed }
  async subscribe(channel, options = {}) {
    if (this.subscriptions.has(channel)) return this.subscriptions.get(channel);
    const subscription = new Subscription(this, channel, options);
    this.subscriptions.set(channel, subscription);
    try {
      await this.sendSubscribe(subscription, true);
    } catch (error) {
      this.subscriptions.delete(channel);
      throw error;
    }
    return subscription;
  }

  async sendSubscribe(subscription, requireConnected) {
    const params = { channel: subscription.channel };
    const token = await subscription.tokenValue();
    if (token) params.token = token;
    if (subscription.offset !== null && subscription.epoch !== null) {
      params.since = { offset: subscription.offset, epoch: subscription.epoch };
    }
    return this.command("subscribe", params, { requireConnected, onResult: (r) => subscription.applyResult(r) });
  }

  async unsubscribe(channel) {
    if (!this.subscriptions.delete(channel)) return;
    if (this.state === "connected") await this.command("unsubscribe", { channel });
  }

  publish(channel, data) {
    return this.command("publish", { channel, data });
  }

  // options: { limit, since: {offset, epoch}, reverse }
  history(channel, options = {}) {
    return this.command("history", { channel, ...options });
  }

  presence(channel) {
    return this.command("presence", { channel });
  }

  send(user, data) {
    return this.command("send", { user, data });
  }

  ping() {
    return this.command("ping", {});
  }

  // A call the application answers (its rpc hook); resolves to the data it answered.
  async rpc(method, data = null) {
    return (await this.command("rpc", { method, data })).data;
  }

  // Read positions live on the server: the same unread counts on every tab and device.
  async markRead(channel, offset) {
    return (await this.command("mark_read", { channel, offset })).offset;
  }

  async readPositions(channels) {
    return (await this.command("read_positions", { channels })).channels;
  }
}
