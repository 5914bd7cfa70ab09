// Messages in the console: sending one and watching it delivered on its page without a
// reload, cancelling, rescheduling, the history as a timeline, the XSS content shown as text,
// filters and keyset pages, dead letters replayed with progress and deleted, and who may not
// see what (the 404 page).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, assertClean, base, launch, login, member, newPage, signIn, unique, visit } from "./lib.mjs";

const XSS = "<img src=x onerror=alert(1)>";

let browser;
let adminToken;
let bob;
before(async () => {
  browser = await launch();
  adminToken = await login();
  bob = await member(adminToken, unique("bob"));
});
after(async () => {
  await browser?.close();
});

/** Sends a message over the API as the admin: the message. */
function send(body) {
  return api(adminToken, "POST", "/messages", { recipient_id: bob.id, content: "hello", ...body });
}

/** Waits until `locator`'s text is `text` (generous timeout, no timing assert). */
async function waitForText(page, selector, text, timeout = 60_000) {
  await page.waitForFunction(([selector, text]) => document.querySelector(selector)?.textContent?.trim() === text, [selector, text], { timeout });
}

test("a message sent from the form goes from scheduled to delivered on its page without reloading", async () => {
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/messages");
  await visit(page, "/console/messages", "messages");
  await page.getByLabel("Send to (user id)").fill(bob.id);
  await page.getByLabel("Content", { exact: true }).fill("see you in twenty seconds");
  await page.getByLabel("Delay in seconds (or a time below; neither: now)").fill("20");
  await page.getByLabel("Metadata (a JSON object of strings, optional)").fill('{"order": "1234"}');
  await Promise.all([page.waitForURL(/\/console\/messages\/msg_/), page.getByRole("button", { name: "Send" }).click()]);
  const id = new URL(page.url()).pathname.split("/").pop();
  assert.equal(await page.locator("#message-status").textContent(), "scheduled");
  assert.equal(await page.locator("#message-content").textContent(), "see you in twenty seconds");
  assert.equal(await page.locator("#message-metadata dd").textContent(), "1234");
  // The page is not reloaded: a mark set on the window now survives until delivery.
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  await waitForText(page, "#message-status", "delivered");
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the page reloaded");
  assert.match(await page.locator("#message-delivered").textContent(), /UTC$/);
  assert.equal(await page.locator("#actions").isHidden(), true, "the changes are still offered");
  // The timeline grew live with the attempt, naming the plugins that decided.
  const timeline = await page.locator("#timeline").textContent();
  assert.match(timeline, /standard-delay/);
  assert.match(timeline, /sha256:[0-9a-f]{64}/);
  assert.match(timeline, /delivering → delivered/);
  assert.match(timeline, /attempt 1/);
  await visit(page, `/console/messages/${id}`, "message-delivered");
  assertClean(page);
});

test("a waiting message can be rescheduled and cancelled; the problem of a bad time is shown next to it", async () => {
  const message = await send({ delay_seconds: 3600 });
  const page = await newPage(browser);
  page.acceptConfirms = true;
  await signIn(page, "admin", undefined, `/console/messages/${message.id}`);
  await visit(page, `/console/messages/${message.id}`, "message-scheduled");
  // A time the delay policy refuses: its reason is shown in the form, nothing changes.
  await page.getByLabel("New delivery time (your browser's time zone)").fill("2999-01-01T10:00:00");
  await page.getByRole("button", { name: "Reschedule" }).click();
  const refused = page.locator("#reschedule .problem");
  await refused.waitFor();
  assert.match(await refused.textContent(), /max_delay/);
  assert.equal((await api(adminToken, "GET", `/messages/${message.id}`)).deliver_at, message.deliver_at);
  // Two hours from now, in the browser's time zone as the control takes it.
  const later = await page.evaluate(() => {
    const at = new Date(Date.now() + 2 * 3600 * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}:00`;
  });
  await page.getByLabel("New delivery time (your browser's time zone)").fill(later);
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Reschedule" }).click()]);
  const rescheduled = await api(adminToken, "GET", `/messages/${message.id}`);
  assert.equal(rescheduled.status, "scheduled");
  assert.ok(rescheduled.deliver_at > message.deliver_at, JSON.stringify(rescheduled));
  assert.equal(await page.locator("#message-due time").getAttribute("datetime"), rescheduled.deliver_at);
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Cancel the message" }).click()]);
  assert.equal(await page.locator("#message-status").textContent(), "cancelled");
  assert.equal(await page.locator("#actions").count(), 0);
  assert.equal((await api(adminToken, "GET", `/messages/${message.id}/status`)).status, "cancelled");
  assertClean(page);
});

test("a message cancelled elsewhere: the page shows it without reloading and stops offering changes", async () => {
  const message = await send({ delay_seconds: 3600 });
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, `/console/messages/${message.id}`);
  assert.equal(await page.locator("#actions").isVisible(), true);
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  await api(adminToken, "DELETE", `/messages/${message.id}`);
  await waitForText(page, "#message-status", "cancelled");
  await page.locator("#actions").waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the page reloaded");
  assert.match(await page.locator("#timeline").textContent(), /scheduled → cancelled/);
  assertClean(page);
});

test("content and metadata are shown as text: the XSS content runs nothing", async () => {
  const message = await send({ content: XSS, metadata: { [XSS]: XSS }, delay_seconds: 3600 });
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, `/console/messages/${message.id}`);
  await visit(page, `/console/messages/${message.id}`, "message-xss");
  assert.equal(await page.locator("#message-content").textContent(), XSS);
  assert.equal(await page.locator("#message-metadata dt").textContent(), XSS);
  assert.equal(await page.locator("#message-metadata dd").textContent(), XSS);
  assert.equal(await page.locator("main img").count(), 0);
  await page.goto(`${base}/console/messages?box=all`);
  assert.equal(await page.locator(`a[href="/console/messages/${message.id}"]`).count(), 1);
  assert.ok((await page.locator("#messages").textContent()).includes(XSS));
  assert.equal(await page.locator("main img").count(), 0);
  assertClean(page);
});

test("filters are in the link, page by cursor, and malformed ones are shown next to their control", async () => {
  const carol = await member(adminToken, unique("carol"));
  const sent = [];
  for (let index = 0; index < 53; index += 1) {
    sent.push(await api(adminToken, "POST", "/messages", { recipient_id: carol.id, content: `paged ${index}`, delay_seconds: 7200 }));
  }
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/messages");
  // Filtering through the form puts every filter in the URL.
  await page.getByLabel("Box").selectOption("sent");
  await page.getByLabel("Status").selectOption("scheduled");
  await page.getByLabel("Recipient (user id)").fill(carol.id);
  await Promise.all([page.waitForURL(/recipient=/), page.getByRole("button", { name: "Filter" }).click()]);
  const url = new URL(page.url());
  assert.equal(url.searchParams.get("box"), "sent");
  assert.equal(url.searchParams.get("status"), "scheduled");
  assert.equal(url.searchParams.get("recipient"), carol.id);
  const firstPage = await page.locator("#messages tbody tr").count();
  assert.equal(firstPage, 50);
  assert.ok((await page.locator("#messages").textContent()).includes("paged 52"));
  await Promise.all([page.waitForURL(/cursor=/), page.getByRole("link", { name: "Older" }).click()]);
  assert.equal(await page.locator("#messages tbody tr").count(), 3);
  const older = await page.locator("#messages").textContent();
  assert.ok(older.includes("paged 0") && older.includes("paged 2") && !older.includes("paged 3"), older);
  assert.equal(await page.getByRole("link", { name: "Older" }).count(), 0);
  assert.equal(new URL(page.url()).searchParams.get("recipient"), carol.id, "the next page kept the filters");
  await visit(page, new URL(page.url()).pathname + new URL(page.url()).search, "messages-older");

  // A period that ends before the messages were created shows none of them; one that holds
  // them shows them.
  const created = sent[0].created_at.slice(0, 19);
  await page.goto(`${base}/console/messages?box=sent&recipient=${carol.id}&to=${encodeURIComponent(created)}&from=2020-01-01T00:00`);
  assert.equal(await page.locator("#messages tbody tr").count(), 0);
  await page.goto(`${base}/console/messages?box=sent&recipient=${carol.id}&from=${encodeURIComponent(created)}&to=2999-01-01T00:00`);
  assert.equal(await page.locator("#messages tbody tr").count(), 50);

  // Malformed filters: the page still answers, with each problem next to its control.
  const answer = await page.goto(`${base}/console/messages?status=lost&recipient=bob&from=yesterday&box=all&cursor=zzz`);
  assert.equal(answer.status(), 200);
  assert.equal(await page.locator("#filter-status-problem").textContent(), '"lost" is not a status.');
  assert.match(await page.locator("#filter-recipient-problem").textContent(), /is not a valid user id/);
  assert.match(await page.locator("#filter-from-problem").textContent(), /"yesterday" is not a time/);
  assert.equal(await page.getByLabel("Status").getAttribute("aria-invalid"), "true");
  await page.goto(`${base}/console/messages?from=2026-01-02T00:00&to=2026-01-01T00:00`);
  assert.equal(await page.locator("#filter-to-problem").textContent(), "The end of the period must be later than its start.");
  assertClean(page);
});

test("the API's listing takes the same filters", async () => {
  const dave = await member(adminToken, unique("dave"));
  const message = await api(adminToken, "POST", "/messages", { recipient_id: dave.id, content: "for dave", delay_seconds: 7200 });
  const listed = await api(adminToken, "GET", `/messages?box=all&recipient_id=${dave.id}&created_from=${encodeURIComponent(message.created_at)}`);
  assert.deepEqual(
    listed.items.map((item) => item.id),
    [message.id],
  );
  const none = await api(adminToken, "GET", `/messages?box=all&recipient_id=${dave.id}&created_to=${encodeURIComponent(message.created_at)}`);
  assert.deepEqual(none.items, []);
  // A period that ends before it starts is empty.
  const backwards = await api(adminToken, "GET", `/messages?box=all&recipient_id=${dave.id}&created_from=2026-01-02T00:00:00Z&created_to=2026-01-01T00:00:00Z`);
  assert.deepEqual(backwards.items, []);
  for (const [query, field] of [
    ["recipient_id=bob", "recipient_id"],
    ["created_from=yesterday", "created_from"],
  ]) {
    const answer = await fetch(`${base}/messages?${query}`, { headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(answer.status, 400, query);
    const problem = await answer.json();
    assert.equal(problem.code, "invalid_query", query);
    assert.equal(problem.field, field, query);
  }
});

test("a member sees their own messages only; another's message and the dead letters are the 404 page", async () => {
  const erin = await member(adminToken, unique("erin"));
  const forBob = await send({ delay_seconds: 3600, content: "not for erin" });
  const page = await newPage(browser);
  await signIn(page, erin.username, erin.password, "/console/messages");
  await visit(page, "/console/messages", "messages-member");
  assert.equal(await page.locator("#filter-box option[value=all]").count(), 0);
  assert.equal(await page.getByRole("link", { name: "Dead letters" }).count(), 0);
  for (const path of [`/console/messages/${forBob.id}`, "/console/messages/msg_01JZZZZZZZZZZZZZZZZZZZZZZZ", "/console/messages/not-an-id", "/console/dead-letters"]) {
    const answer = await page.goto(`${base}${path}`);
    assert.equal(answer.status(), 404, path);
    assert.equal(await page.locator("h1").textContent(), "Not found", path);
  }
  // Asking for the whole tenant is refused next to the box, and shows the member's own.
  await page.goto(`${base}/console/messages?box=all`);
  assert.equal(await page.locator("#filter-box-problem").textContent(), "Only an admin of your tenant may see all of its messages.");
  assertClean(page);

  // Bob, its recipient, sees it once delivered, without its history, and marks it read.
  await api(adminToken, "POST", `/messages/${forBob.id}/deliver-now`);
  for (let tries = 0; tries < 100; tries += 1) {
    if ((await api(adminToken, "GET", `/messages/${forBob.id}/status`)).status === "delivered") break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const bobPage = await newPage(browser);
  await signIn(bobPage, bob.username, bob.password, `/console/messages/${forBob.id}`);
  await visit(bobPage, `/console/messages/${forBob.id}`, "message-recipient");
  assert.match(await bobPage.locator("main").textContent(), /Its history is for its sender and the tenant's admins/);
  assert.equal(await bobPage.locator("#actions").count(), 0);
  await Promise.all([bobPage.waitForEvent("load"), bobPage.getByRole("button", { name: "Mark read" }).click()]);
  assert.equal(await bobPage.locator("#message-status").textContent(), "read");
  assertClean(bobPage);
});

test("dead letters: listed, inspected, replayed one by one with progress, and deleted", async () => {
  // A webhook message to a user without a webhook endpoint fails for good at once.
  const frank = await member(adminToken, unique("frank"));
  const dead = [];
  for (let index = 0; index < 3; index += 1) {
    dead.push(await api(adminToken, "POST", "/messages", { recipient_id: frank.id, content: `dead ${index}`, channel: "webhook" }));
  }
  for (const message of dead) {
    for (let tries = 0; tries < 100; tries += 1) {
      if ((await api(adminToken, "GET", `/messages/${message.id}/status`)).status === "dead") break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  const page = await newPage(browser);
  page.acceptConfirms = true;
  await signIn(page, "admin", undefined, `/console/dead-letters?recipient=${frank.id}`);
  await visit(page, `/console/dead-letters?recipient=${frank.id}`, "dead-letters");
  assert.equal(await page.locator("#dead-letters tbody tr").count(), 3);
  assert.match(await page.locator("#dead-letters").textContent(), /has no webhook endpoint/);

  // Replaying with nothing selected says so.
  await page.getByRole("button", { name: "Replay the selected" }).click();
  assert.equal(await page.locator("#replay-count").textContent(), "Select at least one dead letter first.");

  // Two selected: replayed with the progress bar and the count.
  await page.getByLabel(`Select ${dead[0].id}`).check();
  await page.getByLabel(`Select ${dead[1].id}`).check();
  assert.equal(await page.locator("#replay-count").textContent(), "2 selected.");
  await page.getByRole("button", { name: "Replay the selected" }).click();
  await page.waitForFunction(() => document.querySelector("#replay-count").textContent.startsWith("Replayed 2 of 2."), null, { timeout: 20_000 });
  assert.equal(await page.locator("#replay-progress").evaluate((bar) => bar.value), 2);
  for (const message of dead.slice(0, 2)) {
    const events = (await api(adminToken, "GET", `/messages/${message.id}/events`)).items;
    assert.ok(events.some((event) => event.result === "replayed from the dead letters"), JSON.stringify(events));
  }

  // Inspect: the row links to the message's page, which offers a replay too.
  await Promise.all([page.waitForURL(/\/console\/messages\/msg_/), page.getByRole("link", { name: dead[2].id }).click()]);
  assert.equal(await page.locator("#message-status").textContent(), "dead");
  assert.equal(await page.getByRole("button", { name: "Replay it now" }).count(), 1);

  // Delete the third from the list.
  await page.goto(`${base}/console/dead-letters?recipient=${frank.id}`);
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: `Delete ${dead[2].id}` }).click()]);
  assert.equal(await page.locator(`tr[data-row="${dead[2].id}"]`).count(), 0);
  const gone = await fetch(`${base}/messages/${dead[2].id}`, { headers: { authorization: `Bearer ${adminToken}` } });
  assert.equal(gone.status, 404);

  // A malformed recipient filter is shown next to its control.
  await page.goto(`${base}/console/dead-letters?recipient=frank`);
  assert.match(await page.locator("#filter-recipient-problem").textContent(), /is not a valid user id/);
  assertClean(page);
});
