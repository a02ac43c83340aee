import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

// Builds the real binary once; every test file starts its own instance of it.
export default function globalSetup(): void {
  const chromium = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
  if (!existsSync(chromium)) {
    throw new Error(`Chromium not found at ${chromium}: install Debian's chromium package (make deps does, as root)`);
  }
  execFileSync("go", ["build", "-o", "bin/shellgate-e2e", "./cmd/shellgate"], { stdio: "inherit" });
}
