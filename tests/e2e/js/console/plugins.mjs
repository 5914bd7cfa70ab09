// Plugins, hooks and dry runs in the console: upload a test validator, bind it, dry-run it
// (current and proposed hooks, the retry schedule), see a message rejected by it, refusals
// shown as the API's detail next to their control, and no admin page for a member.
//
// DMS_TEST_VALIDATOR_WASM is the path of `tests/guests/tenant-validator` built as a component:
// it refuses content containing its `deny` word (code `denied_word`). DMS_TEST_PANIC_WASM is
// `tests/guests/panic`, a validator that traps on every call.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { api, assertClean, base, launch, login, member, newPage, screenshots390And1280, signIn, unique, visit } from "./lib.mjs";

const validatorPath = process.env.DMS_TEST_VALIDATOR_WASM ?? "";
const panicPath = process.env.DMS_TEST_PANIC_WASM ?? "";

let browser;
before(async () => {
  assert.ok(validatorPath, "DMS_TEST_VALIDATOR_WASM names the test validator's component");
  assert.ok(panicPath, "DMS_TEST_PANIC_WASM names the trapping validator's component");
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The API's answer to a raw upload, as a bearer-token client sees it. */
async function rawUpload(token, bytes) {
  const answer = await fetch(`${base}/plugins`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/wasm" }, body: bytes });
  return { status: answer.status, body: await answer.json() };
}

/** Runs the dry-run form and waits for its verdict. */
async function dryRun(page) {
  await page.getByRole("button", { name: "Run" }).click();
  await page.locator("#dry-run-output [data-verdict]").waitFor();
  return page.locator("#dry-run-output [data-verdict]").getAttribute("data-verdict");
}

test("a member gets the 404 page on the plugins and hooks pages", async () => {
  const admin = await login();
  const user = await member(admin, unique("plugmember"));
  const page = await newPage(browser);
  await signIn(page, user.username, user.password);
  assert.equal(await page.getByRole("link", { name: "Plugins" }).count(), 0);
  for (const path of ["/console/plugins", "/console/hooks"]) {
    const answer = await page.goto(`${base}${path}`);
    assert.equal(answer.status(), 404, path);
    assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Not found");
  }
  assertClean(page);
});

test("uploading a file that is not a component shows the server's exact refusal next to the file input", async () => {
  const token = await login();
  const stored = (await api(token, "GET", "/plugins")).items.length;
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/plugins");
  await visit(page, "/console/plugins", "plugins-empty");
  const bytes = Buffer.from("this is a text file, not WebAssembly\n");
  const expected = await rawUpload(token, bytes);
  assert.equal(expected.status, 422, JSON.stringify(expected.body));

  await page.getByLabel("Component (.wasm)").setInputFiles({ name: "notes.wasm", mimeType: "application/wasm", buffer: bytes });
  await page.getByRole("button", { name: "Upload" }).click();
  const problem = page.locator("#upload-file + .problem");
  await problem.waitFor();
  assert.equal(await problem.textContent(), expected.body.detail);
  assert.equal(await page.getByLabel("Component (.wasm)").getAttribute("aria-invalid"), "true");

  // A name the API refuses is shown next to the name.
  await page.getByLabel("Component (.wasm)").setInputFiles(validatorPath);
  await page.getByLabel(/^Name/).fill("no spaces allowed");
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#upload-name + .problem").waitFor();
  assert.match(await page.locator("#upload-name + .problem").textContent(), /name/);
  assert.equal((await api(token, "GET", "/plugins")).items.length, stored, "a refused upload stored something");
  assertClean(page);
});

test("upload a validator, bind it, dry-run it, and see a message rejected by it", async () => {
  const token = await login();
  const bob = await member(token, unique("bob"));
  const page = await newPage(browser);
  page.acceptConfirms = true;
  await signIn(page, "admin", undefined, "/console/plugins");
  await page.goto(`${base}/console/plugins`);

  // Upload: the detected world, size and digest.
  const bytes = readFileSync(validatorPath);
  const name = unique("deny-word-");
  await page.getByLabel("Component (.wasm)").setInputFiles(validatorPath);
  await page.getByLabel(/^Name/).fill(name);
  await page.getByLabel(/^Version/).fill("1.0.0");
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#uploaded-facts").waitFor();
  const facts = await page.locator("#uploaded-facts").textContent();
  assert.match(facts, /validator/);
  assert.ok(facts.includes(`${bytes.length} bytes`), facts);
  assert.ok(facts.includes(`sha256:${createHash("sha256").update(bytes).digest("hex")}`), facts);
  const plugin = (await api(token, "GET", "/plugins")).items.find((item) => item.name === name);
  assert.ok(plugin, "the upload is stored");

  await visit(page, "/console/plugins", "plugins");
  const row = page.locator(`tr[data-plugin="${name}"]`);
  assert.match(await row.textContent(), /enabled/);
  assert.equal(await row.locator("td").nth(6).textContent(), "0");

  // A binding the API refuses shows its detail next to the bindings; bad JSON never leaves.
  await visit(page, "/console/hooks", "hooks");
  const bindings = page.getByLabel(/The validators in order/);
  await bindings.fill("[{");
  await page.getByRole("button", { name: "Bind validators" }).click();
  await page.locator("#validators-plugins + .problem").waitFor();
  assert.match(await page.locator("#validators-plugins + .problem").textContent(), /not valid JSON/);
  await bindings.fill(JSON.stringify([{ plugin_id: "plg_00000000000000000000000000" }]));
  await page.getByRole("button", { name: "Bind validators" }).click();
  await page.locator("#validators-plugins + .problem").waitFor();
  const refused = await page.locator("#validators-plugins + .problem").textContent();
  assert.ok(refused.length > 0 && !/not valid JSON/.test(refused), refused);
  assert.equal((await api(token, "GET", "/hooks")).validators.some((bound) => bound.plugin_id), false, "a refused binding was stored");

  // Bind it, refusing the word "forbidden".
  await bindings.fill(JSON.stringify([{ plugin_id: plugin.id, config: { deny: "forbidden" } }]));
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Bind validators" }).click()]);
  assert.match(await page.locator("#validators").textContent(), new RegExp(name));
  await visit(page, "/console/hooks", "hooks-bound");

  // Dry run with the current hooks: refused, then accepted with its retry schedule.
  await page.getByLabel("Content").fill("this is forbidden");
  assert.equal(await dryRun(page), "rejected");
  assert.match(await page.locator("[data-rejection]").textContent(), /denied_word/);
  assert.match(await page.locator("#decisions").textContent(), new RegExp(name));
  await page.getByLabel("Content").fill("hello there");
  await page.getByLabel(/Failed attempts/).fill("4");
  assert.equal(await dryRun(page), "accepted");
  const decisions = await page.locator("#decisions").textContent();
  assert.ok(decisions.includes(name) && decisions.includes(plugin.digest), decisions);
  assert.equal(await page.locator("#retries li").count(), 4);
  assert.ok((await page.locator("svg.schedule circle").count()) >= 2, "the timeline draws the attempts");
  await screenshots390And1280(page, "hooks-dry-run");

  // The dry run is a link: reloading it runs it again.
  assert.match(page.url(), /run=1/);
  await page.reload();
  await page.locator("#dry-run-output [data-verdict]").waitFor();
  assert.equal(await page.getByLabel("Content").inputValue(), "hello there");

  // Proposed hooks: the same message refused by a proposal, the current hooks unchanged.
  await page.getByLabel("Proposed", { exact: true }).check();
  await page.getByLabel(/Proposed bindings/).fill(JSON.stringify({ validators: { plugins: [{ plugin_id: plugin.id, config: { deny: "hello" } }] } }));
  assert.equal(await dryRun(page), "rejected");
  assert.match(await page.locator("[data-rejection]").textContent(), /hello/);
  await page.getByLabel(/Proposed bindings/).fill(JSON.stringify({ validators: { plugins: [{ plugin_id: "plg_00000000000000000000000000" }] } }));
  await page.getByRole("button", { name: "Run" }).click();
  await page.locator("#dry-hooks + .problem").waitFor();
  assert.ok((await page.locator("#dry-hooks + .problem").textContent()).length > 0);

  // A stored message of the admin's as the sample.
  const sent = await api(token, "POST", "/messages", { recipient_id: bob.id, content: "a stored hello", delay_seconds: 3600 });
  await page.getByLabel("Current", { exact: true }).check();
  await page.getByLabel("Pick one of your messages").check();
  await page.getByLabel(/Message id/).fill(sent.id);
  assert.equal(await dryRun(page), "accepted");
  await page.getByLabel(/Message id/).fill("msg_nope");
  await page.getByRole("button", { name: "Run" }).click();
  await page.locator("#dry-message-id + .problem, #dry-run [data-problem] .problem").first().waitFor();

  // The bound validator refuses a real message; the console counted its calls.
  const answer = await fetch(`${base}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${bob.token}`, "content-type": "application/json" },
    body: JSON.stringify({ recipient_id: bob.id, content: "something forbidden" }),
  });
  const problem = await answer.json();
  assert.equal(answer.status, 422, JSON.stringify(problem));
  assert.equal(problem.reason_code, "denied_word");
  assert.equal(problem.plugin, name);
  await page.goto(`${base}/console/plugins`);
  assert.ok(Number(await row.locator("td").nth(6).textContent()) >= 1, "the plugin's calls are counted");

  // In use, it cannot be deleted: the API's detail is shown; unbound, it can.
  await row.getByRole("button", { name: `Delete ${name}` }).click();
  await row.locator(".problem").waitFor();
  assert.ok((await row.locator(".problem").textContent()).length > 0);
  await page.goto(`${base}/console/hooks`);
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Return to the built-in" }).first().click()]);
  assert.doesNotMatch(await page.locator("#validators").textContent(), new RegExp(name));
  await page.goto(`${base}/console/plugins`);
  await Promise.all([page.waitForEvent("load"), row.getByRole("button", { name: `Delete ${name}` }).click()]);
  assert.equal(await page.locator(`tr[data-plugin="${name}"]`).count(), 0);
  assertClean(page);
});

test("a plugin the host disabled shows why, its hook shows the built-in standing in, and Enable serves it again", async () => {
  const token = await login();
  const bob = await member(token, unique("bob"));
  const name = unique("panics-");
  const upload = await fetch(`${base}/plugins?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/wasm" }, body: readFileSync(panicPath) });
  assert.equal(upload.status, 201);
  const plugin = await upload.json();
  await api(token, "PUT", "/hooks/validators", { plugins: [{ plugin_id: plugin.id }] });
  try {
    // Every call traps; after the operator's limit of failures in a row the host disables it.
    for (let sent = 0; sent < 200 && !(await api(token, "GET", `/plugins/${plugin.id}`)).disabled; sent += 1) {
      await fetch(`${base}/messages`, { method: "POST", headers: { authorization: `Bearer ${bob.token}`, "content-type": "application/json" }, body: JSON.stringify({ recipient_id: bob.id, content: `try ${sent}` }) });
    }
    const disabled = (await api(token, "GET", `/plugins/${plugin.id}`)).disabled;
    assert.ok(disabled, "the trapping plugin was disabled");

    const page = await newPage(browser);
    await signIn(page, "admin", undefined, "/console/plugins");
    await visit(page, "/console/plugins", "plugins-disabled");
    const row = page.locator(`tr[data-plugin="${name}"]`);
    assert.match(await row.textContent(), /disabled/);
    assert.ok((await row.textContent()).includes(disabled.reason));
    assert.ok(Number(await row.locator("td").nth(7).textContent().then((text) => text.split(" ")[0])) >= 1, "its failures are counted");
    await page.goto(`${base}/console/hooks`);
    assert.match(await page.locator("#validators").textContent(), /a built-in stands in/);

    await page.goto(`${base}/console/plugins`);
    await Promise.all([page.waitForEvent("load"), row.getByRole("button", { name: `Enable ${name}` }).click()]);
    assert.match(await row.textContent(), /enabled/);
    assert.equal((await api(token, "GET", `/plugins/${plugin.id}`)).disabled, null);
    assertClean(page);
  } finally {
    await api(token, "DELETE", "/hooks/validators");
    await api(token, "DELETE", `/plugins/${plugin.id}`);
  }
});
