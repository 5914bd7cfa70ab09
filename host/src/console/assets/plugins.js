// The plugins page: uploads a component's bytes as `application/wasm` to `POST /plugins`
// (`?name=&version=`), then shows what the server detected, or its exact refusal next to the
// file input.
import { api, el, clearProblems, showProblem, Problem } from "./console.js";

const form = document.getElementById("upload");
const shown = document.getElementById("uploaded");

/** A refusal about the component itself (no `field`) belongs next to the file input. */
function aboutTheFile(problem) {
  if (problem instanceof Problem && !problem.field) problem.field = "/file";
  return problem;
}

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblems(form);
  shown.replaceChildren();
  const file = form.elements.file.files[0];
  if (!file) {
    showProblem(form, new Problem(400, { detail: "choose a .wasm file to upload", field: "/file" }));
    return;
  }
  const query = new URLSearchParams();
  for (const name of ["name", "version"]) {
    const value = form.elements[name].value.trim();
    if (value) query.set(name, value);
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const bytes = await file.arrayBuffer();
    const search = query.toString();
    const path = `/plugins${search ? `?${search}` : ""}`;
    const plugin = await api("POST", path, bytes, { contentType: "application/wasm" });
    shown.replaceChildren(
      el("p", { class: "note" }, "Accepted: this is what the server detected. The list shows it after a reload."),
      el(
        "dl",
        { class: "facts", id: "uploaded-facts" },
        el("dt", {}, "Name"),
        el("dd", {}, plugin.name),
        el("dt", {}, "World"),
        el("dd", { "data-world": "" }, plugin.world),
        el("dt", {}, "Size"),
        el("dd", {}, `${plugin.size} bytes`),
        el("dt", {}, "Digest"),
        el("dd", {}, el("code", {}, plugin.digest)),
        el("dt", {}, "Id"),
        el("dd", {}, el("code", {}, plugin.id)),
      ),
      el("a", { class: "button secondary", href: "/console/plugins" }, "Show in the list"),
    );
  } catch (problem) {
    showProblem(form, aboutTheFile(problem));
  } finally {
    button.disabled = false;
  }
});
