// Schedules: the create form sends a nested body (`message.content` → {message: {content}}),
// so it is sent here rather than by console.js; a problem about `/message/recipient_id` is
// shown next to the control named `message.recipient_id`.
import { api, clearProblems, formBody, showProblem } from "./console.js";

/** `{ "message.content": "x" }` → `{ message: { content: "x" } }`. */
function nest(flat) {
  const body = {};
  for (const [name, value] of Object.entries(flat)) {
    const path = name.split(".");
    let at = body;
    for (const part of path.slice(0, -1)) at = at[part] ??= {};
    at[path[path.length - 1]] = value;
  }
  return body;
}

const form = document.getElementById("create-schedule");
form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblems(form);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const created = await api("POST", "/schedules", nest(formBody(form)));
    location.assign(`/console/schedules/${encodeURIComponent(created.id)}`);
  } catch (problem) {
    // A pointer into the message names a dotted control: /message/recipient_id → message.recipient_id.
    const field = (problem.field ?? "").replace(/^\//, "");
    const parts = field.split("/");
    if (parts[0] === "message" && parts[1] && form.querySelector(`[name="message.${CSS.escape(parts[1])}"]`)) {
      problem.field = `message.${parts[1]}`;
    }
    showProblem(form, problem);
  } finally {
    button.disabled = false;
  }
});
