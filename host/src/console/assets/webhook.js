// The webhook page: a new signing secret (after setting the endpoint or rotating) is shown
// here once; it is kept nowhere in the page's state, so a reload does not show it again.
import { when } from "./console.js";

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
