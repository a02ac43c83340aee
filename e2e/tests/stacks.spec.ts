import { test, expect, signIn } from "../fixtures";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { startSSHD, stopSSHD, nextSSHD, requireThrowaway, sshdProcess } from "../sshd";

test.afterAll(stopSSHD);

test("an admin creates a stack, pins a host key, attaches a key and sees it deployed; others see nothing", async ({
  page,
  sg,
  browser,
}) => {
  const sshd = await startSSHD();
  requireThrowaway(sshd);

  await signIn(page, sg);
  await page.goto(sg.url + "/stacks");
  await expect(page.getByRole("heading", { name: "Create a stack" })).toBeVisible();
  await page.screenshot({ path: "test-results/stacks-empty-admin.png", fullPage: true });

  await page.getByLabel("Name").fill("production");
  await page.getByLabel("Description").fill("The shop and its database");
  await page.getByRole("button", { name: "Create stack" }).click();
  await expect(page.getByRole("navigation", { name: "Stack sections" })).toBeVisible();
  const stackURL = page.url().replace(/\?.*$/, "");
  await page.screenshot({ path: "test-results/stack-new.png", fullPage: true });

  // Add the server; shellgate reads its host key and asks to confirm it.
  await page.getByLabel("Name", { exact: true }).fill("web-1");
  await page.getByLabel("Host or IP").fill(sshd.host);
  await page.getByLabel("Port").fill(String(sshd.port));
  await page.getByLabel("Login user", { exact: true }).fill(sshd.user);
  await page.getByRole("button", { name: "Add and read host key" }).click();
  await expect(page.getByTestId("presented-fingerprint")).toHaveText(sshd.hostKeyFingerprint);
  await page.screenshot({ path: "test-results/hostkey-confirm.png", fullPage: true });
  // The pin button needs the explicit confirmation.
  await page.getByLabel("I compared the fingerprint on the server and it matches").check();
  await page.getByRole("button", { name: "Trust and pin this key" }).click();
  const row = page.locator('tr[data-server="web-1"]');
  await expect(row.getByText("pinned")).toBeVisible();
  await expect(row.getByText(`ssh -p ${sshd.port} ${sshd.user}@${sshd.host}`)).toBeVisible();
  await expect(row.getByRole("link", { name: "Open terminal" })).toHaveAttribute("href", /\/stacks\/\d+\/servers\/\d+\/terminal$/);

  // The admin installs shellgate's key with the one-line command the page shows;
  // here we do what that command does to the server's authorized_keys.
  const install = (await page.getByTestId("gateway-install").textContent()) ?? "";
  const gatewayLine = install.match(/echo '([^']+)'/)?.[1];
  expect(gatewayLine, "install command carries the public key").toMatch(/^ssh-ed25519 \S+ shellgate-gateway$/);
  // testsshd pre-authorizes its client key; start from the gateway key alone, so the
  // client key can only come in through shellgate's deployment.
  writeFileSync(sshd.authorizedKeysPath, gatewayLine + "\n");

  // Register a key for the admin (the SSH keys page belongs to another branch) and attach it.
  execFileSync("bin/seedkey", [sg.dataDir, "admin", "e2e_laptop", sshd.clientPublicKey]);
  await page.getByRole("link", { name: /^Keys/ }).click();
  await expect(page.getByRole("heading", { name: "No keys attached" })).toBeVisible();
  const option = page.locator("#attach-key option", { hasText: "e2e_laptop" });
  await page.locator("#attach-key").selectOption((await option.getAttribute("value"))!);
  await page.getByRole("button", { name: "Attach" }).click();
  await expect(page.locator('tr[data-key="e2e_laptop"]')).toBeVisible();

  // The worker deploys in the background: reload until the server says deployed.
  await expect
    .poll(
      async () => {
        await page.reload();
        return (await page.locator('tr[data-key="e2e_laptop"]').textContent()) ?? "";
      },
      { timeout: 30_000, intervals: [500, 1000, 2000] },
    )
    .toContain("deployed");
  await page.screenshot({ path: "test-results/stack-keys.png", fullPage: true });
  expect(readFileSync(sshd.authorizedKeysPath, "utf8")).toContain(sshd.clientPublicKey.split(" ")[1]);

  await page.goto(stackURL);
  await expect(page.locator('tr[data-server="web-1"] [data-testid="deploy-state"]')).toContainText("1 deployed");
  await page.screenshot({ path: "test-results/stack-servers.png", fullPage: true });

  await page.getByRole("link", { name: "Log" }).click();
  const log = page.getByTestId("stack-log");
  await expect(log).toContainText("Key e2e_laptop deployed to web-1");
  await expect(log).toContainText("admin attached key e2e_laptop");
  await page.screenshot({ path: "test-results/stack-log.png", fullPage: true });

  await page.getByRole("link", { name: "Settings" }).click();
  await expect(page.getByRole("heading", { name: "Members" })).toBeVisible();
  await page.screenshot({ path: "test-results/stack-settings.png", fullPage: true });
  await page.goto(stackURL + "/import");
  await page.screenshot({ path: "test-results/stack-import.png", fullPage: true });

  await page.goto(sg.url + "/stacks");
  await expect(page.locator('[data-stack="production"]')).toContainText("web-1");
  await page.screenshot({ path: "test-results/stacks-list.png", fullPage: true });

  // A member who is not in the stack sees neither it nor its page.
  await page.goto(sg.url + "/admin/users");
  await page.getByLabel("Username").fill("mallory");
  await page.getByRole("button", { name: "Add user" }).click();
  const memberPassword = ((await page.getByTestId("new-password").locator("code").textContent()) ?? "").trim();
  const other = await browser.newContext();
  const mp = await other.newPage();
  await signIn(mp, sg, "mallory", memberPassword);
  await mp.goto(sg.url + "/stacks");
  await expect(mp.getByRole("heading", { name: "No stacks yet — ask an administrator" })).toBeVisible();
  await expect(mp.getByText("production")).toHaveCount(0);
  await mp.screenshot({ path: "test-results/stacks-empty-member.png", fullPage: true });
  const resp = await mp.goto(stackURL);
  expect(resp?.status()).toBe(404);
  await expect(mp.getByText("web-1")).toHaveCount(0);
  await other.close();

  // The server's host key changes (sshd restarted with a new key). Reading it again
  // shows OpenSSH's warning; the server is blocked until the admin re-pins.
  const changed = await nextSSHD(() => sshdProcess()!.kill("SIGHUP"));
  expect(changed.hostKeyFingerprint).not.toBe(sshd.hostKeyFingerprint);
  await page.goto(stackURL);
  await page.locator('tr[data-server="web-1"] a.fp').click();
  await page.getByRole("button", { name: "Read the host key again" }).click();
  await expect(page.locator(".hostkey-alarm")).toContainText("REMOTE HOST IDENTIFICATION HAS CHANGED");
  await expect(page.getByTestId("presented-fingerprint")).toHaveText(changed.hostKeyFingerprint);
  await page.screenshot({ path: "test-results/hostkey-changed.png", fullPage: true });
  await page.goto(stackURL);
  await expect(page.locator('tr[data-server="web-1"]')).toContainText("blocked");
  await expect(page.locator('tr[data-server="web-1"]').getByRole("link", { name: "Open terminal" })).toHaveCount(0);
  await page.screenshot({ path: "test-results/stack-blocked.png", fullPage: true });
  await page.getByRole("link", { name: "Review new key" }).click();
  await page.getByLabel("I compared the fingerprint on the server and it matches").check();
  await page.getByRole("button", { name: "Replace the pinned key" }).click();
  await expect(page.locator('tr[data-server="web-1"]')).toContainText("pinned");
  await expect(page.locator('tr[data-server="web-1"]')).toContainText(changed.hostKeyFingerprint);
});
