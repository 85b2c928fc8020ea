// graphql-ws (npm, unchanged) in Node.js, running the app in graphql_ws_app.js, driven by the
// Python tests over stdin/stdout: argv is the URL and an optional token, each stdin line a JSON
// command, each stdout line a JSON event.
import readline from "node:readline";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import "./graphql_ws_app.js";

const [url, token] = process.argv.slice(2);
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const app = globalThis.startGraphqlApp(createClient, { url, token, webSocketImpl: WebSocket }, emit);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.op === "subscribe") app.subscribe(command.id, command.query, command.variables, command.extensions);
  else if (command.op === "refresh") app.refresh(command.token);
  else if (command.op === "exit") app.dispose().then(() => process.exit(0));
});
