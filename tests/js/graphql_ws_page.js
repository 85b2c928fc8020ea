// graphql-ws's browser bundle (umd/graphql-ws.min.js, global `graphqlWs`), unchanged, in a page:
// the same app code as graphql_ws_client.mjs (the latest `extensions.hubbub` position is kept in
// each subscription's payload, so the client's own resubscribe resumes), events in window.events.
window.events = [];
window.startApp = function startApp(url, token) {
  const emit = (event) => window.events.push(event);
  const client = graphqlWs.createClient({
    url,
    lazy: false,
    connectionParams: () => (token ? { token } : {}),
    retryAttempts: 30,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 100)),
    shouldRetry: () => true,
    on: {
      opened: (opened) => { socket = opened; },
      connected: (_socket, payload) => emit({ event: "connected", payload }),
      closed: (event) => emit({ event: "closed", code: event.code, reason: event.reason }),
      pong: (received, payload) => { if (received) emit({ event: "pong", payload }); },
    },
  });
  let socket = null;
  window.app = {
    refresh(newToken) {  // in-band: a ping carrying the new token (docs/graphql.md#refresh-and-expiry)
      socket.send(JSON.stringify({ type: "ping", payload: { token: newToken } }));
    },
    subscribe(id, query, variables) {
      const payload = { query, variables: variables || {} };
      client.subscribe(payload, {
        next: (value) => {
          const position = value.extensions && value.extensions.hubbub;
          if (position) payload.extensions = { hubbub: { offset: position.offset, epoch: position.epoch } };
          emit({ id, next: value });
        },
        error: (error) => emit({ id, error: Array.isArray(error) ? { errors: error } : { code: error.code } }),
        complete: () => emit({ id, complete: true }),
      });
    },
  };
};
