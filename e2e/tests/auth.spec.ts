import { test, expect, signIn, ADMIN_PASSWORD } from "../fixtures";

test("sign in, see the dashboard, sign out, and the old cookie is refused", async ({ page, sg, browser }) => {
  await page.goto(sg.url + "/");
  await expect(page).toHaveURL(/\/login\?next=/);
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();

  // A wrong password gets the one generic message.
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("login-error")).toHaveText("Wrong username or password.");

  await signIn(page, sg);
  await expect(page).toHaveURL(/\/stacks$/);
  const nav = page.getByRole("navigation", { name: "Main navigation" });
  for (const item of ["Stacks", "SSH keys", "Audit", "Admin"]) {
    await expect(nav.getByRole("link", { name: item })).toBeVisible();
  }
  await page.screenshot({ path: "test-results/dashboard.png", fullPage: true });

  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "sg_session");
  expect(session, "session cookie").toBeTruthy();
  expect(session!.httpOnly).toBe(true);
  expect(session!.sameSite).toBe("Lax");

  // Sign out through the user menu, from the keyboard.
  await page.getByLabel("Account menu").click();
  await page.getByRole("menuitem", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);

  // A second browser context replays the cookie copied before sign-out: refused.
  const thief = await browser.newContext();
  await thief.addCookies([session!]);
  const stolen = await thief.newPage();
  await stolen.goto(sg.url + "/stacks");
  await expect(stolen).toHaveURL(/\/login/);
  await expect(stolen.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await thief.close();
});

test("an admin adds a member who signs in with the generated password", async ({ page, sg, browser }) => {
  await signIn(page, sg);
  await page.getByRole("link", { name: "Admin" }).click();
  await page.getByLabel("Username").fill("dana");
  await page.getByRole("button", { name: "Add user" }).click();
  const generated = (await page.getByTestId("new-password").locator("code").textContent())!.trim();
  expect(generated.length).toBeGreaterThanOrEqual(16);
  await expect(page.locator('tr[data-user="dana"]')).toContainText("member");
  await page.screenshot({ path: "test-results/admin-users.png", fullPage: true });

  const other = await browser.newContext();
  const dana = await other.newPage();
  await signIn(dana, sg, "dana", generated);
  await expect(dana.getByRole("link", { name: "Admin" })).toHaveCount(0);
  await other.close();
});

// Open redirect after sign-in (issue 12): a link to the sign-in page whose next
// parameter Chromium would turn into another site — a tab it strips, a backslash it
// reads as a slash, a scheme-relative path — must land on shellgate after a real
// sign-in in the real browser.
test("sign-in links cannot redirect to another site", async ({ sg, browser }) => {
  for (const next of ["/%09/evil.tld", "/%5Cevil.tld", "//evil.tld", "/%0A/evil.tld", "%2F%2Fevil.tld", "https://evil.tld/"]) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(sg.url + "/login?next=" + next);
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(ADMIN_PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByTestId("user-name")).toHaveText("admin");
    expect(new URL(page.url()).origin, `next=${next}`).toBe(new URL(sg.url).origin);
    await ctx.close();
  }
});
