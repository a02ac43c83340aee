import { test, expect, signIn, startShellgate, stopShellgate, type Shellgate } from "../fixtures";
import { startSSHD, stopSSHD, requireThrowaway } from "../sshd";
import { createStackWithServer, uploadAndAttachKey, screenText } from "../steps";
import { appendFileSync } from "node:fs";

// This file runs its own shellgate: its sessions, keys and audit events must not show
// up in the other files' pages, which share the worker's instance.
let sg: Shellgate;
test.beforeAll(async () => {
  sg = await startShellgate();
});
test.afterAll(async () => {
  await stopSSHD();
  await stopShellgate(sg);
});

test("a session is audited, recorded, played back, seen in the server's SSH log, and terminated live", async ({ page, context }) => {
  const sshd = await startSSHD();
  requireThrowaway(sshd);
  await signIn(page, sg);
  page.on("dialog", (d) => d.accept());

  // A stack with the test sshd, its host key confirmed.
  const stackURL = await createStackWithServer(page, sg.url, sshd, "audited");

  // shellgate reads the server's log as its gateway key: authorize it, as the
  // install command on the page would.
  const install = (await page.getByTestId("gateway-install").textContent()) ?? "";
  const gatewayLine = install.match(/echo '([^']+)'/)?.[1];
  expect(gatewayLine).toMatch(/^ssh-ed25519 \S+ shellgate-gateway$/);
  appendFileSync(sshd.authorizedKeysPath, gatewayLine + "\n");

  // The admin's private key (the one sshd authorizes), uploaded and attached.
  await uploadAndAttachKey(page, sg.url, stackURL, sshd.clientKeyPath, "e2e_audit");

  // The test sshd logs with -E to a file: set it as the server's SSH log file.
  await page.goto(stackURL + "?tab=log&log=ssh");
  await page.getByText("SSH log file per server").click();
  await page.getByLabel("web-1").fill(sshd.logFile);
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByText("SSH log file of web-1 saved.")).toBeVisible();

  // A terminal session.
  await page.goto(stackURL);
  await page.locator('tr[data-server="web-1"]').getByRole("link", { name: "Open terminal" }).click();
  await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
  await page.locator("#terminal").click();
  await page.keyboard.type("echo recorded-$((6*7))\n");
  await expect.poll(() => screenText(page)).toMatch(/^recorded-42$/m);
  await page.keyboard.type("exit\n");
  await expect(page.getByTestId("term-state")).toHaveText("Closed");

  // The Audit page has it, with the right fields and a link to the recording.
  await page.goto(sg.url + "/audit?kind=terminal.");
  const end = page.locator('tr[data-event="terminal.end"]').first();
  await expect(end).toContainText("web-1");
  await expect(end).toContainText("admin");
  // The What column reads as words: login, key, duration, exit status, bytes.
  await expect(end).toContainText(`Terminal as ${sshd.user} with key `);
  await expect(end).toContainText("exit status 0");
  await expect(end).toContainText(/lasted \d/);
  await expect(end).toContainText(/ B typed, .* shown, recorded/);
  await expect(end).not.toContainText("=");
  await expect(page.locator('tr[data-event="terminal.start"]').first()).toContainText(`Terminal opened as ${sshd.user} with key `);
  const session = (await end.getByTestId("recording-link").getAttribute("href"))!.split("/").pop()!;
  expect(session).toMatch(/^[A-Z2-7]{20,}$/);
  await page.screenshot({ path: "test-results/audit-page.png", fullPage: true });

  // Play the recording: the command's output shows up in the player.
  const cspErrors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") cspErrors.push(m.text());
  });
  await end.getByTestId("recording-link").click();
  await expect(page).toHaveURL(new RegExp(`/audit/recordings/${session}$`));
  const player = page.locator("#player .ap-player");
  await expect(player).toBeVisible();
  await page.locator("#player").click(); // starts playback
  await expect.poll(async () => (await page.locator("#player").innerText()).includes("recorded-42"), { timeout: 20_000 }).toBe(true);
  await page.screenshot({ path: "test-results/audit-recording.png", fullPage: true });
  expect(cspErrors.filter((e) => /Content Security Policy|Refused/.test(e))).toEqual([]);

  // The ssh tab: the server's own log has the login, tied to the session.
  await page.goto(stackURL + "?tab=log&log=ssh");
  await page.getByTestId("sshlog-refresh").click();
  const log = page.getByTestId("stack-log");
  await expect(log).toContainText(`accepted publickey for ${sshd.user} from 127.0.0.1`);
  await expect(log).toContainText(`shellgate session ${session} by admin`);
  await page.screenshot({ path: "test-results/audit-ssh-tab.png", fullPage: true });

  // Live sessions: the admin terminates a running session from another tab; the
  // terminal says an administrator closed it.
  await page.goto(stackURL);
  await page.locator('tr[data-server="web-1"]').getByRole("link", { name: "Open terminal" }).click();
  await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
  const admin = await context.newPage();
  admin.on("dialog", (d) => d.accept());
  await admin.goto(sg.url + "/admin/live");
  const row = admin.locator('tr[data-user="admin"]');
  await expect(row).toHaveCount(1);
  await expect(row).toContainText("web-1");
  await expect(row).toContainText("audited");
  await expect(row).toContainText("attached");
  await admin.screenshot({ path: "test-results/audit-live.png", fullPage: true });
  await row.getByRole("button", { name: "Terminate" }).click();
  await expect(admin.getByText("Session terminated.")).toBeVisible();
  await expect(admin.locator('tr[data-user="admin"]')).toHaveCount(0);
  await expect(page.getByTestId("closed-message")).toHaveText("The session was closed by an administrator.");
  await page.screenshot({ path: "test-results/audit-terminated.png" });
  await admin.goto(sg.url + "/audit?kind=terminal.");
  await expect(admin.locator('tr[data-event="terminal.terminate"]').first()).toContainText("web-1");
});
