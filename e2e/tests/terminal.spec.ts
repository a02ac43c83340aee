import { test, expect, signIn } from "../fixtures";
import { startSSHD, stopSSHD, requireThrowaway } from "../sshd";
import { createStackWithServer, uploadAndAttachKey, screenText } from "../steps";
import type { Page } from "@playwright/test";

test.afterAll(stopSSHD);

async function termSize(page: Page): Promise<string> {
  return page.evaluate(() => {
    const t = (window as any).shellgateTerminal;
    return `${t.rows} ${t.cols}`;
  });
}

test("open a terminal from the stack page, run a command, resize, and exit", async ({ page, sg }) => {
  const sshd = await startSSHD();
  requireThrowaway(sshd);
  await signIn(page, sg);

  // A stack with the test sshd, its host key confirmed.
  const stackURL = await createStackWithServer(page, sg.url, sshd, "staging");

  // The admin's private key (the one sshd authorizes) uploaded on the keys page,
  // then attached to the stack.
  await uploadAndAttachKey(page, sg.url, stackURL, sshd.clientKeyPath, "e2e_term");

  // Open terminal: the status line says connected, the shell answers.
  await page.goto(stackURL);
  await page.locator('tr[data-server="web-1"]').getByRole("link", { name: "Open terminal" }).click();
  await expect(page.getByTestId("server-name")).toHaveText("web-1");
  await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
  await page.locator("#terminal").click();
  await page.keyboard.type("echo $((6*7))\n");
  await expect.poll(() => screenText(page)).toMatch(/^42$/m);

  // stty size agrees with the browser's terminal, before and after a resize.
  await page.keyboard.type("stty size\n");
  const before = await termSize(page);
  await expect.poll(() => screenText(page)).toContain(before);
  await page.setViewportSize({ width: 820, height: 480 });
  await expect.poll(() => termSize(page)).not.toBe(before);
  const after = await termSize(page);
  await page.keyboard.type("clear; stty size\n");
  await expect.poll(() => screenText(page), { timeout: 10_000 }).toContain(after);
  await page.screenshot({ path: "test-results/terminal.png" });

  // exit: the closed message names the server and the exit status.
  await page.keyboard.type("exit 7\n");
  await expect(page.getByTestId("closed-message")).toHaveText("Connection to web-1 closed. (exit status 7)");
  await expect(page.getByTestId("term-state")).toHaveText("Closed");
  await expect(page.getByRole("button", { name: "Open a new session" })).toBeVisible();
  await page.screenshot({ path: "test-results/terminal-closed.png" });

  // The session is on the audit page.
  await page.goto(sg.url + "/audit?kind=terminal.");
  // Other test files share this shellgate: pick this test's session by its server.
  const end = page.locator('tr[data-event="terminal.end"]').filter({ hasText: "web-1" });
  await expect(end).toHaveCount(1);
  await expect(end).toContainText("exit status 7"); // the What column reads as words
});
