import { test, expect, signIn } from "../fixtures";
import { startSSHD, stopSSHD, requireThrowaway, type SSHD } from "../sshd";
import { createStackWithServer, uploadAndAttachKey, screenText } from "../steps";
import type { Browser, Page } from "@playwright/test";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";

// Access ends everywhere at once, and the input path never stalls or drops a byte.
// One sshd and one stack for the file: the admin's key and alice's key (the same
// private key, uploaded by each) are attached; alice is a member.
test.describe.configure({ mode: "serial", timeout: 300_000 });
test.afterAll(stopSSHD);

let sshd: SSHD;
let stackURL = "";
let home = ""; // the sshd user's home: what commands did is checked on its disk
let alicePassword = "";
let adminTerm: Page; // the admin's terminal, kept open for every test (the machine is slow)

async function setup(browser: Browser, url: string): Promise<void> {
  if (stackURL) return;
  sshd = await startSSHD();
  requireThrowaway(sshd);
  home = dirname(dirname(sshd.authorizedKeysPath));
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on("dialog", (d) => d.accept());
  await signIn(page, { url } as any);
  stackURL = await createStackWithServer(page, url, sshd, "access");
  await uploadAndAttachKey(page, url, stackURL, sshd.clientKeyPath, "e2e_admin");
  await page.goto(url + "/admin/users");
  await page.getByLabel("Username").fill("alice");
  await page.getByRole("button", { name: "Add user" }).click();
  alicePassword = (await page.locator("code.copyable").textContent())!.trim();
  await page.goto(stackURL + "?tab=settings");
  await page.locator("#member-user").selectOption({ label: "alice" });
  await page.getByRole("button", { name: "Grant" }).click();
  await ctx.close();
  const alice = await signedIn(browser, url, "alice", alicePassword);
  await uploadAndAttachKey(alice, url, stackURL, sshd.clientKeyPath, "e2e_alice");
  await alice.context().close();
  adminTerm = await signedIn(browser, url, "admin", "e2e admin password 1");
  await openTerminal(adminTerm);
}

async function signedIn(browser: Browser, url: string, user: string, password: string): Promise<Page> {
  const ctx = await browser.newContext();
  await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
  const page = await ctx.newPage();
  page.on("dialog", (d) => d.accept());
  await signIn(page, { url } as any, user, password);
  return page;
}

async function openTerminal(page: Page): Promise<void> {
  await page.goto(stackURL);
  await page.locator('tr[data-server="web-1"]').getByRole("link", { name: "Open terminal" }).click();
  await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
  await page.locator("#terminal").click();
}

// run types a command and waits for the marker it prints (a round trip through the shell).
async function run(page: Page, cmd: string, marker: string): Promise<void> {
  await page.keyboard.type(`${cmd}; echo ${marker.slice(0, 3)}""${marker.slice(3)}\n`);
  await expect.poll(() => screenText(page), { timeout: 20_000 }).toContain(marker);
}

function clean(...names: string[]): void {
  for (const n of names) rmSync(join(home, n), { force: true });
}

// revokedWhileOpen: alice's terminal is open in tab A; `revoke` ends her access some
// other way; tab A must say so within a second, and what is typed afterwards must not
// run on the server.
async function revokedWhileOpen(browser: Browser, url: string, marker: string, message: RegExp,
  revoke: (tabA: Page) => Promise<void>): Promise<void> {
  clean(`${marker}-before`, `${marker}-after`);
  const tabA = await signedIn(browser, url, "alice", alicePassword);
  await openTerminal(tabA);
  await run(tabA, `touch ~/${marker}-before`, `${marker}-READY`);
  expect(existsSync(join(home, `${marker}-before`))).toBe(true);
  await revoke(tabA);
  // Within one second of the change, the terminal says it ended and why.
  await expect(tabA.locator("[data-closed-message]")).toHaveText(message, { timeout: 1_000 });
  await expect(tabA.getByTestId("term-state")).toHaveText("Closed");
  await tabA.locator("#terminal").click();
  await tabA.keyboard.type(`touch ~/${marker}-after\n`);
  // A round trip through another session: anything the old tab could still deliver
  // would have arrived by now.
  await adminTerm.locator("#terminal").click();
  await run(adminTerm, "true", `${marker}-CHECKED`);
  expect(existsSync(join(home, `${marker}-after`))).toBe(false);
  await tabA.context().close();
}

test("sign-out in tab B ends the terminal open in tab A at once", async ({ browser, sg }) => {
  await setup(browser, sg.url);
  await revokedWhileOpen(browser, sg.url, "signout", /you signed out/, async (tabA) => {
    const tabB = await tabA.context().newPage(); // same browser, same session cookie
    await tabB.goto(sg.url + "/stacks");
    await tabB.getByLabel("Account menu").click();
    await tabB.getByRole("menuitem", { name: "Sign out" }).click();
    await expect(tabB).toHaveURL(/\/login/);
  });
});

test("a password changed in another browser ends the open terminal at once", async ({ browser, sg }) => {
  await setup(browser, sg.url);
  await revokedWhileOpen(browser, sg.url, "password", /password of the account was changed/, async () => {
    const other = await signedIn(browser, sg.url, "alice", alicePassword);
    await other.goto(sg.url + "/account");
    const next = "alice's new passphrase 2026";
    await other.getByLabel("Current password").fill(alicePassword);
    await other.getByLabel("New password", { exact: true }).fill(next);
    await other.getByLabel("Repeat new password").fill(next);
    await other.getByRole("button", { name: /Change password/ }).click();
    await expect(other.getByText("Your password is changed")).toBeVisible();
    alicePassword = next;
    await other.context().close();
  });
});

test("an account disabled by an administrator loses its open terminal at once", async ({ browser, sg }) => {
  await setup(browser, sg.url);
  const admin = await adminTerm.context().newPage();
  admin.on("dialog", (d) => d.accept());
  await admin.goto(sg.url + "/admin/users");
  const row = admin.locator("tr", { hasText: "alice" });
  await revokedWhileOpen(browser, sg.url, "disabled", /account was disabled/, async () => {
    await row.getByRole("button", { name: "Disable" }).click();
    await expect(admin.getByText("alice is disabled")).toBeVisible();
  });
  await admin.locator("tr", { hasText: "alice" }).getByRole("button", { name: "Enable" }).click();
  await expect(admin.getByText("alice can sign in again")).toBeVisible();
});

// The paste tests run in the admin's terminal, from a fresh prompt.
let fresh = 0;
async function adminTerminal(_browser: Browser, _url: string): Promise<Page> {
  await adminTerm.bringToFront();
  await adminTerm.locator("#terminal").click();
  await adminTerm.keyboard.press("Control+C");
  await run(adminTerm, "true", `PROMPT-${++fresh}-READY`);
  return adminTerm;
}

// commandRunning waits until the shell has handed the terminal to the command it
// read: bash turns bracketed paste off (ESC[?2004l) just before it runs one.
async function commandRunning(page: Page): Promise<void> {
  await expect.poll(() => page.evaluate(() => (window as any).shellgateTerminal.modes.bracketedPasteMode)).toBe(false);
}

function pasteText(size: number): string {
  const lines: string[] = [];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const line = `line ${i} ${"abcdefghijklmnopqrstuvwxyz0123456789".repeat(2)}`;
    lines.push(line);
    n += line.length + 1;
  }
  return lines.join("\n").slice(0, size - 1) + "\n";
}

// paste fires a real paste event on the terminal (what Ctrl+V does) with text.
async function paste(page: Page, text: string): Promise<void> {
  await page.evaluate((t) => {
    const dt = new DataTransfer();
    dt.setData("text/plain", t);
    document.querySelector("#terminal textarea")!.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
  }, text);
}

test("a 200 KiB paste into cat > file arrives byte for byte", async ({ browser, sg }) => {
  await setup(browser, sg.url);
  clean("paste.txt");
  const page = await adminTerminal(browser, sg.url);
  const text = pasteText(200 * 1024);
  // cat reads the paste; ^D after it ends the file. The shell's echo is off so the
  // screen stays small; the tty turns the paste's CRs back into line feeds.
  await page.keyboard.type("stty -echo; cat > ~/paste.txt; stty echo; echo PASTE-\"\"DONE\n");
  await commandRunning(page);
  await paste(page, text);
  await expect(page.getByTestId("term-state")).toHaveAttribute("data-input-waiting", "0", { timeout: 30_000 });
  await page.keyboard.press("Control+D");
  await expect.poll(() => screenText(page), { timeout: 30_000 }).toContain("PASTE-DONE");
  const got = readFileSync(join(home, "paste.txt"));
  expect(got.length).toBe(text.length);
  expect(createHash("sha256").update(got).digest("hex")).toBe(createHash("sha256").update(text).digest("hex"));
});

test("an 8 MiB paste while yes floods the terminal arrives complete", async ({ browser, sg }) => {
  await setup(browser, sg.url);
  const page = await adminTerminal(browser, sg.url);
  const text = pasteText(8 << 20);
  // What the shell receives: the page turns line feeds into CR, as xterm.js does; the
  // tty is raw, so they arrive as they are.
  const sent = text.replace(/\n/g, "\r");
  const want = createHash("sha256").update(sent).digest("hex");
  await page.keyboard.type(`stty raw -echo; yes >/dev/tty & H=$(head -c ${sent.length} | sha256sum); kill $!; wait; stty sane; echo; echo "SUM $H"; echo FLOOD-""STOPPED\n`);
  await expect.poll(() => screenText(page)).toMatch(/^\s*y$/m); // the flood runs (raw: no CR, a staircase)
  await commandRunning(page);
  await paste(page, text);
  await expect.poll(() => screenText(page), { timeout: 240_000 }).toContain("FLOOD-STOPPED");
  expect(await screenText(page)).toContain(`SUM ${want}`);
  await expect(page.getByTestId("term-state")).toHaveAttribute("data-input-waiting", "0");
});

test("keystrokes typed while the page reconnects arrive after it, in order", async ({ browser, sg }) => {
  await setup(browser, sg.url);
  clean("typed.txt");
  const page = await adminTerminal(browser, sg.url);
  await page.keyboard.type("cat > ~/typed.txt\n");
  await page.keyboard.type("before\n");
  // Cut the socket and keep the page from reconnecting (each attempt is aborted while
  // it connects) while we type; then let it reconnect.
  await page.evaluate(() => {
    const w = window as any;
    const Native = window.WebSocket;
    w.__hold = true;
    w.WebSocket = class extends Native {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        if (w.__hold) this.close();
      }
    };
    w.shellgateConnection.ws.close();
  });
  await expect(page.getByTestId("term-state")).toContainText("Reconnecting");
  await page.keyboard.type("typed while reconnecting 1\n");
  await page.keyboard.type("typed while reconnecting 2\n");
  await expect(page.getByTestId("term-state")).toContainText("input waiting");
  await expect(page.getByTestId("term-state")).toHaveAttribute("data-input-waiting", "54");
  await page.evaluate(() => ((window as any).__hold = false));
  await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });
  await page.keyboard.type("after\n");
  await page.keyboard.press("Control+D");
  await run(page, "true", "TYPED-OK");
  expect(readFileSync(join(home, "typed.txt"), "utf8")).toBe("before\ntyped while reconnecting 1\ntyped while reconnecting 2\nafter\n");
});

// The attack: a web page or chat message puts `echo safe ESC[201~ \n touch pwned \n` in
// the clipboard. Pasted into a shell with bracketed paste on, the ESC[201~ would end
// the paste early and the shell would run `touch pwned` at once. The page strips ESC
// and the other control characters from pasted text, so the whole text stays one
// paste the shell only inserts.
test("a bracketed-paste breakout in the clipboard runs nothing", async ({ browser, sg }) => {
  await setup(browser, sg.url);
  clean("pwned", "pwned2");
  const page = await adminTerminal(browser, sg.url);
  await run(page, "bind 'set enable-bracketed-paste on'", "BRACKETED-ON");
  // Through a paste event (Ctrl+V, the menu, middle click)…
  await paste(page, "echo safe\x1b[201~\ntouch ~/pwned\n");
  // …and through the clipboard (Ctrl+Shift+V; right-click takes the same path).
  await page.evaluate(() => navigator.clipboard.writeText("echo safe\x1b[201~\ntouch ~/pwned2\n"));
  await page.keyboard.press("Control+Shift+V");
  await expect.poll(() => screenText(page)).toContain("pwned2");
  // Abandon the line and make a round trip: had anything run, it would be done now.
  await page.keyboard.press("Control+C");
  await run(page, "true", "AFTER-PASTE");
  expect(existsSync(join(home, "pwned"))).toBe(false);
  expect(existsSync(join(home, "pwned2"))).toBe(false);
});

// The attack: a remote program (or a file someone cats) prints OSC 52 with "?", asking
// the terminal to type the clipboard's contents back to it. Writes stay allowed;
// reads get nothing.
test("an OSC 52 clipboard read from the remote gets nothing; a write still works", async ({ browser, sg }) => {
  await setup(browser, sg.url);
  clean("osc52.txt");
  const page = await adminTerminal(browser, sg.url);
  await page.evaluate(() => navigator.clipboard.writeText("SECRET-IN-THE-CLIPBOARD"));
  // The remote asks for the clipboard, then reads one line: what the terminal answered,
  // if anything, followed by what we type.
  await page.keyboard.type("stty -echo; printf '\\033]52;c;?\\007'; IFS= read -r line; printf '%s' \"$line\" > ~/osc52.txt; stty echo\n");
  await page.keyboard.type("typed\n");
  await run(page, "true", "OSC-READ-DONE");
  expect(readFileSync(join(home, "osc52.txt"), "utf8")).toBe("typed");
  // A write (base64 of "from remote") reaches the clipboard.
  await run(page, "printf '\\033]52;c;ZnJvbSByZW1vdGU=\\007'", "OSC-WRITE-DONE");
  await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe("from remote");
});
