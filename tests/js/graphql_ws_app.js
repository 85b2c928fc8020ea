// An application around graphql-ws (npm, unchanged), the same in Node.js (graphql_ws_client.mjs)
// and in chromium (tests/graphql/test_browser_client.py loads the package's UMD bundle, then this
// file). It is what an app would write: it keeps the latest `extensions.hubbub` position of each
// subscription in the payload it subscribed with, so the client's own resubscribe after a
// reconnect resumes where it stood (docs/graphql.md#recovery). Events go to `emit`.
globalThis.startGraphqlApp = function startGraphqlApp(createClient, options, emit) {
  let socket = null;
  const config = {
    url: options.url,
    lazy: false,
    connectionParams: () => (options.token ? { token: options.token } : {}),
    retryAttempts: 30,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 100)),
    shouldRetry: () => true,
    on: {
      opened: (opened) => { socket = opened; },
      connected: (_socket, payload) => emit({ event: "connected", payload }),
      closed: (event) => emit({ event: "closed", code: event.code, reason: event.reason }),
      pong: (received, payload) => { if (received) emit({ event: "pong", payload }); },
    },
  };
  if (options.webSocketImpl) config.webSocketImpl = options.webSocketImpl;
  const client = createClient(config);

  function describe(error) {
    if (Array.isArray(error)) return { errors: error };
    if (error && typeof error.code === "number") return { code: error.code, reason: error.reason };
    return { message: String(error && error.message ? error.message : error) };
  }

  return {
    refresh(token) {  // in-band: a ping carrying the new token (docs/graphql.md#refresh-and-expiry)
      socket.send(JSON.stringify({ type: "ping", payload: { token } }));
    },
    subscribe(id, query, variables, extensions) {
      const payload = { query, variables: variables || {} };
      if (extensions) payload.extensions = extensions;
      client.subscribe(payload, {
        next: (value) => {
          const position = value.extensions && value.extensions.hubbub;
          if (position) payload.extensions = { hubbub: { offset: position.offset, epoch: position.epoch } };
          emit({ id, next: value });
        },
        error: (error) => emit({ id, error: describe(error) }),
        complete: () => emit({ id, complete: true }),
      });
    },
    dispose: () => client.dispose(),
  };
};
