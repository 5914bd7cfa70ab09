// A socket.io-client 4 for the end-to-end tests: node sio-client.mjs URL AUTH_JSON.
// Every event received is printed as a JSON line {"event": name, "data": ...}; each JSON line
// read from stdin, {"emit": name, "data": ...}, is emitted. Closing stdin disconnects.
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const [url, auth] = process.argv.slice(2);
const print = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");

const socket = io(url, { auth: JSON.parse(auth), transports: ["websocket"], reconnection: false });
socket.onAny((event, data) => print(event, data));
socket.on("connect", () => print("connect", null));
socket.on("connect_error", (error) => print("connect_error", { message: error.message }));
socket.on("disconnect", (reason) => print("disconnect", { reason }));

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const { emit, data } = JSON.parse(line);
  socket.emit(emit, data);
});
lines.on("close", () => {
  socket.disconnect();
  setTimeout(() => process.exit(0), 50);
});
