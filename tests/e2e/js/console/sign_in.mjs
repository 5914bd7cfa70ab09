// Signing in and out of the console: cookies, the session list, the anti-forgery rule, the
// security headers, and the 404 page.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, assertClean, base, checkAccessibility, launch, login, member, newPage, screenshots390And1280, signIn, unique, visit } from "./lib.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("the sign-in page is accessible and a wrong password shows the problem next to it", async () => {
  const page = await newPage(browser);
  const answer = await page.goto(`${base}/console/login`);
  assert.equal(answer.status(), 200);
  const csp = answer.headers()["content-security-policy"];
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  await checkAccessibility(page, "/console/login");
  await screenshots390And1280(page, "sign-in");
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForSelector("#login-problem");
  assert.equal(await page.locator("#login-problem").textContent(), "the username or the password is wrong");
  assert.equal(await page.getByLabel("Password").getAttribute("aria-describedby"), "login-problem");
  assertClean(page);
});

test("signing in sets HttpOnly strict cookies, lists the session, and signing out ends it", async () => {
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/sessions");
  assert.equal(new URL(page.url()).pathname, "/console/sessions");
  const cookies = await page.context().cookies();
  const session = cookies.find((cookie) => cookie.name === "dms_session");
  const refresh = cookies.find((cookie) => cookie.name === "dms_refresh");
  const csrf = cookies.find((cookie) => cookie.name === "dms_csrf");
  for (const cookie of [session, refresh]) {
    assert.equal(cookie.httpOnly, true, cookie.name);
    assert.equal(cookie.sameSite, "Strict", cookie.name);
  }
  assert.equal(refresh.path, "/console/");
  assert.equal(csrf.httpOnly, false);
  assert.equal(await page.evaluate(() => document.cookie.includes("dms_session")), false, "a script can read the session");
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  // The console's session is one of the admin's sessions, beside an API login.
  const token = await login();
  const sessions = (await api(token, "GET", "/auth/sessions")).items;
  assert.ok(sessions.some((entry) => /Chrome/.test(entry.user_agent ?? "")), JSON.stringify(sessions));
  await visit(page, "/console/sessions", "sessions");
  assert.equal(await page.locator('tr[aria-current="true"]').count(), 1);

  // The API takes the cookie for reads, and for changes only with the anti-forgery header.
  const me = await page.evaluate(async () => (await fetch("/users/me")).json());
  assert.equal(me.username, "admin");
  const forged = await page.evaluate(async () => {
    const answer = await fetch("/users", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "forged", password: "forged-password" }) });
    return { status: answer.status, body: await answer.json() };
  });
  assert.equal(forged.status, 403);
  assert.equal(forged.body.code, "csrf_rejected");
  const listed = await api(token, "GET", "/users?limit=100");
  assert.ok(!listed.items.some((user) => user.username === "forged"), "the forged request created a user");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL((url) => url.pathname === "/console/login");
  assert.equal((await page.context().cookies()).some((cookie) => cookie.name === "dms_session"), false);
  const after = (await api(token, "GET", "/auth/sessions")).items;
  assert.equal(after.length, sessions.length - 1, "signing out ended the console's session");
  const answer = await page.goto(`${base}/console/sessions`);
  assert.equal(new URL(page.url()).pathname, "/console/login", `after sign-out: ${answer.status()}`);
  assertClean(page);
});

test("an expired access cookie is refreshed on the next page", async () => {
  const page = await newPage(browser);
  await signIn(page);
  const context = page.context();
  const before = (await context.cookies()).find((cookie) => cookie.name === "dms_refresh").value;
  // The access token's cookie runs out (the browser drops it); the refresh cookie remains.
  await context.clearCookies({ name: "dms_session" });
  await visit(page, "/console/sessions", "sessions-after-refresh");
  const cookies = await context.cookies();
  assert.ok(cookies.find((cookie) => cookie.name === "dms_session"));
  assert.notEqual(cookies.find((cookie) => cookie.name === "dms_refresh").value, before, "the refresh token rotated");
  assertClean(page);
});

test("a member sees no admin page and the 404 page for unknown ones", async () => {
  const admin = await login();
  const user = await member(admin, unique("member"));
  const page = await newPage(browser);
  await signIn(page, user.username, user.password);
  assert.equal(await page.getByRole("link", { name: "Users" }).count(), 0);
  const answer = await page.goto(`${base}/console/users`);
  assert.equal(answer.status(), 404);
  assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Not found");
  await checkAccessibility(page, "404");
  await screenshots390And1280(page, "not-found");
  assert.equal((await page.goto(`${base}/console/no-such-page`)).status(), 404);
  assertClean(page);
});

test("an admin adds a user, and a refused one shows the problem next to its field", async () => {
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/users");
  await visit(page, "/console/users", "users");
  const name = unique("added");
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password (8 characters or more)").fill("short");
  await page.getByRole("button", { name: "Add user" }).click();
  const problem = page.locator("#create-user .problem");
  await problem.waitFor();
  assert.match(await problem.textContent(), /8/);
  assert.equal(await page.getByLabel("Password (8 characters or more)").getAttribute("aria-invalid"), "true");
  await page.getByLabel("Password (8 characters or more)").fill("a-long-enough-password");
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Add user" }).click()]);
  await page.getByRole("cell", { name, exact: true }).waitFor();
  page.acceptConfirms = true;
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: `Delete ${name}` }).click()]);
  assert.equal(await page.getByRole("cell", { name, exact: true }).count(), 0);
  // A link with a malformed query is the error page, naming what is wrong.
  const bad = await page.goto(`${base}/console/users?offset=many`);
  assert.equal(bad.status(), 400);
  assert.match(await page.locator(".problem-detail").textContent(), /offset/);
  assert.equal(await page.getByRole("link", { name: "Users" }).count(), 1, "the error page keeps the navigation");
  assertClean(page);
});

test("an admin sees a user's sessions and ends one", async () => {
  const admin = await login();
  const user = await member(admin, unique("signedin"));
  assert.equal((await api(user.token, "GET", "/users/me")).username, user.username);
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, `/console/users/${user.id}`);
  await visit(page, `/console/users/${user.id}`, "user");
  const end = page.getByRole("button", { name: /^End the session/ });
  assert.equal(await end.count(), 1);
  page.acceptConfirms = true;
  await Promise.all([page.waitForEvent("load"), end.click()]);
  await page.getByText("No live session").waitFor();
  const answer = await fetch(`${base}/users/me`, { headers: { authorization: `Bearer ${user.token}` } });
  assert.equal(answer.status, 401);
  assert.equal((await answer.json()).code, "session_ended");
  // Another tenant's user, or no user at all, is the 404 page.
  assert.equal((await page.goto(`${base}/console/users/usr_01ARZ3NDEKTSV4RRFFQ69G5FAV`)).status(), 404);
  assert.equal((await page.goto(`${base}/console/users/not-an-id`)).status(), 404);
  assertClean(page);
});

test("usernames and display names are shown as text, never as HTML", async () => {
  const admin = await login();
  const name = unique("x<b>y</b>");
  const xss = `<img src=x onerror=alert(1)> ${name}`;
  await api(admin, "POST", "/users", { username: name, password: "a-long-enough-password", display_name: xss });
  const page = await newPage(browser);
  await signIn(page, "admin", undefined, "/console/users");
  await page.goto(`${base}/console/users?offset=0`);
  await page.getByRole("cell", { name: xss, exact: true }).waitFor();
  await page.getByRole("link", { name, exact: true }).waitFor();
  assert.equal(await page.locator("main img").count(), 0);
  assert.equal(await page.locator("main b").count(), 0);
  assertClean(page);
});
