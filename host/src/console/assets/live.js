// The live feed: the signed-in user's events over /ws (the console's cookie authenticates a
// page of the same origin). The last cursor shown is kept in memory; a reconnect asks for
// `?cursor=` so the server replays what came after it: nothing missed, nothing twice.
import { api, el, when } from "./console.js";

const stateLine = document.getElementById("connection");
const cursorLine = document.getElementById("cursor");
const list = document.getElementById("events");
const empty = document.getElementById("empty");
const toggle = document.getElementById("toggle");
const RETRY_MS = 3000;
const MAX_SHOWN = 500;

let socket = null;
let cursor = null;
let wanted = true;
let retry = null;

function setState(state, text) {
  stateLine.dataset.state = state;
  stateLine.textContent = text;
  document.body.dataset.live = state;
}

function setCursor(value) {
  cursor = value;
  cursorLine.textContent = String(value);
  document.body.dataset.cursor = String(value);
}

/** One event as text: its kind, time and what it says. */
function describe(event) {
  const parts = [];
  const message = event.message && typeof event.message === "object" ? event.message : null;
  if (message?.id) parts.push(`message ${message.id}`);
  else if (event.message_id) parts.push(`message ${event.message_id}`);
  if (message?.sender_id) parts.push(`from ${message.sender_id}`);
  if (event.status) parts.push(`now ${event.status}`);
  if (event.error) parts.push(`error: ${event.error}`);
  if (event.reader_id) parts.push(`read by ${event.reader_id}`);
  const item = el(
    "li",
    { "data-cursor": event.cursor, "data-kind": event.type ?? "event", "data-message": message?.id ?? event.message_id },
    el("span", { class: "kind" }, event.type ?? "event"),
    el("time", { datetime: new Date(event.at_ms ?? Date.now()).toISOString() }, when(event.at_ms ?? Date.now())),
    el("span", { class: "muted" }, ` · cursor ${event.cursor}`),
    parts.length ? el("p", {}, parts.join(" · ")) : null,
  );
  if (message && typeof message.content === "string") {
    const encoded = message.content_encoding === "base64";
    item.append(el("pre", {}, encoded ? `(${message.content.length} base64 characters)` : message.content));
  }
  return item;
}

function show(event) {
  if (cursor !== null && event.cursor <= cursor) return;
  empty.hidden = true;
  list.prepend(describe(event));
  while (list.children.length > MAX_SHOWN) list.lastElementChild.remove();
  setCursor(event.cursor);
}

function connect() {
  clearTimeout(retry);
  wanted = true;
  toggle.textContent = "Disconnect";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const from = cursor;
  const query = from === null ? "" : `?cursor=${encodeURIComponent(from)}`;
  setState("connecting", from === null ? "connecting…" : `reconnecting after cursor ${from}…`);
  const ws = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  socket = ws;
  ws.addEventListener("message", (frame) => {
    let data;
    try {
      data = JSON.parse(frame.data);
    } catch {
      return;
    }
    switch (data.type) {
      case "ready":
        if (cursor === null) setCursor(data.cursor);
        setState("open", from === null ? "connected" : `connected, resuming after cursor ${from}`);
        break;
      case "resumed":
        setState("open", `connected, resumed after cursor ${from} (now at ${data.cursor})`);
        break;
      case "resync_required":
        setCursor(data.cursor);
        setState("open", `connected; some events were missed: ${data.detail}`);
        break;
      case "error":
        setState(stateLine.dataset.state, `${stateLine.textContent} (the server said: ${data.detail})`);
        break;
      case "pong":
      case "acked":
      case "authenticated":
        break;
      default:
        if (typeof data.cursor === "number") show(data);
    }
  });
  ws.addEventListener("close", async (closing) => {
    if (socket !== ws) return;
    socket = null;
    if (!wanted) {
      setState("closed", "disconnected");
      return;
    }
    const why = closing.reason ? `: ${closing.reason}` : "";
    setState("closed", `connection lost (${closing.code}${why}); reconnecting in a few seconds`);
    // The access token in the cookie may have expired: one API call refreshes it.
    await api("GET", "/auth/sessions").catch(() => null);
    if (wanted && !socket) retry = setTimeout(connect, RETRY_MS);
  });
}

toggle.addEventListener("click", () => {
  if (wanted) {
    wanted = false;
    clearTimeout(retry);
    toggle.textContent = "Reconnect";
    if (socket) socket.close(1000, "disconnected by the user");
    else setState("closed", "disconnected");
  } else {
    connect();
  }
});

document.getElementById("clear").addEventListener("click", () => {
  list.replaceChildren();
  empty.hidden = false;
});

connect();
