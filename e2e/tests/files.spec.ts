import { test, expect, signIn, startShellgate, stopShellgate, type Shellgate } from "../fixtures";
import { startSSHD, stopSSHD, requireThrowaway } from "../sshd";
import { createStackWithServer, uploadAndAttachKey } from "../steps";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

// Its own shellgate: the terminal sessions this test opens stay out of the audit
// log that other test files read from the shared instance.
let sg: Shellgate;
test.beforeAll(async () => {
  sg = await startShellgate();
});
test.afterAll(async () => {
  await stopSSHD();
  await stopShellgate(sg);
});

test("file panel: drop files, upload a folder, download, rename, delete", async ({ page }) => {
  const sshd = await startSSHD();
  requireThrowaway(sshd);
  await signIn(page, sg);

  // A stack with the test sshd (host key confirmed) and the admin's key attached.
  const stackURL = await createStackWithServer(page, sg.url, sshd, "files");
  await uploadAndAttachKey(page, sg.url, stackURL, sshd.clientKeyPath, "e2e_files");

  await page.goto(stackURL);
  await page.locator('tr[data-server="web-1"]').getByRole("link", { name: "Open terminal" }).click();
  await expect(page.getByTestId("term-state")).toHaveText("Connected", { timeout: 30_000 });

  // Open the panel: the home folder is listed, the toggle says it is open.
  const panel = page.locator("#files-panel");
  const toggle = page.getByRole("button", { name: "Files", exact: true });
  await toggle.click();
  await expect(panel).toBeVisible();
  await expect(toggle).toHaveAttribute("aria-expanded", "true");
  await expect(panel.locator(".files-crumb[aria-current]")).not.toHaveText("/");
  const home = await panel.locator(".files-crumb[aria-current]").textContent();

  // Drop two files onto the panel (a synthetic drop: DataTransfer with File objects).
  const big = randomBytes(1_500_000);
  await page.evaluate(
    ({ b64 }) => {
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File(["hello from the browser\n"], "a.txt", { type: "text/plain" }));
      dt.items.add(new File([bin], "b.bin"));
      const target = document.querySelector("#files-panel")!;
      for (const type of ["dragenter", "dragover", "drop"]) {
        target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
      }
    },
    { b64: big.toString("base64") },
  );
  const rows = panel.locator(".files-upload");
  await expect(rows).toHaveCount(2);
  await expect(rows.filter({ hasText: "b.bin" })).toHaveAttribute("data-state", "done");
  await expect(rows.filter({ hasText: "a.txt" })).toHaveAttribute("data-state", "done");
  await expect(rows.filter({ hasText: "b.bin" }).locator(".files-upload-info")).toContainText("100%");
  await expect(panel.locator("[data-files-overall-label]")).toContainText("2 of 2 uploaded · 100%");
  const row = (name: string) => panel.locator(`.files-row[data-name="${name}"]`);
  await expect(row("a.txt")).toBeVisible();
  await expect(row("b.bin")).toContainText("1.4 MiB");
  await row("b.bin").hover();
  await page.screenshot({ path: "test-results/files-panel.png" });

  await page.evaluate(() => (document.documentElement.dataset.theme = "dark"));
  await page.screenshot({ path: "test-results/files-panel-dark.png" });
  await page.evaluate(() => (document.documentElement.dataset.theme = "light"));

  // A folder through the folder picker (webkitdirectory): its structure arrives.
  const local = mkdtempSync(join(tmpdir(), "sg-files-"));
  const folder = join(local, "project");
  mkdirSync(join(folder, "src"), { recursive: true });
  writeFileSync(join(folder, "README"), "read me\n");
  writeFileSync(join(folder, "src", "main.go"), "package main\n");
  await panel.locator("[data-files-dir-input]").setInputFiles(folder);
  // A new batch replaces the finished rows of the last one.
  await expect(panel.locator(".files-upload[data-state=done]")).toHaveCount(2);
  await expect(panel.locator("[data-files-overall-label]")).toContainText("2 of 2 uploaded · 100%");
  await expect(panel.locator(".files-upload", { hasText: "project/src/main.go" })).toHaveAttribute("data-state", "done");
  await expect(row("project")).toBeVisible();
  await row("project").locator("button.files-name").click();
  await expect(panel.locator(".files-crumb[aria-current]")).toHaveText("project");
  await expect(row("src")).toBeVisible();
  await expect(row("README")).toBeVisible();
  await panel.getByRole("button", { name: "Up one folder" }).click();
  await expect(row("b.bin")).toBeVisible();

  // Dropping a.txt again asks before replacing it.
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(["second version\n"], "a.txt"));
    document.querySelector("#terminal")!.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  const dialog = page.locator("#files-dialog");
  await expect(dialog).toContainText("Replace a.txt?");
  await dialog.getByRole("button", { name: "Replace" }).click();
  await expect(panel.locator(".files-upload[data-state=done]")).toHaveCount(1);
  await expect(panel.locator(".files-upload", { hasText: "a.txt" })).toHaveAttribute("data-state", "done");

  // Download b.bin: the bytes are the ones dropped.
  const [download] = await Promise.all([page.waitForEvent("download"), row("b.bin").locator("a.files-name").click()]);
  expect(download.suggestedFilename()).toBe("b.bin");
  const got = readFileSync((await download.path())!);
  expect(got.equals(big)).toBe(true);

  // Rename it, then delete it.
  await row("b.bin").hover();
  await row("b.bin").getByRole("button", { name: "Rename b.bin" }).click();
  await dialog.getByLabel("Name").fill("renamed.bin");
  await dialog.getByRole("button", { name: "Rename" }).click();
  await expect(row("renamed.bin")).toBeVisible();
  await expect(row("b.bin")).toHaveCount(0);
  await row("renamed.bin").hover();
  await row("renamed.bin").getByRole("button", { name: "Delete renamed.bin" }).click();
  await expect(dialog).toContainText("Delete renamed.bin?");
  await dialog.getByRole("button", { name: "Delete" }).click();
  await expect(row("renamed.bin")).toHaveCount(0);

  // Deleting a folder says what is inside first.
  await row("project").hover();
  await row("project").getByRole("button", { name: "Delete project" }).click();
  await expect(dialog).toContainText("It holds 2 files and 1 folder");
  await page.screenshot({ path: "test-results/files-delete-confirm.png" });
  await dialog.getByRole("button", { name: "Delete" }).click();
  await expect(row("project")).toHaveCount(0);

  // Cancel: a slow upload (throttled by the browser) is aborted half way; the row says
  // so and nothing appears on the server.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(8 << 20)], "slow.bin"));
    document.querySelector("#files-panel")!.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  const slow = panel.locator(".files-upload", { hasText: "slow.bin" });
  await expect(slow.locator(".files-upload-info")).toContainText(/[1-9]\d?% · .* · .*\/s/);
  await page.screenshot({ path: "test-results/files-uploading.png" });
  await slow.getByRole("button", { name: "Cancel slow.bin" }).click();
  await expect(slow).toHaveAttribute("data-state", "cancelled");
  await expect(slow).toContainText("Cancelled; nothing was written.");
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await panel.getByRole("button", { name: "Refresh" }).click();
  await expect(row("a.txt")).toBeVisible();
  await expect(row("slow.bin")).toHaveCount(0);

  // The panel stays open across a reload.
  await page.reload();
  await expect(panel).toBeVisible();
  await expect(row("a.txt")).toBeVisible();

  // The transfers are on the audit page.
  await page.goto(sg.url + "/audit?kind=file.");
  await expect(page.locator('tr[data-event="file.upload"]').first()).toContainText("web-1");
  await expect(page.locator('tr[data-event="file.download"]').first()).toContainText("b.bin");
});
