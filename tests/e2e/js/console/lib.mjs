// What the console's browser tests share: Debian's chromium driven by playwright-core, a
// signed-in page, the API for setting things up, axe-core, and screenshots at 390 and 1280 px.
//
// The Rust test (tests/e2e/console.rs) starts a real `dms serve` and runs a file of these with
// DMS_URL, DMS_ADMIN_PASSWORD and DMS_SCREENSHOTS set.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

export const base = process.env.DMS_URL ?? "http://127.0.0.1:3000";
export const adminPassword = process.env.DMS_ADMIN_PASSWORD ?? "";
const screenshots = process.env.DMS_SCREENSHOTS ?? "";
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** The browser: Debian's chromium (CHROMIUM overrides the path), headless. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/**
 * A new page 1280 px wide. Everything that should never happen is recorded on it: dialogs
 * (an injected `alert`), page errors, Content-Security-Policy violations.
 */
export async function newPage(browser, { width = 1280 } = {}) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const page = await context.newPage();
  page.incidents = [];
  page.on("dialog", async (dialog) => {
    if (dialog.type() === "confirm" && page.acceptConfirms) {
      await dialog.accept();
      return;
    }
    page.incidents.push(`dialog ${dialog.type()}: ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on("pageerror", (error) => page.incidents.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !/status of 4\d\d/.test(message.text())) {
      page.incidents.push(`console error: ${message.text()}`);
    }
  });
  return page;
}

/** Signs in through the form and waits for the page it leads to. */
export async function signIn(page, username = "admin", password = adminPassword, next = "") {
  await page.goto(`${base}/console/login${next ? `?next=${encodeURIComponent(next)}` : ""}`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await Promise.all([page.waitForURL((url) => !url.pathname.startsWith("/console/login")), page.getByRole("button", { name: "Sign in" }).click()]);
}

/** The API with a bearer token, for setting things up beside the browser. */
export async function api(token, method, path, body) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const answer = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await answer.text();
  const data = text ? JSON.parse(text) : null;
  if (!answer.ok) throw new Error(`${method} ${path}: ${answer.status} ${text}`);
  return data;
}

/** Logs in over the API: the access token. */
export async function login(username = "admin", password = adminPassword) {
  return (await api(null, "POST", "/auth/login", { username, password })).token;
}

/** A new user of the admin's tenant: `{id, token}`. */
export async function member(adminToken, username, role = "member") {
  const password = `${username}-password`;
  const user = await api(adminToken, "POST", "/users", { username, password, role });
  return { id: user.id, username, password, token: await login(username, password) };
}

/** Fails on any serious or critical accessibility violation axe-core finds on the page. */
export async function checkAccessibility(page, label) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((violation) => ["serious", "critical"].includes(violation.impact));
  assert.deepEqual(
    bad.map((violation) => `${violation.id} (${violation.impact}): ${violation.help} at ${violation.nodes.map((node) => node.target.join(" ")).join(", ")}`),
    [],
    `accessibility violations on ${label}`,
  );
}

/** Screenshots of the page at 390 and 1280 px, into DMS_SCREENSHOTS; checks nothing but the
 * page body scrolls sideways at 390 px. */
export async function screenshots390And1280(page, name) {
  for (const width of [390, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `${name} scrolls sideways by ${overflow} px at ${width} px wide`);
    if (screenshots) {
      mkdirSync(screenshots, { recursive: true });
      await page.screenshot({ path: `${screenshots}/${name}-${width}.png`, fullPage: true });
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** Opens `path`, checks it with axe-core, and writes its screenshots as `name`. */
export async function visit(page, path, name) {
  const answer = await page.goto(`${base}${path}`);
  assert.equal(answer.status(), 200, `${path} answered ${answer.status()}`);
  await checkAccessibility(page, path);
  await screenshots390And1280(page, name);
  return answer;
}

/** Asserts nothing that should never happen happened on the page. */
export function assertClean(page) {
  assert.deepEqual(page.incidents, [], "the page had incidents");
}

/** A unique name for this run. */
export function unique(prefix) {
  return `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}
