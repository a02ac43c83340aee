import { expect, type Page } from "@playwright/test";
import type { SSHD } from "./sshd";

// Steps several browser tests share, done through the UI as a person would.

// createStackWithServer creates a stack with one server pointing at the test sshd and
// pins its host key after checking the fingerprint shown; it returns the stack's URL.
export async function createStackWithServer(page: Page, baseURL: string, sshd: SSHD, stack: string, server = "web-1"): Promise<string> {
  await page.goto(baseURL + "/stacks");
  await page.getByLabel("Name").fill(stack);
  await page.getByRole("button", { name: "Create stack" }).click();
  await page.getByLabel("Name", { exact: true }).fill(server);
  await page.getByLabel("Host or IP").fill(sshd.host);
  await page.getByLabel("Port").fill(String(sshd.port));
  await page.getByLabel("Login user", { exact: true }).fill(sshd.user);
  await page.getByRole("button", { name: "Add and read host key" }).click();
  await expect(page.getByTestId("presented-fingerprint")).toHaveText(sshd.hostKeyFingerprint);
  await page.getByLabel("I compared the fingerprint on the server and it matches").check();
  await page.getByRole("button", { name: "Trust and pin this key" }).click();
  return page.url().replace(/\?.*$/, "");
}

// uploadAndAttachKey uploads a private key file on the SSH keys page under name and
// attaches it to the stack.
export async function uploadAndAttachKey(page: Page, baseURL: string, stackURL: string, keyPath: string, name: string): Promise<void> {
  await page.goto(baseURL + "/keys?add=upload");
  const upload = page.getByTestId("form-upload");
  await upload.getByLabel("Key name").fill(name);
  await upload.locator('input[name="private_key_file"]').setInputFiles(keyPath);
  await upload.getByRole("button", { name: /Upload/ }).click();
  await expect(page.getByText(`Private key ${name} uploaded`)).toBeVisible();
  await page.goto(stackURL + "?tab=keys");
  const option = page.locator("#attach-key option", { hasText: name });
  await page.locator("#attach-key").selectOption((await option.getAttribute("value"))!);
  await page.getByRole("button", { name: "Attach" }).click();
}

// screenText reads what the terminal shows (its buffer: the screen may be a WebGL canvas).
export async function screenText(page: Page): Promise<string> {
  return page.evaluate(() => {
    const term = (window as any).shellgateTerminal;
    const buf = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i)?.translateToString(true) ?? "");
    return lines.join("\n");
  });
}
