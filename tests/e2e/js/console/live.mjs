// The live feed: a message sent to the signed-in user shows as it arrives (as text); after
// Disconnect, a message sent meanwhile, and Reconnect, the missed one shows, resumed from the
// cursor, exactly once, and nothing shown before comes again.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, assertClean, launch, login, member, newPage, signIn, unique, visit } from "./lib.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function delivered(token, id) {
  for (let tries = 0; tries < 120; tries += 1) {
    const message = await api(token, "GET", `/messages/${id}`);
    if (message.status === "delivered" || message.status === "read") return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.fail(`message ${id} was not delivered`);
}

test("the live page shows messages as they arrive and resumes from its cursor after a reconnect", async () => {
  const token = await login();
  const someone = await member(token, unique("live"));
  const page = await newPage(browser);
  await signIn(page, someone.username, someone.password, "/console/live");
  await visit(page, "/console/live", "live");
  await page.waitForSelector('body[data-live="open"]', { timeout: 30_000 });
  assert.match(await page.locator("#connection").textContent(), /connected/);
  assert.equal(await page.locator("#connection").getAttribute("aria-live"), "polite");

  const content = "first <img src=x onerror=alert(1)>";
  const first = await api(token, "POST", "/messages", { recipient_id: someone.id, content });
  const firstItem = page.locator(`li[data-kind="message"][data-message="${first.id}"]`);
  await firstItem.waitFor({ timeout: 30_000 });
  assert.equal(await firstItem.locator("pre").textContent(), content);
  assert.equal(await page.locator("#events img").count(), 0, "content became HTML");

  await page.getByRole("button", { name: "Disconnect" }).click();
  await page.waitForSelector('body[data-live="closed"]', { timeout: 30_000 });
  const cursorBefore = Number(await page.evaluate(() => document.body.dataset.cursor));
  const second = await api(token, "POST", "/messages", { recipient_id: someone.id, content: "second, sent while away" });
  await delivered(token, second.id);
  assert.equal(await page.locator(`li[data-message="${second.id}"]`).count(), 0, "an event came while disconnected");

  await page.getByRole("button", { name: "Reconnect" }).click();
  const secondItem = page.locator(`li[data-kind="message"][data-message="${second.id}"]`);
  await secondItem.waitFor({ timeout: 30_000 });
  assert.match(await page.locator("#connection").textContent(), new RegExp(`resum\\w* after cursor ${cursorBefore}\\b`));
  // Another message after the reconnect arrives live, after the replayed one.
  const third = await api(token, "POST", "/messages", { recipient_id: someone.id, content: "third" });
  await page.locator(`li[data-kind="message"][data-message="${third.id}"]`).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator(`li[data-message="${first.id}"]`).count(), 1, "the first one shown again");
  assert.equal(await page.locator(`li[data-message="${second.id}"]`).count(), 1, "the missed one not exactly once");
  const cursors = await page.locator("#events li").evaluateAll((items) => items.map((item) => Number(item.dataset.cursor)));
  assert.deepEqual(cursors, [...cursors].sort((a, b) => b - a), "events out of order");
  assert.equal(new Set(cursors).size, cursors.length, "an event shown twice");
  assertClean(page);
});
