import { test, expect, signIn } from "../fixtures";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// keygen makes a key with OpenSSH's ssh-keygen in a temp dir and returns its path.
function keygen(dir: string, name: string, ...args: string[]): string {
  const path = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-f", path, "-N", "", "-C", `${name}@laptop`, ...args]);
  return path;
}

// fingerprint is the SHA256 fingerprint `ssh-keygen -lf` prints for a key file.
function fingerprint(path: string): string {
  return execFileSync("ssh-keygen", ["-l", "-f", path]).toString().split(" ")[1];
}

let dir: string;
test.beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "shellgate-keys-"));
});
test.afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("add public keys by paste and by file; ssh-keygen agrees on the fingerprints", async ({ page, sg }) => {
  await signIn(page, sg);
  await page.getByRole("navigation", { name: "Main navigation" }).getByRole("link", { name: "SSH keys" }).click();
  await expect(page).toHaveURL(/\/keys$/);
  await expect(page.getByRole("heading", { name: "No SSH keys yet" })).toBeVisible();
  await page.screenshot({ path: "test-results/keys-empty.png", fullPage: true });

  // Paste.
  const pasted = keygen(dir, "id_ed25519", "-t", "ed25519");
  await page.getByLabel("Key name").first().fill("work_laptop");
  await page.getByLabel("Public key", { exact: true }).fill(readFileSync(pasted + ".pub", "utf8"));
  await page.getByRole("button", { name: "Add public key" }).click();
  const row = page.locator('tr[data-key="work_laptop"]');
  await expect(row.getByTestId("fingerprint")).toHaveText(fingerprint(pasted + ".pub"));
  await expect(row).toContainText("ED25519");

  // File chosen with the file picker.
  const chosen = keygen(dir, "id_rsa", "-t", "rsa", "-b", "3072");
  await page.getByLabel("Key name").first().fill("old_desktop");
  await page.getByLabel("…or choose the .pub file").setInputFiles(chosen + ".pub");
  await page.getByRole("button", { name: "Add public key" }).click();
  const row2 = page.locator('tr[data-key="old_desktop"]');
  await expect(row2.getByTestId("fingerprint")).toHaveText(fingerprint(chosen + ".pub"));
  await expect(row2).toContainText("RSA");
  await expect(row2).toContainText("3072 bits");
  await expect(row2).toContainText("None");

  // A weak key is refused with what to do instead.
  const weak = keygen(dir, "id_weak", "-t", "rsa", "-b", "1024");
  await page.getByLabel("Key name").first().fill("weak");
  await page.getByLabel("Public key", { exact: true }).fill(readFileSync(weak + ".pub", "utf8"));
  await page.getByRole("button", { name: "Add public key" }).click();
  await expect(page.locator("#pub-key-desc")).toContainText("ssh-keygen -t ed25519");

  // A private key pasted into the public key field: refused, warned, and not echoed.
  await page.getByLabel("Key name").first().fill("oops");
  await page.getByLabel("Public key", { exact: true }).fill(readFileSync(pasted, "utf8"));
  await page.getByRole("button", { name: "Add public key" }).click();
  await expect(page.getByRole("alert").filter({ hasText: "must never be pasted or sent anywhere" })).toBeVisible();
  await expect(page.getByLabel("Public key", { exact: true })).toHaveValue("");
  await page.screenshot({ path: "test-results/keys-error.png", fullPage: true });

  // Upload a private key; shellgate shows its public part's fingerprint.
  const priv = keygen(dir, "id_ecdsa", "-t", "ecdsa");
  await page.getByRole("link", { name: "Upload private key" }).click();
  await page.getByLabel("Key name").nth(1).fill("deploy_bot");
  await page.getByLabel("Private key file").setInputFiles(priv);
  await page.getByRole("button", { name: "Upload private key" }).click();
  const row3 = page.locator('tr[data-key="deploy_bot"]');
  await expect(row3.getByTestId("fingerprint")).toHaveText(fingerprint(priv));
  await expect(row3.getByTestId("private")).toContainText("Held, encrypted");
  await page.screenshot({ path: "test-results/keys-list.png", fullPage: true });

  // A passphrase-protected key: a wrong passphrase is refused in plain words; the right
  // one stores it, still protected.
  const prot = join(dir, "id_protected");
  execFileSync("ssh-keygen", ["-q", "-f", prot, "-t", "ed25519", "-N", "correct horse", "-C", "prot"]);
  await page.getByRole("link", { name: "Upload private key" }).click();
  await page.getByLabel("Key name").nth(1).fill("protected");
  await page.getByLabel("Private key file").setInputFiles(prot);
  await page.getByLabel("Passphrase, if the key has one").fill("not it");
  await page.getByRole("button", { name: "Upload private key" }).click();
  await expect(page.locator("#up-pass-desc")).toContainText("The passphrase is wrong.");
  await page.screenshot({ path: "test-results/keys-upload-error.png" });
  await page.getByLabel("Private key file").setInputFiles(prot);
  await page.getByLabel("Passphrase, if the key has one").fill("correct horse");
  await page.getByRole("button", { name: "Upload private key" }).click();
  await expect(page.locator('tr[data-key="protected"]').getByTestId("private")).toContainText("Passphrase-protected");
  await expect(page.locator('tr[data-key="protected"]').getByTestId("fingerprint")).toHaveText(fingerprint(prot + ".pub"));

  // Delete, confirming a dialog that names the key.
  page.once("dialog", (d) => {
    expect(d.message()).toContain("old_desktop");
    void d.accept();
  });
  await row2.getByRole("button", { name: "Delete key old_desktop" }).click();
  await expect(page.locator(".flash-ok")).toContainText("old_desktop deleted");
  await expect(row2).toHaveCount(0);
});

test("generate a key, download it once, and the second download is refused", async ({ page, sg }) => {
  await signIn(page, sg);
  await page.goto(sg.url + "/keys");
  await page.getByRole("link", { name: "Generate" }).click();
  await page.getByLabel("Key name").nth(2).fill("browser_key");
  await expect(page.getByLabel(/Ed25519/)).toBeChecked();
  await page.screenshot({ path: "test-results/keys-generate-form.png", fullPage: true });
  await page.getByRole("button", { name: "Generate key" }).click();

  const panel = page.getByTestId("fresh-key");
  await expect(panel).toContainText("Key browser_key is ready");
  const shown = await page.locator('tr[data-key="browser_key"]').getByTestId("fingerprint").textContent();
  await page.screenshot({ path: "test-results/keys-generated.png", fullPage: true });

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    panel.getByRole("button", { name: "Download private key" }).click(),
  ]);
  expect(download.suggestedFilename()).toBe("browser_key");
  const saved = join(dir, "browser_key");
  await download.saveAs(saved);
  chmodSync(saved, 0o600);
  expect(readFileSync(saved, "utf8")).toContain("BEGIN OPENSSH PRIVATE KEY");
  expect(fingerprint(saved)).toBe(shown);

  await panel.getByRole("button", { name: "Download private key" }).click();
  await expect(page.getByTestId("keys-error")).toContainText("cannot be downloaded: it was downloaded already");
  await expect(page.getByTestId("fresh-key")).toHaveCount(0);
  await page.screenshot({ path: "test-results/keys-download-refused.png", fullPage: true });
});
