// An application around centrifuge-js (npm `centrifuge`, unchanged), the same in Node.js
// (centrifuge_client.mjs) and in chromium (tests/centrifugo/test_sdks.py loads the package's
// browser bundle, then this file). The Python tests drive it with commands ({op, ...}) and read
// what it emits ({event, ...}); it is what an app would write: tokens from its backend (here a
// list handed over up front, one per getToken call, the last one reused), JSON data encoded to
// bytes for the Protobuf client, every SDK event reported.
globalThis.startCentrifugeApp = function startCentrifugeApp(Centrifuge, options, emit) {
  const protobuf = Boolean(options.protobuf);
  const encode = (value) => (protobuf ? new TextEncoder().encode(JSON.stringify(value)) : value);
  const decode = (data) => (protobuf ? JSON.parse(new TextDecoder().decode(data)) : data);
  const handOut = (queue) => (queue.length > 1 ? queue.shift() : queue[0]);

  const config = { minReconnectDelay: 50, maxReconnectDelay: 300, timeout: 5000 };
  if (options.websocket) config.websocket = options.websocket;
  const tokens = (options.tokens || []).slice();
  if (tokens.length) {
    config.getToken = async () => {
      emit({ event: "token", kind: "connection" });
      return handOut(tokens);
    };
  }
  const client = new Centrifuge(options.url, config);
  client.on("connecting", (ctx) => emit({ event: "connecting", code: ctx.code, reason: ctx.reason }));
  client.on("connected", (ctx) => emit({ event: "connected", client: ctx.client }));
  client.on("disconnected", (ctx) => emit({ event: "disconnected", code: ctx.code, reason: ctx.reason }));
  client.on("error", (ctx) => emit({ event: "error", type: ctx.type, code: ctx.error ? ctx.error.code : null }));

  const subs = {};
  const publication = (channel, ctx, event = "publication") => ({
    event,
    channel,
    data: decode(ctx.data),
    offset: ctx.offset,
    user: ctx.info ? ctx.info.user : null,
  });
  // Server-side subscriptions (a token's `channels`, the server API) surface on the client.
  client.on("subscribed", (ctx) => emit({ event: "server_subscribed", channel: ctx.channel, recovered: ctx.recovered }));
  client.on("unsubscribed", (ctx) => emit({ event: "server_unsubscribed", channel: ctx.channel }));
  client.on("publication", (ctx) => emit(publication(ctx.channel, ctx, "server_publication")));
  client.on("message", (ctx) => emit({ event: "message", data: decode(ctx.data) }));

  function subscribe(command) {
    const channel = command.channel;
    const subscription = {};
    const subTokens = (command.tokens || []).slice();
    if (subTokens.length) {
      subscription.getToken = async () => {
        emit({ event: "token", kind: "subscription", channel });
        return handOut(subTokens);
      };
    }
    const sub = client.newSubscription(channel, subscription);
    sub.on("subscribing", (ctx) => emit({ event: "subscribing", channel, code: ctx.code }));
    sub.on("subscribed", (ctx) =>
      emit({
        event: "subscribed",
        channel,
        recoverable: ctx.recoverable,
        recovered: ctx.recovered,
        was_recovering: ctx.wasRecovering,
        position: ctx.streamPosition || null,
      }),
    );
    sub.on("unsubscribed", (ctx) => emit({ event: "unsubscribed", channel, code: ctx.code, reason: ctx.reason }));
    sub.on("error", (ctx) => emit({ event: "sub_error", channel, type: ctx.type, code: ctx.error.code }));
    sub.on("publication", (ctx) => emit(publication(channel, ctx)));
    sub.on("join", (ctx) => emit({ event: "join", channel, user: ctx.info.user, client: ctx.info.client }));
    sub.on("leave", (ctx) => emit({ event: "leave", channel, user: ctx.info.user, client: ctx.info.client }));
    subs[channel] = sub;
    sub.subscribe();
  }

  const calls = {
    publish: async (c) => (await client.publish(c.channel, encode(c.data)), {}),
    history: async (c) => {
      const result = await client.history(c.channel, { limit: c.limit, reverse: Boolean(c.reverse) });
      return {
        publications: result.publications.map((p) => ({ data: decode(p.data), offset: p.offset })),
        offset: result.offset,
        epoch: result.epoch,
      };
    },
    presence: async (c) => {
      const result = await client.presence(c.channel);
      const clients = {};
      for (const [id, info] of Object.entries(result.clients)) clients[id] = { user: info.user, client: info.client };
      return { clients };
    },
    presence_stats: async (c) => {
      const result = await client.presenceStats(c.channel);
      return { num_clients: result.numClients, num_users: result.numUsers };
    },
    rpc: async (c) => ({ data: decode((await client.rpc(c.method, encode(c.data))).data) }),
  };

  function run(command) {
    if (command.op === "connect") client.connect();
    else if (command.op === "disconnect") client.disconnect();
    else if (command.op === "subscribe") subscribe(command);
    else if (command.op === "unsubscribe") subs[command.channel].unsubscribe();
    else if (calls[command.op]) {
      calls[command.op](command).then(
        (result) => emit({ event: "result", id: command.id, result }),
        (error) => emit({ event: "result", id: command.id, error: { code: error.code, message: error.message } }),
      );
    } else emit({ event: "unknown_op", op: command.op });
  }
  return { run };
};
