// The console's one shared script. Pages are rendered by the server; this adds:
// - `api()`: the JSON API with the session cookie and the anti-forgery header, refreshing the
//   session once when the access token has expired;
// - forms marked `data-api-method` / `data-api-path` are sent to the API as JSON, and a
//   problem's `detail` is shown next to the control it names (or at the form's end);
// - `text()` / `el()`: building DOM from data as text, never as HTML.

const csrf = () => document.querySelector('meta[name="dms-csrf"]')?.content ?? "";

/** A problem answered by the API (RFC 9457). */
export class Problem extends Error {
  constructor(status, body) {
    super(body?.detail ?? `the server answered ${status}`);
    this.status = status;
    this.code = body?.code ?? "";
    this.field = body?.field ?? "";
    this.body = body ?? {};
  }
}

let refreshing = null;

/** Refreshes the console session (once at a time, across tabs where the browser can). */
async function refreshSession() {
  const run = async () => {
    const answer = await fetch("/console/session/refresh", {
      method: "POST",
      credentials: "same-origin",
      headers: { "x-dms-csrf": csrf() },
    });
    return answer.ok;
  };
  if (!refreshing) {
    refreshing = (navigator.locks ? navigator.locks.request("dms-console-refresh", run) : run()).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * Calls the API: `api("POST", "/messages", {…})`. Resolves to the parsed JSON (or null for no
 * content); rejects with a `Problem`. `body` may be a Blob/ArrayBuffer, sent as is with
 * `contentType`.
 */
export async function api(method, path, body, { contentType, retried } = {}) {
  const headers = { accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["x-dms-csrf"] = csrf();
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body;
    headers["content-type"] = contentType ?? "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["content-type"] = contentType ?? "application/json";
  }
  const answer = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (answer.status === 401 && !retried) {
    const problem = await answer.json().catch(() => ({}));
    if (problem.code === "token_expired" && (await refreshSession())) {
      return api(method, path, body, { contentType, retried: true });
    }
    if (problem.code === "token_expired" || problem.code === "session_ended" || problem.code === "unauthenticated") {
      location.assign(`/console/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    throw new Problem(401, problem);
  }
  if (answer.status === 204) return null;
  const type = answer.headers.get("content-type") ?? "";
  const data = type.includes("json") ? await answer.json().catch(() => null) : await answer.text();
  if (!answer.ok) throw new Problem(answer.status, typeof data === "object" ? data : { detail: String(data) });
  return data;
}

/** An element with attributes and children; strings become text nodes, never HTML. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Shows `message` (a Problem or text) in `form`, next to the control the problem names. */
export function showProblem(form, problem) {
  clearProblems(form);
  const detail = problem instanceof Error ? problem.message : String(problem);
  const field = problem?.field ? problem.field.replace(/^\//, "").split("/")[0] : "";
  const control = field ? form.querySelector(`[name="${CSS.escape(field)}"]`) : null;
  const id = `${form.id || "form"}-problem-${field || "form"}`;
  const note = el("p", { class: "problem", id, role: "alert" }, detail);
  if (control) {
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", id);
    control.after(note);
    control.focus();
  } else {
    const slot = form.querySelector("[data-problem]") ?? form;
    slot.append(note);
  }
}

/** Removes the problems shown in `form`. */
export function clearProblems(form) {
  for (const note of form.querySelectorAll(".problem")) note.remove();
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
    control.removeAttribute("aria-describedby");
  }
}

/** Shows `text` in the form's status line (for success). */
export function say(form, text) {
  let line = form.querySelector("[data-status]");
  if (!line) {
    line = el("p", { "data-status": "", role: "status", class: "note" });
    form.append(line);
  }
  line.textContent = text;
}

/** The JSON body of a `data-api` form: each named control, typed by its `data-type`. */
export function formBody(form) {
  const body = {};
  for (const control of form.elements) {
    if (!control.name || control.disabled || control.dataset.skip !== undefined) continue;
    if (control.type === "checkbox") {
      body[control.name] = control.checked;
      continue;
    }
    if (control.type === "radio" && !control.checked) continue;
    const value = control.value;
    if (value === "" && control.dataset.keepEmpty === undefined) continue;
    switch (control.dataset.type) {
      case "number":
        body[control.name] = Number(value);
        break;
      case "json":
        try {
          body[control.name] = JSON.parse(value);
        } catch (error) {
          throw new Problem(400, { detail: `this is not valid JSON: ${error.message}`, field: `/${control.name}` });
        }
        break;
      case "lines":
        body[control.name] = value.split(/\s+/).filter(Boolean);
        break;
      case "datetime":
        body[control.name] = new Date(value).toISOString();
        break;
      default:
        body[control.name] = value;
    }
  }
  return body;
}

/** Sends a `data-api` form; `data-after` says what then: `reload` (default), a URL (`{id}` is
 * replaced by the answer's id), or `none` (the page's own script listens for `dms:done`). */
async function submitApiForm(form, submitter) {
  if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
  clearProblems(form);
  const method = form.dataset.apiMethod;
  const path = form.dataset.apiPath;
  const buttons = form.querySelectorAll("button");
  for (const button of buttons) button.disabled = true;
  try {
    const body = method === "GET" || method === "DELETE" || form.dataset.noBody !== undefined ? undefined : formBody(form);
    const answer = await api(method, path, body);
    form.dispatchEvent(new CustomEvent("dms:done", { detail: answer, bubbles: true }));
    const after = form.dataset.after ?? "reload";
    if (after === "reload") location.reload();
    else if (after !== "none") location.assign(after.replace("{id}", encodeURIComponent(answer?.id ?? "")));
  } catch (problem) {
    showProblem(form, problem);
  } finally {
    for (const button of buttons) button.disabled = false;
    submitter?.focus?.();
  }
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.apiMethod) return;
  event.preventDefault();
  submitApiForm(form, event.submitter);
});

/** Formats a time for people, in UTC like the server's pages. */
export function when(value) {
  if (!value) return "";
  const text = new Date(value).toISOString();
  return `${text.slice(0, 10)} ${text.slice(11, 19)} UTC`;
}
