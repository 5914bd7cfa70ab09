// The overview: its four charts are drawn, its figures update by themselves after messages
// are sent, it names the deployment; its JSON is the signed-in tenant's and needs a session.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, assertClean, base, launch, login, member, newPage, signIn, unique, visit } from "./lib.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

const number = async (page, selector) => Number(await page.locator(selector).textContent());

test("the overview draws its charts and its figures change live after messages are sent", async () => {
  const token = await login();
  const me = await api(token, "GET", "/users/me");
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/");
  await visit(page, "/console/", "overview");
  await page.waitForFunction(() => document.querySelectorAll(".plot svg[role=img] line.axis").length === 4, null, { timeout: 30_000 });
  assert.match(await page.locator("#deployment-database").textContent(), /SQLite \(embedded\)|PostgreSQL/);
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById("deployment-nodes").textContent), null, { timeout: 30_000 });
  assert.ok((await number(page, "#deployment-nodes")) >= 1);

  const before = await number(page, "#total-submitted");
  const drawnAt = await page.evaluate(() => document.body.dataset.overviewAt);
  for (let index = 0; index < 3; index += 1) {
    await api(token, "POST", "/messages", { recipient_id: me.id, content: `overview ${index}`, delay_seconds: 3600 });
  }
  // No reload: the page's script fetches the figures again every few seconds.
  await page.waitForFunction((at) => Number(document.getElementById("total-submitted").textContent) >= at, before + 3, { timeout: 30_000 });
  assert.notEqual(await page.evaluate(() => document.body.dataset.overviewAt), drawnAt);
  // The queue is sampled from the database every ten seconds: the waiting ones show.
  await page.waitForFunction(() => Number(document.getElementById("now-depth").textContent) >= 3, null, { timeout: 30_000 });
  // The messages chart has a line for the minute that counted them.
  assert.ok((await page.locator("#chart-messages svg polyline.s1, #chart-messages svg circle.s1").count()) >= 1);
  const label = await page.locator("#chart-messages svg").getAttribute("aria-label");
  assert.match(label, /submitted \d+/);
  assertClean(page);
});

test("a member sees their tenant's overview; the JSON needs a session", async () => {
  const token = await login();
  const someone = await member(token, unique("viewer"));
  const page = await newPage(browser);
  await signIn(page, someone.username, someone.password, "/console/");
  assert.equal(new URL(page.url()).pathname, "/console/");
  const data = await page.evaluate(async () => (await fetch("/console/overview.json")).json());
  assert.equal(data.minutes.length, 60);
  assert.ok(data.minutes.every((minute, index) => index === 0 || minute.at_ms - data.minutes[index - 1].at_ms === 60_000));
  assert.ok(data.submitted >= 3, "the admin's messages are the tenant's");

  const answer = await fetch(`${base}/console/overview.json`, { redirect: "manual" });
  assert.ok([302, 303, 307].includes(answer.status), `without a session: ${answer.status}`);
  assert.match(answer.headers.get("location") ?? "", /\/console\/login/);
  assertClean(page);
});
