import { test as base, expect, type Page } from "@playwright/test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ADMIN_PASSWORD = "e2e admin password 1";

export interface Shellgate {
  url: string;
  dataDir: string;
  proc: ChildProcess;
  output: () => string;
}

// startShellgate runs the real binary on a free loopback port with a temp data dir and
// resolves once it prints the URL it listens on.
export async function startShellgate(extraEnv: Record<string, string> = {}): Promise<Shellgate> {
  const dataDir = mkdtempSync(join(tmpdir(), "shellgate-e2e-"));
  const proc = spawn("bin/shellgate-e2e", ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    env: { ...process.env, SHELLGATE_ADMIN_PASSWORD: ADMIN_PASSWORD, ...extraEnv },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stderr!.on("data", (d) => (out += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`shellgate did not start:\n${out}`)), 30_000);
    proc.stdout!.on("data", (d) => {
      out += d.toString();
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`shellgate exited with ${code}:\n${out}`)));
  });
  return { url, dataDir, proc, output: () => out };
}

export async function stopShellgate(sg: Shellgate): Promise<void> {
  if (sg.proc.exitCode === null) {
    const exited = new Promise((r) => sg.proc.once("exit", r));
    sg.proc.kill("SIGTERM");
    await exited;
  }
  rmSync(sg.dataDir, { recursive: true, force: true });
}

export async function signIn(page: Page, sg: Shellgate, user = "admin", password = ADMIN_PASSWORD): Promise<void> {
  await page.goto(sg.url + "/login");
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("user-name")).toHaveText(user);
}

// One shellgate per test file: the worker (there is one) outlives files, so a fixture
// of worker scope alone would carry one file's accounts and keys into the next. The
// worker-scoped holder starts a fresh instance when the file changes and stops the
// last one when the worker ends.
class PerFile {
  private file = "";
  private sg: Shellgate | undefined;
  async forFile(file: string): Promise<Shellgate> {
    if (this.sg && this.file === file) return this.sg;
    await this.stop();
    this.sg = await startShellgate();
    this.file = file;
    return this.sg;
  }
  async stop(): Promise<void> {
    if (this.sg) await stopShellgate(this.sg);
    this.sg = undefined;
  }
}

export const test = base.extend<{ sg: Shellgate }, { perFile: PerFile }>({
  perFile: [
    async ({}, use) => {
      const holder = new PerFile();
      await use(holder);
      await holder.stop();
    },
    { scope: "worker" },
  ],
  sg: async ({ perFile }, use, testInfo) => {
    await use(await perFile.forFile(testInfo.file));
  },
});

export { expect };
