// Bundles the browser code into static/dist, which is committed so that `go run` needs
// no npm. `--check` builds into a temporary folder and fails when the committed bundle
// differs, so a stale bundle cannot land.
import * as esbuild from "esbuild";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");
const outdir = check ? mkdtempSync(join(tmpdir(), "shellgate-dist-")) : join(here, "dist");

const common = {
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "none",
  target: ["chrome110", "firefox115", "safari16"],
  logLevel: "warning",
  outdir,
};

await esbuild.build({
  ...common,
  entryPoints: {
    app: join(here, "src/app.ts"),
    terminal: join(here, "src/terminal/main.ts"),
    player: join(here, "src/player.ts"),
  },
  format: "esm",
  splitting: false,
  loader: { ".woff2": "file" },
});
// The theme script runs synchronously in <head> so the page never flashes the wrong theme.
await esbuild.build({ ...common, entryPoints: { theme: join(here, "src/theme.ts") }, format: "iife" });
await esbuild.build({
  ...common,
  entryPoints: {
    app: join(here, "src/app.css"),
    terminal: join(here, "src/terminal/terminal.css"),
    player: join(here, "src/player.css"),
  },
});

if (check) {
  const committed = join(here, "dist");
  const names = new Set([...readdirSync(outdir), ...readdirSync(committed)]);
  const stale = [...names].filter((n) => {
    try {
      return !readFileSync(join(outdir, n)).equals(readFileSync(join(committed, n)));
    } catch {
      return true;
    }
  });
  rmSync(outdir, { recursive: true, force: true });
  if (stale.length > 0) {
    console.error(`static/dist is stale (${stale.join(", ")}): run \`npm run build\` and commit the result.`);
    process.exit(1);
  }
  console.log("static/dist matches the sources.");
}
