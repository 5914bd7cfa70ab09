// The webhook page: a new signing secret (after setting the endpoint or rotating) is shown
// here once; it is kept nowhere in the page's state, so a reload does not show it again.
import { api, clearProblems, showProblem, when } from "./console.js";

const shown = document.getElementById("secret-shown");

function showSecret(secret, note) {
  document.getElementById("secret-value").textContent = secret;
  document.getElementById("secret-note").textContent = note;
  shown.hidden = false;
  shown.focus();
}

document.getElementById("rotate")?.addEventListener("dms:done", (event) => {
  const rotated = event.detail;
  showSecret(rotated.secret, `The previous secrets keep signing until ${when(rotated.previous_secrets_valid_until)}.`);
});

document.getElementById("set-endpoint")?.addEventListener("dms:done", (event) => {
  const set = event.detail;
  showSecret(set.secret, `Deliveries now go to ${set.url}, signed with this secret.`);
});

document.getElementById("rotate-callbacks")?.addEventListener("dms:done", (event) => {
  const rotated = event.detail;
  showSecret(rotated.secret, `Callbacks: the previous secrets keep signing until ${when(rotated.previous_secrets_valid_until)}.`);
});

// The callback form sends its checked statuses as a list, which a `data-api` form cannot.
const callbacks = document.getElementById("set-callbacks");
callbacks?.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblems(callbacks);
  const url = callbacks.elements.url.value;
  const events = [...callbacks.querySelectorAll('input[name="events"]:checked')].map((box) => box.value);
  const button = callbacks.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const set = await api("PUT", "/users/me/callbacks", { url, events });
    showSecret(set.secret, `Callbacks for ${set.events.join(", ")} now go to ${set.url}, signed with this secret.`);
  } catch (problem) {
    // The statuses are one control: a problem about one of them is shown beside the list.
    if (problem.field?.startsWith("/events")) problem.field = "";
    showProblem(callbacks, problem);
  } finally {
    button.disabled = false;
  }
});
