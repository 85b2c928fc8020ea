// A graphql-ws (npm) client in Node.js, unchanged, driven by the Python tests over stdin/stdout:
// each stdin line is a JSON command, each stdout line a JSON event. The app code around the
// client is what an application would write: it keeps the latest `extensions.hubbub` position
// of each subscription in the payload it subscribed with, so the client's own resubscribe after
// a reconnect resumes where it stood (docs/graphql.md#recovery).
import readline from "node:readline";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, token] = process.argv.slice(2);
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
let socket = null;

const client = createClient({
  url,
  webSocketImpl: WebSocket,
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

function describe(error) {
  if (Array.isArray(error)) return { errors: error };
  if (error && typeof error.code === "number") return { code: error.code, reason: error.reason };
  return { message: String(error && error.message ? error.message : error) };
}

function run(command) {
  const payload = { query: command.query, variables: command.variables || {} };
  if (command.extensions) payload.extensions = command.extensions;
  client.subscribe(payload, {
    next: (value) => {
      const position = value.extensions && value.extensions.hubbub;
      if (position) payload.extensions = { hubbub: { offset: position.offset, epoch: position.epoch } };
      emit({ id: command.id, next: value });
    },
    error: (error) => emit({ id: command.id, error: describe(error) }),
    complete: () => emit({ id: command.id, complete: true }),
  });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.op === "subscribe") run(command);
  else if (command.op === "refresh") socket.send(JSON.stringify({ type: "ping", payload: { token: command.token } }));
  else if (command.op === "exit") client.dispose().then(() => process.exit(0));
});
