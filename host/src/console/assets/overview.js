// The overview: fetches /console/overview.json every few seconds and redraws the figures and
// the charts (inline SVG built with createElementNS; colours and lines come from classes).
import { api, when } from "./console.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 160;
const PAD = { left: 44, right: 8, top: 12, bottom: 20 };
const EVERY_MS = 5000;

const LABELS = {
  submitted: "submitted",
  delivered: "delivered",
  failed: "failed attempts",
  lateness_p50_ms: "lateness p50 (ms)",
  lateness_p99_ms: "lateness p99 (ms)",
  queue_depth: "queue depth",
  dead_letters: "dead letters",
};

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/** A short number for an axis: 1200 → 1.2k. */
function short(value) {
  if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return String(value);
}

/** Draws `series` (keys of a minute) of `minutes` into `box`; gaps where a value is null. */
function draw(box, minutes, series) {
  const values = series.flatMap((key) => minutes.map((minute) => minute[key])).filter((value) => value !== null && value !== undefined);
  const top = Math.max(1, ...values);
  const x = (index) => PAD.left + (index * (WIDTH - PAD.left - PAD.right)) / Math.max(1, minutes.length - 1);
  const y = (value) => PAD.top + (HEIGHT - PAD.top - PAD.bottom) * (1 - value / top);
  const latest = series
    .map((key) => {
      const last = [...minutes].reverse().find((minute) => minute[key] !== null && minute[key] !== undefined);
      return `${LABELS[key]} ${last ? last[key] : "not known yet"}`;
    })
    .join(", ");
  const title = `${box.closest("section")?.querySelector("h2")?.textContent ?? ""}, last 60 minutes; the latest minute: ${latest}; the highest: ${short(values.length ? Math.max(...values) : 0)}.`;
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "plot-svg", "aria-label": title });
  chart.append(
    svg("line", { class: "axis", x1: PAD.left, y1: y(0), x2: WIDTH - PAD.right, y2: y(0) }),
    svg("line", { class: "grid", x1: PAD.left, y1: y(top), x2: WIDTH - PAD.right, y2: y(top) }),
    svg("text", { class: "tick", x: PAD.left - 6, y: y(top) + 4, "text-anchor": "end" }, short(top)),
    svg("text", { class: "tick", x: PAD.left - 6, y: y(0) + 4, "text-anchor": "end" }, "0"),
    svg("text", { class: "tick", x: PAD.left, y: HEIGHT - 4 }, "−60 min"),
    svg("text", { class: "tick", x: WIDTH - PAD.right, y: HEIGHT - 4, "text-anchor": "end" }, "now"),
  );
  series.forEach((key, index) => {
    let points = [];
    const flush = () => {
      if (points.length === 1) {
        const [px, py] = points[0].split(",");
        chart.append(svg("circle", { class: `dot s${index + 1}`, cx: px, cy: py, r: 2.5 }));
      } else if (points.length > 1) {
        chart.append(svg("polyline", { class: `line s${index + 1}`, points: points.join(" ") }));
      }
      points = [];
    };
    minutes.forEach((minute, at) => {
      const value = minute[key];
      if (value === null || value === undefined) flush();
      else points.push(`${x(at).toFixed(1)},${y(value).toFixed(1)}`);
    });
    flush();
  });
  box.replaceChildren(chart);
}

function figure(value) {
  return value === null || value === undefined ? "—" : String(value);
}

function show(data) {
  const set = (id, text) => {
    const node = document.getElementById(id);
    if (node && node.textContent !== text) node.textContent = text;
  };
  set("total-submitted", String(data.submitted));
  set("total-delivered", String(data.delivered));
  set("total-failed", String(data.failed));
  set("now-depth", figure(data.queue_depth));
  set("now-dead", figure(data.dead_letters));
  set("deployment-nodes", figure(data.deployment.nodes_online));
  set("read-at", when(data.at_ms));
  for (const box of document.querySelectorAll(".plot[data-series]")) {
    draw(box, data.minutes, box.dataset.series.split(" "));
  }
  document.body.dataset.overviewAt = String(data.at_ms);
}

const state = document.getElementById("overview-state");
let failing = false;

async function refresh() {
  try {
    const data = await api("GET", "/console/overview.json");
    if (typeof data !== "object" || data === null || !Array.isArray(data.minutes)) throw new Error("the server did not answer with the overview");
    show(data);
    if (failing) state.textContent = "Updating again.";
    failing = false;
  } catch (problem) {
    failing = true;
    state.textContent = `Could not update: ${problem.message}. Trying again in a few seconds.`;
  } finally {
    setTimeout(refresh, EVERY_MS);
  }
}

refresh();
