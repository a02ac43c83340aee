import { test } from "@playwright/test";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";

// A real OpenSSH sshd from internal/testsshd/cmd/testsshd: it prints one JSON line
// and stops (deleting its throwaway user) when its stdin closes.
export interface SSHD {
  addr: string;
  host: string;
  port: number;
  user: string;
  hostKeyFingerprint: string;
  authorizedKeysPath: string;
  clientKeyPath: string;
  clientPublicKey: string;
  throwaway: boolean;
  password?: string; // with startSSHD({ password: true })
  logFile: string; // sshd's -E log (no timestamps), readable by user
}

let sshdProc: ChildProcess | undefined;
// Each JSON line testsshd prints (again after SIGHUP, with a new host key).
let sshdLines: ((info: SSHD) => void)[] = [];

export async function startSSHD(opts: { password?: boolean } = {}): Promise<SSHD> {
  execFileSync("go", ["build", "-o", "bin/testsshd", "./internal/testsshd/cmd/testsshd"], { stdio: "inherit" });
  execFileSync("go", ["build", "-o", "bin/seedkey", "./e2e/seedkey"], { stdio: "inherit" });
  const env = { ...process.env, TESTSSHD_PASSWORD: opts.password ? "1" : "" };
  const proc = spawn("bin/testsshd", [], { stdio: ["pipe", "pipe", "pipe"], env });
  sshdProc = proc;
  let out = "";
  let errOut = "";
  proc.stderr!.on("data", (d) => (errOut += d.toString()));
  proc.stdout!.on("data", (d) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf("\n")) >= 0) {
      const info = JSON.parse(out.slice(0, nl)) as SSHD;
      out = out.slice(nl + 1);
      sshdLines.shift()?.(info);
    }
  });
  return await nextSSHD(() => {}, () => errOut);
}

// nextSSHD resolves with the next JSON line testsshd prints after trigger runs.
export function nextSSHD(trigger: () => void, errors: () => string = () => ""): Promise<SSHD> {
  return new Promise<SSHD>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`testsshd printed nothing:\n${errors()}`)), 60_000);
    sshdLines.push((info) => {
      clearTimeout(timer);
      resolve(info);
    });
    trigger();
  });
}

export async function stopSSHD(): Promise<void> {
  const p = sshdProc;
  if (!p || p.exitCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.stdin!.end(); // closing stdin stops sshd and removes the throwaway user
  await exited;
}


export function sshdProcess(): ChildProcess | undefined {
  return sshdProc;
}

// requireThrowaway skips a test that writes into the sshd user's home when the machine
// cannot create a throwaway user (not root) — except under CI=true, where that is a
// failure, never a silent skip.
export function requireThrowaway(sshd: SSHD): void {
  if (process.env.CI === "true" && !sshd.throwaway) {
    throw new Error("CI=true but testsshd could not create a throwaway user: run the tests as root");
  }
  test.skip(!sshd.throwaway, "needs root: the test writes into the sshd user's home");
}
