// The webhook page, as a member: set the endpoint (a refused URL shows the API's detail next
// to it), rotate the secret (shown once, gone after a reload), see the latest attempts with
// their HTTP status and latency, remove the endpoint.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { api, assertClean, base, launch, login, member, newPage, signIn, unique, visit } from "./lib.mjs";

let browser;
let receiver;
/** Requests the receiver got; it answers 500 to the first and 200 to the others. */
const received = [];

before(async () => {
  browser = await launch();
  receiver = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      received.push(body);
      response.writeHead(received.length === 1 ? 500 : 200, { "content-type": "text/plain" });
      response.end(received.length === 1 ? "try again" : "ok");
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
});
after(async () => {
  await browser?.close();
  receiver?.close();
});

/** Waits (reloading) until `check` holds on the page. */
async function eventually(page, check, what) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (await check()) return;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await page.reload();
  }
}

test("a member sets their endpoint, rotates its secret (shown once), sees the attempts and removes it", async () => {
  const admin = await login();
  const user = await member(admin, unique("hooked"));
  const page = await newPage(browser);
  page.acceptConfirms = true;
  await signIn(page, user.username, user.password, "/console/webhook");
  await visit(page, "/console/webhook", "webhook-none");
  assert.match(await page.locator("#endpoint").textContent(), /no endpoint/);

  // A URL the API refuses: its detail next to the field, nothing set.
  const url = page.getByLabel(/^URL/);
  await url.fill("ftp://example.com/hook");
  await page.getByRole("button", { name: "Save endpoint" }).click();
  await page.locator("#webhook-url + .problem").waitFor();
  assert.ok((await page.locator("#webhook-url + .problem").textContent()).length > 0);
  assert.equal(await url.getAttribute("aria-invalid"), "true");
  assert.equal((await fetch(`${base}/users/me/webhook`, { headers: { authorization: `Bearer ${user.token}` } })).status, 404);

  // Set: the secret is shown once.
  const endpoint = `http://127.0.0.1:${receiver.address().port}/hook`;
  await url.fill(endpoint);
  await page.getByRole("button", { name: "Save endpoint" }).click();
  await page.locator("#secret-shown").waitFor();
  const first = await page.locator("#secret-value").textContent();
  assert.match(first, /^whsec_/);
  assert.match(await page.locator("#secret-shown").textContent(), /will not be shown again/);
  await page.reload();
  assert.equal(await page.locator("#secret-shown").isVisible(), false);
  assert.ok(!(await page.content()).includes(first), "the secret is shown again after a reload");
  assert.ok((await page.locator("#endpoint").textContent()).includes(endpoint));

  // Rotate: a new secret, shown once; the old one keeps signing for a day.
  await page.getByRole("button", { name: "Rotate the secret", exact: true }).click();
  await page.locator("#secret-shown").waitFor();
  const rotated = await page.locator("#secret-value").textContent();
  assert.match(rotated, /^whsec_/);
  assert.notEqual(rotated, first);
  assert.match(await page.locator("#secret-note").textContent(), /keep signing until/);
  await visit(page, "/console/webhook", "webhook");
  assert.equal(await page.locator("#secret-shown").isVisible(), false);
  assert.ok(!(await page.content()).includes(rotated), "the rotated secret is shown again after a reload");
  assert.equal((await api(user.token, "GET", "/users/me/webhook")).active_secrets, 2);

  // A webhook message: the first attempt gets a 500, the retry a 200.
  await api(admin, "POST", "/messages", { recipient_id: user.id, content: "to your endpoint", channel: "webhook" });
  await eventually(page, async () => (await page.locator("#attempts tbody tr").count()) >= 2 && /2xx/.test(await page.locator("#attempts").textContent()), "two attempts");
  const rows = page.locator("#attempts tbody tr");
  assert.match(await rows.nth(0).textContent(), /2xx/);
  assert.match(await rows.nth(1).locator("td").nth(3).textContent(), /^500$/);
  assert.match(await rows.nth(1).textContent(), /HTTP 500/);
  assert.match(await rows.nth(0).locator("td").nth(4).textContent(), /^\d+ ms$/);
  await visit(page, "/console/webhook", "webhook-attempts");

  // Remove.
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Remove", exact: true }).click()]);
  assert.match(await page.locator("#endpoint").textContent(), /no endpoint/);
  assertClean(page);
});

test("a member sets status callbacks for chosen statuses, rotates their secret and removes them", async () => {
  const admin = await login();
  const user = await member(admin, unique("called"));
  const page = await newPage(browser);
  page.acceptConfirms = true;
  await signIn(page, user.username, user.password, "/console/webhook");
  assert.match(await page.locator("#callbacks").textContent(), /no callback endpoint/);
  const form = page.locator("#set-callbacks");
  const endpoint = `http://127.0.0.1:${receiver.address().port}/callbacks`;

  // No status chosen: the API's detail, nothing set.
  await page.getByLabel(/^Callback URL/).fill(endpoint);
  for (const box of await form.getByRole("checkbox").all()) await box.uncheck();
  await page.getByRole("button", { name: "Save callbacks" }).click();
  await form.locator(".problem").waitFor();
  assert.ok((await form.locator(".problem").textContent()).length > 0);
  assert.equal((await fetch(`${base}/users/me/callbacks`, { headers: { authorization: `Bearer ${user.token}` } })).status, 404);

  // Two statuses: set, the secret shown once.
  await page.getByLabel("delivered", { exact: true }).check();
  await page.getByLabel("dead", { exact: true }).check();
  await page.getByRole("button", { name: "Save callbacks" }).click();
  await page.locator("#secret-shown").waitFor();
  const first = await page.locator("#secret-value").textContent();
  assert.match(first, /^whsec_/);
  assert.deepEqual((await api(user.token, "GET", "/users/me/callbacks")).events, ["delivered", "dead"]);
  await page.reload();
  assert.ok(!(await page.content()).includes(first));
  assert.match(await page.locator("#callbacks").textContent(), /delivered, dead/);
  assert.equal(await page.getByLabel("retrying", { exact: true }).isChecked(), false);

  await page.getByRole("button", { name: "Rotate the callback secret" }).click();
  await page.locator("#secret-shown").waitFor();
  const rotated = await page.locator("#secret-value").textContent();
  assert.notEqual(rotated, first);
  await visit(page, "/console/webhook", "webhook-callbacks");
  assert.ok(!(await page.content()).includes(rotated));

  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Remove callbacks" }).click()]);
  assert.match(await page.locator("#callbacks").textContent(), /no callback endpoint/);
  assertClean(page);
});
