// The hooks page's dry run: sends the form to `POST /hooks/dry-run`, shows every decision
// (plugin, digest, result, duration) and draws the retry schedule as an SVG timeline. The
// form's state is kept in the query string, so a dry run is a link to share.
import { api, el, clearProblems, showProblem, when } from "./console.js";

const form = document.getElementById("dry-run");
const result = document.getElementById("dry-run-result");
const output = document.getElementById("dry-run-output");
const SVG = "http://www.w3.org/2000/svg";

/** The form's controls whose values make up its state in the query string. */
const STATE = ["source", "recipient_id", "content", "delay_seconds", "channel", "message_id", "which", "hooks", "attempts", "error"];

function value(name) {
  const control = form.elements[name];
  return control instanceof RadioNodeList ? control.value : control?.value ?? "";
}

/** Shows the parts of the form the radios choose. */
function showChosen() {
  for (const part of form.querySelectorAll("[data-source]")) part.hidden = part.dataset.source !== value("source");
  for (const part of form.querySelectorAll("[data-which]")) part.hidden = part.dataset.which !== value("which");
}

/** The dry run's body; a Problem naming the control when the form cannot make one. */
function body() {
  const request = {};
  if (value("source") === "stored") {
    const id = value("message_id").trim();
    if (!id) throw Object.assign(new Error("choose a message, or write one"), { field: "/message_id" });
    request.message_id = id;
  } else {
    const message = { recipient_id: value("recipient_id"), content: value("content"), channel: value("channel") };
    const delay = value("delay_seconds");
    if (delay !== "") message.delay_seconds = Number(delay);
    request.message = message;
  }
  if (value("which") === "proposed") {
    try {
      request.hooks = JSON.parse(value("hooks"));
    } catch (error) {
      throw Object.assign(new Error(`the proposed bindings are not valid JSON: ${error.message}`), { field: "/hooks" });
    }
  }
  if (value("attempts") !== "") request.attempts = Number(value("attempts"));
  if (value("error") !== "") request.error = value("error");
  return request;
}

/** The control a problem's field names: `/message/content` is the `content` control. */
function toControl(problem) {
  if (problem?.field) problem.field = problem.field.replace(/^\/message\//, "/");
  return problem;
}

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A duration for people: `90 s`, `12 min`, `3.5 h`, `2.0 d`. */
function span(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

/** The retry schedule on a timeline: the first delivery, each failure, each planned retry. */
function timeline(start, retries) {
  const width = 800;
  const height = 120;
  const left = 30;
  const right = width - 30;
  const points = [start, ...retries.map((step) => Date.parse(step.failed_at)), ...retries.filter((step) => step.retry_at).map((step) => Date.parse(step.retry_at))];
  const first = Math.min(...points);
  const last = Math.max(...points);
  const x = (t) => (last === first ? left : left + ((t - first) / (last - first)) * (right - left));
  const chart = svg("svg", { class: "schedule", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "schedule-title" });
  chart.append(svg("title", { id: "schedule-title" }, `Retry schedule: ${retries.length} simulated failures over ${span(last - first)}`));
  chart.append(svg("line", { class: "axis", x1: left, y1: 70, x2: right, y2: 70 }));
  chart.append(svg("circle", { class: "planned", cx: x(start), cy: 70, r: 7 }));
  chart.append(svg("text", { class: "label", x: x(start), y: 100, "text-anchor": "start" }, "first delivery"));
  for (const step of retries) {
    const failed = x(Date.parse(step.failed_at));
    if (step.retry_at) {
      const retry = x(Date.parse(step.retry_at));
      chart.append(svg("path", { class: "wait", d: `M ${failed} 66 Q ${(failed + retry) / 2} ${30} ${retry} 66` }));
      chart.append(svg("circle", { class: "retry", cx: retry, cy: 70, r: 5 }));
      chart.append(svg("text", { class: "label", x: retry, y: 24, "text-anchor": "middle" }, String(step.attempt + 1)));
    } else {
      chart.append(svg("path", { class: "give-up", d: `M ${failed - 7} 63 L ${failed + 7} 77 M ${failed - 7} 77 L ${failed + 7} 63` }));
    }
  }
  chart.append(svg("text", { class: "label", x: right, y: 100, "text-anchor": "end" }, `+${span(last - first)}`));
  return chart;
}

function rejection(rejected) {
  return el("p", { class: "problem", "data-rejection": rejected.code }, `Refused by ${rejected.plugin} (${rejected.code}): ${rejected.reason}`);
}

function show(run) {
  const parts = [];
  if (run.validation.accepted) parts.push(el("p", { class: "status", "data-verdict": "accepted" }, "Accepted by every validator."));
  else parts.push(el("p", { "data-verdict": "rejected" }, "Rejected."), rejection(run.validation.rejection));
  if (run.delivery?.deliver_at) parts.push(el("p", {}, "First delivery planned for ", el("time", { datetime: run.delivery.deliver_at }, when(run.delivery.deliver_at)), "."));
  if (run.delivery?.rejection) parts.push(rejection(run.delivery.rejection));
  parts.push(
    el("h3", {}, "Every decision"),
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { id: "decisions" },
        el("caption", { class: "skip" }, "Decisions"),
        el("thead", {}, el("tr", {}, ["Step", "Plugin", "Digest", "Attempt", "Result", "Duration"].map((name) => el("th", { scope: "col" }, name)))),
        el(
          "tbody",
          {},
          run.events.map((event) =>
            el(
              "tr",
              {},
              el("td", { class: "nowrap" }, event.type),
              el("td", {}, event.plugin?.name ?? "host"),
              el("td", {}, event.plugin ? el("code", {}, event.plugin.digest) : ""),
              el("td", {}, event.attempt ?? ""),
              el("td", {}, event.result),
              el("td", { class: "num" }, event.duration_ms === undefined ? "" : `${event.duration_ms} ms`),
            ),
          ),
        ),
      ),
    ),
  );
  if (run.delivery?.deliver_at_ms !== undefined && run.retries.length) {
    parts.push(el("h3", {}, "Retry schedule"), el("div", { class: "schedule-wrap" }, timeline(run.delivery.deliver_at_ms, run.retries)));
    parts.push(
      el(
        "ol",
        { class: "retries", id: "retries" },
        run.retries.map((step) =>
          el(
            "li",
            {},
            `Attempt ${step.attempt} fails at ${when(step.failed_at)}: `,
            step.retry_at ? `retry at ${when(step.retry_at)} (after ${span(step.wait_ms)})` : `gives up: ${step.give_up}`,
          ),
        ),
      ),
    );
  }
  output.replaceChildren(...parts);
  result.hidden = false;
}

async function run({ remember = true } = {}) {
  clearProblems(form);
  output.replaceChildren();
  result.hidden = true;
  let request;
  try {
    request = body();
  } catch (problem) {
    showProblem(form, problem);
    return;
  }
  if (remember) {
    const query = new URLSearchParams();
    for (const name of STATE) if (value(name) !== "") query.set(name, value(name));
    query.set("run", "1");
    history.replaceState(null, "", `?${query}`);
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    show(await api("POST", "/hooks/dry-run", request));
  } catch (problem) {
    showProblem(form, toControl(problem));
  } finally {
    button.disabled = false;
  }
}

if (form) {
  const query = new URLSearchParams(location.search);
  for (const name of STATE) {
    if (!query.has(name)) continue;
    const control = form.elements[name];
    if (control instanceof RadioNodeList) control.value = query.get(name);
    else if (control) control.value = query.get(name);
  }
  showChosen();
  form.addEventListener("change", showChosen);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  if (query.get("run") === "1") run({ remember: false });
}
