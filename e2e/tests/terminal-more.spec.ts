import { test, expect, signIn, startShellgate, stopShellgate } from "../fixtures";
import { startSSHD, stopSSHD, requireThrowaway, type SSHD } from "../sshd";
import { createStackWithServer } from "../steps";
import type { Page } from "@playwright/test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

test.afterAll(stopSSHD);

// One sshd for the file, with password login on; no key is attached to the stack, so
// what the person types in the prompt dialog is the only way in.
let sshd: SSHD;
let stackURL = "";

async function screenLines(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const buf = (window as any).shellgateTerminal.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i)?.translateToString(true) ?? "");
    return lines;
  });
}

// passwordServer creates (once) a stack with the test sshd, host key pinned.
async function passwordServer(page: Page, url: string): Promise<string> {
  if (stackURL) return stackURL;
  sshd = await startSSHD({ password: true });
  requireThrowaway(sshd);
  stackURL = await createStackWithServer(page, url, sshd, "pw-stack", "pw-1");
  return stackURL;
}

// openWithPassword opens the terminal and answers the password prompt.
async function openWithPassword(page: Page, url: string): Promise<void> {
  await page.goto(await passwordServer(page, url));
  await page.locator('tr[data-server="pw-1"]').getByRole("link", { name: "Open terminal" }).click();
  const dialog = page.locator("#prompt-dialog");
  await expect(dialog).toBeVisible({ timeout: 30_000 });
  await expect(page.getByTestId("term-state")).toHaveText("Waiting for you");
  const input = dialog.locator('input[type="password"]');
  await expect(input).toHaveCount(1);
  await expect(dialog).toContainText(`${sshd.user}@pw-1's password`);
  await page.screenshot({ path: "test-results/terminal-password-prompt.png" });
  await input.fill(sshd.password!);
  await dialog.getByRole("button", { name: "Continue" }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
}

test("a server that wants a password: the prompt dialog asks, the shell opens", async ({ page, sg }) => {
  await signIn(page, sg);
  await openWithPassword(page, sg.url);
  await page.locator("#terminal").click();
  await page.keyboard.type("echo $((6*7))\n");
  await expect.poll(async () => (await screenLines(page)).join("\n")).toMatch(/^42$/m);
  await page.keyboard.type("exit\n");
  await expect(page.getByTestId("term-state")).toHaveText("Closed");
});

test("the socket drops mid-output: the page reconnects and resumes without a gap", async ({ page, sg }) => {
  await signIn(page, sg);
  await openWithPassword(page, sg.url);
  // Every state the status line shows, and every line feed xterm.js parses from now on.
  await page.evaluate(() => {
    const w = window as any;
    w.__states = [];
    w.__lineFeeds = 0;
    const el = document.querySelector('[data-testid="term-state"]')!;
    new MutationObserver(() => w.__states.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
    w.shellgateTerminal.onLineFeed(() => w.__lineFeeds++);
  });
  await page.locator("#terminal").click();
  await page.keyboard.type("seq 1 200000\n");
  // Cut the socket while the numbers flow (the browser sees it close; the SSH
  // session on the server stays, detached).
  await expect.poll(() => page.evaluate(() => (window as any).__lineFeeds), { timeout: 20_000 }).toBeGreaterThan(2000);
  const before = await page.evaluate(() => (window as any).__lineFeeds);
  expect(before).toBeLessThan(190_000); // still mid-output
  await page.evaluate(() => (window as any).shellgateConnection.ws.close());
  await expect.poll(() => page.evaluate(() => (window as any).__states as string[])).toContain("Reconnecting…");
  await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
  // The output ends at 200000, the last lines consecutive, and exactly one line feed
  // per number (plus the command's own): nothing lost, nothing repeated.
  await expect.poll(async () => (await screenLines(page)).filter((l) => l.trim() !== "").slice(-2).join("|"), { timeout: 60_000 })
    .toMatch(/^200000\|/);
  const lines = await screenLines(page);
  const nums = lines.filter((l) => /^\d+$/.test(l)).map(Number);
  expect(nums.length).toBeGreaterThan(5000);
  expect(nums[nums.length - 1]).toBe(200000);
  for (let i = 1; i < nums.length; i++) {
    if (nums[i] !== nums[i - 1] + 1) throw new Error(`gap or repeat at buffer line ${i}: ${nums[i - 1]} then ${nums[i]}`);
  }
  expect(await page.evaluate(() => (window as any).__lineFeeds)).toBe(200001);
  await page.screenshot({ path: "test-results/terminal-resumed.png" });
  await page.keyboard.type("exit\n");
  await expect(page.getByTestId("term-state")).toHaveText("Closed");
});

test("demo mode: a newcomer signs in and opens a shell with no server of their own", async ({ page }) => {
  // The demo shell is a login shell of this user: a home of its own keeps the machine's
  // profile scripts (slow, lock-taking ones on CI machines) out of the test.
  const home = mkdtempSync(join(tmpdir(), "sg-demo-home-"));
  const demo = await startShellgate({ SHELLGATE_DEMO: "true", HOME: home });
  try {
    await expect.poll(() => demo.output()).toContain("demo mode:"); // the WARN line, on stderr
    await signIn(page, demo);
    await page.goto(demo.url + "/stacks");
    await page.getByRole("link", { name: "demo", exact: true }).click();
    await page.locator('tr[data-server="demo"]').getByRole("link", { name: "Open terminal" }).click();
    await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
    await page.locator("#terminal").click();
    await page.keyboard.type("echo $((6*7))\n");
    await expect.poll(async () => (await screenLines(page)).join("\n")).toMatch(/^42$/m);
    await page.screenshot({ path: "test-results/terminal-demo.png" });
    await page.keyboard.type("exit\n");
    await expect(page.getByTestId("term-state")).toHaveText("Closed");

    // An admin turns on "Debug SSH connections": the next connection's ssh -v style
    // steps appear in the stack log, tab debug.
    await page.locator("a.term-back").click();
    await expect(page).toHaveURL(/\/stacks\/\d+$/);
    const stackURL = page.url().replace(/\?.*$/, "");
    await page.goto(stackURL + "?tab=settings");
    await page.getByLabel("Debug SSH connections").check();
    await page.getByRole("button", { name: "Save" }).first().click();
    await expect(page.getByText("Settings saved.")).toBeVisible();
    await page.screenshot({ path: "test-results/stack-settings-debug.png", fullPage: true });
    await page.goto(stackURL);
    await page.locator('tr[data-server="demo"]').getByRole("link", { name: "Open terminal" }).click();
    await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
    await page.goto(stackURL + "?tab=log&log=debug");
    await expect(page.getByTestId("stack-log")).toContainText("Authenticated to demo");
    await page.screenshot({ path: "test-results/stack-log-debug.png", fullPage: true });
  } finally {
    await stopShellgate(demo);
    rmSync(home, { recursive: true, force: true });
  }
});
