// Flow control: the pattern is part of the API's path (`PUT /flow-control/{key}`), so the form
// is sent here; the API's problem is shown next to the control it names (`/key`, `/rate`…).
import { api, clearProblems, formBody, showProblem } from "./console.js";

const form = document.getElementById("put-limit");
form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblems(form);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const key = form.elements.key.value;
    await api("PUT", `/flow-control/${encodeURIComponent(key)}`, formBody(form));
    location.reload();
  } catch (problem) {
    showProblem(form, problem);
  } finally {
    button.disabled = false;
  }
});
