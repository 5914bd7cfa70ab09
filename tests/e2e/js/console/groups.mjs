// Groups, schedules and flow control: create a group and add a member (a bad id's problem next
// to the field); create a schedule (bad ones' problems next to their fields), see its next
// occurrences, pause it; put a flow-control limit and see a bad one's problem next to its
// field; a member gets the 404 page for flow control.

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

test("an admin creates a group and adds a member; a bad member id is refused next to its field", async () => {
  const token = await login();
  const someone = await member(token, unique("grouped"));
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/groups");
  await visit(page, "/console/groups", "groups");
  const name = unique("on-call <b>");
  await page.getByLabel("Name").fill(name);
  await Promise.all([page.waitForURL(/\/console\/groups\/grp_/), page.getByRole("button", { name: "Create group" }).click()]);
  const path = new URL(page.url()).pathname;
  await visit(page, path, "group");
  assert.equal(await page.locator("h1").textContent(), `Group ${name}`);

  await page.getByLabel(/User ids/).fill("usr_00000000000000000000000000");
  await page.getByRole("button", { name: "Add", exact: true }).click();
  const problem = page.locator("#add-members-problem-user_ids");
  await problem.waitFor({ timeout: 10_000 });
  assert.ok((await problem.textContent()).length > 0);
  assert.equal(await page.getByLabel(/User ids/).getAttribute("aria-invalid"), "true");
  assert.equal(await page.locator("#member-count").textContent(), "0");

  await page.getByLabel(/User ids/).fill(someone.id);
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Add", exact: true }).click()]);
  assert.equal(await page.locator("#member-count").textContent(), "1");
  assert.equal(await page.locator("#members td", { hasText: someone.username }).count(), 1);

  // A member sees the group and its members, without the forms.
  const viewer = await newPage(browser);
  await signIn(viewer, someone.username, someone.password, path);
  assert.equal(new URL(viewer.url()).pathname, path);
  assert.equal(await viewer.locator("#add-members").count(), 0);
  await viewer.goto(`${base}/console/groups`);
  assert.equal(await viewer.locator("#create-group").count(), 0);
  assert.equal(await viewer.getByRole("link", { name }).count(), 1);
  // Another tenant's or no group: the 404 page.
  const missing = await viewer.goto(`${base}/console/groups/grp_00000000000000000000000000`);
  assert.equal(missing.status(), 404);
  const malformed = await viewer.goto(`${base}/console/groups/not-an-id`);
  assert.equal(malformed.status(), 404);

  // The admin removes the member, then deletes the group.
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: `Remove ${someone.username} from the group` }).click()]);
  assert.equal(await page.locator("#member-count").textContent(), "0");
  page.acceptConfirms = true;
  await Promise.all([page.waitForURL((url) => url.pathname === "/console/groups"), page.getByRole("button", { name: "Delete group" }).click()]);
  assert.equal(await page.getByRole("link", { name }).count(), 0);
  assert.equal((await page.goto(`${base}${path}`)).status(), 404);
  assertClean(page);
  assertClean(viewer);
});

test("a schedule is created, shows its next occurrences and is paused; bad input is refused next to its field", async () => {
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/schedules");
  await visit(page, "/console/schedules", "schedules");
  await page.getByLabel(/Cron pattern/).fill("*/5 * * * *");
  await page.getByLabel(/Time zone/).fill("Mars/Olympus");
  await page.getByLabel("Content").fill("stand-up");
  await page.getByRole("button", { name: "Create schedule" }).click();
  await page.locator("#create-schedule-problem-timezone").waitFor({ timeout: 10_000 });
  assert.equal(await page.getByLabel(/Time zone/).getAttribute("aria-invalid"), "true");

  await page.getByLabel(/Time zone/).fill("Europe/Berlin");
  await page.getByLabel(/Recipient/).fill("usr_00000000000000000000000000");
  await page.getByRole("button", { name: "Create schedule" }).click();
  const recipientProblem = page.locator('[id="create-schedule-problem-message.recipient_id"]');
  await recipientProblem.waitFor({ timeout: 10_000 });
  assert.equal(await page.getByLabel(/Recipient/).getAttribute("aria-invalid"), "true");

  const me = await api(await login(), "GET", "/users/me");
  await page.getByLabel(/Recipient/).fill(me.id);
  await Promise.all([page.waitForURL(/\/console\/schedules\/sch_/), page.getByRole("button", { name: "Create schedule" }).click()]);
  const path = new URL(page.url()).pathname;
  await visit(page, path, "schedule");
  assert.equal(await page.locator("#occurrences li").count(), 10);
  const times = await page.locator("#occurrences time").evaluateAll((items) => items.map((item) => Date.parse(item.getAttribute("datetime"))));
  assert.ok(times.every((at, index) => index === 0 || at - times[index - 1] === 300_000), JSON.stringify(times));

  // The count is in the link.
  await page.getByLabel(/How many/).fill("3");
  await Promise.all([page.waitForURL(/count=3/), page.getByRole("button", { name: "Show" }).click()]);
  assert.equal(await page.locator("#occurrences li").count(), 3);
  const bad = await page.goto(`${base}${path}?count=0`);
  assert.ok([400, 422].includes(bad.status()), `count=0 answered ${bad.status()}`);
  assert.match(await page.locator("main").textContent(), /count must be a whole number between 1 and 100/);

  await page.goto(`${base}${path}`);
  assert.equal(await page.locator("#schedule-state").textContent(), "active");
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Pause" }).click()]);
  assert.equal(await page.locator("#schedule-state").textContent(), "paused");
  assert.equal(await page.getByRole("button", { name: "Resume" }).count(), 1);
  // A paused schedule still shows when it would run.
  assert.equal(await page.locator("#occurrences li").count(), 10);
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Resume" }).click()]);
  assert.equal(await page.locator("#schedule-state").textContent(), "active");
  page.acceptConfirms = true;
  await Promise.all([page.waitForURL((url) => url.pathname === "/console/schedules"), page.getByRole("button", { name: "Delete" }).click()]);
  assert.equal(await page.locator(`a[href="${path}"]`).count(), 0);
  assert.equal((await page.goto(`${base}${path}`)).status(), 404);
  assertClean(page);
});

test("an admin puts flow-control limits; a bad one is refused next to its field; a member gets the 404 page", async () => {
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/flow-control");
  await visit(page, "/console/flow-control", "flow-control");
  const key = `https://${unique("api")}.example.com/*`;
  await page.getByLabel("Pattern", { exact: true }).fill(key);
  await page.getByLabel(/Deliveries per period/).fill("0");
  await page.getByRole("button", { name: "Set limits" }).click();
  await page.locator("#put-limit-problem-rate").waitFor({ timeout: 10_000 });
  assert.equal(await page.getByLabel(/Deliveries per period/).getAttribute("aria-invalid"), "true");

  await page.getByLabel(/Deliveries per period/).fill("10");
  await page.getByLabel(/In flight at once/).fill("2");
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Set limits" }).click()]);
  const row = page.locator("#limits tr", { hasText: key });
  assert.equal(await row.count(), 1);
  assert.match(await row.textContent(), /10 per 1 s/);

  page.acceptConfirms = true;
  await Promise.all([page.waitForEvent("load"), row.getByRole("button", { name: `Remove the limits of ${key}` }).click()]);
  assert.equal(await page.locator("#limits tr", { hasText: key }).count(), 0);

  const token = await login();
  const someone = await member(token, unique("limited"));
  const viewer = await newPage(browser);
  await signIn(viewer, someone.username, someone.password);
  const answer = await viewer.goto(`${base}/console/flow-control`);
  assert.equal(answer.status(), 404);
  assert.equal(await viewer.getByRole("link", { name: "Flow control" }).count(), 0);
  assertClean(page);
  assertClean(viewer);
});
