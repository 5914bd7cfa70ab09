// Dead letters: replays the selected ones, one after another, with a progress bar and a
// count; a refusal is listed (as text) with the message it was about.

import { api, el } from "./console.js";

const picks = () => [...document.querySelectorAll("input.pick")];
const all = document.getElementById("select-all");
const button = document.getElementById("replay-selected");
const count = document.getElementById("replay-count");
const progress = document.getElementById("replay-progress");
const problems = document.getElementById("replay-problems");

function counted() {
  const chosen = picks().filter((box) => box.checked && !box.disabled).length;
  count.textContent = chosen === 0 ? "None selected." : `${chosen} selected.`;
  if (all) all.checked = chosen > 0 && chosen === picks().filter((box) => !box.disabled).length;
}

all?.addEventListener("change", () => {
  for (const box of picks()) if (!box.disabled) box.checked = all.checked;
  counted();
});
for (const box of picks()) box.addEventListener("change", counted);

button?.addEventListener("click", async () => {
  const chosen = picks().filter((box) => box.checked && !box.disabled);
  problems.replaceChildren();
  if (chosen.length === 0) {
    count.textContent = "Select at least one dead letter first.";
    return;
  }
  button.disabled = true;
  progress.max = chosen.length;
  progress.value = 0;
  let replayed = 0;
  for (const [done, box] of chosen.entries()) {
    const id = box.value;
    try {
      await api("POST", `/dead-letters/${encodeURIComponent(id)}/replay`);
      replayed += 1;
      box.checked = false;
      box.disabled = true;
      const row = box.closest("tr");
      row?.querySelector(".actions")?.replaceChildren(el("span", { class: "badge scheduled" }, "replayed"));
    } catch (problem) {
      problems.append(el("li", { class: "problem" }, `${id}: ${problem.message}`));
    }
    progress.value = done + 1;
    count.textContent = `Replayed ${replayed} of ${chosen.length}…`;
  }
  const failed = chosen.length - replayed;
  count.textContent = `Replayed ${replayed} of ${chosen.length}${failed ? `; ${failed} refused (listed below)` : ""}. Reload the page to see the dead letters left.`;
  button.disabled = false;
  if (all) all.checked = false;
});
