// centrifuge-js (npm `centrifuge`, unchanged) in Node.js, JSON or Protobuf build, running the
// app in centrifuge_app.js: argv[2] is its options as JSON, each stdin line a command, each
// stdout line an event.
import readline from "node:readline";
import WebSocket from "ws";
import "./centrifuge_app.js";

const options = JSON.parse(process.argv[2]);
const { Centrifuge } = await import(options.protobuf ? "centrifuge/build/protobuf" : "centrifuge");
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const app = globalThis.startCentrifugeApp(Centrifuge, { ...options, websocket: WebSocket }, emit);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.op === "exit") process.exit(0);
  app.run(command);
});
emit({ event: "ready" });
