// A message's page: follows the message without reloading until its status is final,
// updating its status, its times and its history (built as text with `el`, never as HTML).

import { api, el, when } from "./console.js";

const FINAL = new Set(["delivered", "read", "dead", "cancelled"]);
const PENDING = new Set(["scheduled", "retrying"]);
const EVERY_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

function showStatus(status) {
  const badge = document.getElementById("message-status");
  badge.className = `badge ${status.status}`;
  badge.textContent = status.status;
  const due = document.getElementById("message-due");
  if (due) due.replaceChildren(el("time", { datetime: status.deliver_at }, when(status.deliver_at)));
  setText("message-attempts", String(status.attempts));
  setText("message-last-error", status.last_error || "none");
  setText("message-delivered", status.delivered_at ? when(status.delivered_at) : "not yet");
  setText("message-read", status.read_at ? when(status.read_at) : "not yet");
  const actions = document.getElementById("actions");
  if (actions) actions.hidden = !PENDING.has(status.status);
}

function eventItem(event) {
  const change = event.from || event.to ? `${event.from ?? ""} → ${event.to ?? ""}`.trim() : "";
  return el(
    "li",
    {},
    el("time", { datetime: event.at }, when(event.at)),
    " ",
    el("span", { class: "badge" }, event.type),
    change ? [" ", el("span", { class: "change" }, change)] : null,
    event.attempt !== undefined ? [" ", el("span", {}, `attempt ${event.attempt}`)] : null,
    el("div", { class: "result" }, event.result),
    event.plugin
      ? el("div", { class: "plugin" }, "plugin ", el("strong", {}, event.plugin.name), " ", el("code", { title: event.plugin.digest }, event.plugin.digest))
      : null,
    event.duration_ms !== undefined ? el("div", { class: "muted" }, `took ${event.duration_ms} ms`) : null,
  );
}

function showHistory(events) {
  const list = document.getElementById("timeline");
  if (!list || list.children.length === events.length) return;
  list.replaceChildren(...events.map(eventItem));
}

async function follow(root) {
  const path = `/messages/${encodeURIComponent(root.dataset.messageId)}`;
  const note = document.getElementById("live-note");
  let failures = 0;
  for (;;) {
    await sleep(EVERY_MS * Math.min(1 + failures, 10));
    try {
      const status = await api("GET", `${path}/status`);
      // The history read after the status holds every step up to it: shown first, so the
      // status never announces what the timeline does not show yet.
      if (root.dataset.history === "true") showHistory((await api("GET", `${path}/events`)).items);
      showStatus(status);
      failures = 0;
      if (FINAL.has(status.status)) {
        root.dataset.final = "true";
        note.textContent = `Now ${status.status}.`;
        return;
      }
    } catch (problem) {
      failures += 1;
      note.textContent = `Could not follow the message: ${problem.message}`;
      if (problem.status === 404) return;
    }
  }
}

const root = document.getElementById("message");
if (root && root.dataset.final !== "true") follow(root);
