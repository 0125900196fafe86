#!/usr/bin/env node
// Bundles the dashboard into exactly three files: index.html, app.js, app.css.
//
//   node scripts/build.mjs [--outdir DIR]     (default: dist)
//
// Fixed names, no hashes, no source maps, minified, and deterministic: the same
// sources, client and esbuild version give the same bytes (check-dist relies on it).
// Run through `npm run build`, which first builds the client (ensure-client) and
// type-checks (esbuild does not).
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const at = args.indexOf("--outdir");
const outdir = resolve(at >= 0 && args[at + 1] ? args[at + 1] : join(root, "dist"));

const OUTPUTS = ["app.css", "app.js", "index.html"];

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });

await esbuild.build({
  absWorkingDir: root,
  entryPoints: { app: "src/app.ts" }, // imports src/app.css: esbuild emits app.css next to app.js
  outdir,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "ascii",
  logLevel: "warning",
  metafile: false,
  write: true,
});
copyFileSync(join(root, "src/index.html"), join(outdir, "index.html"));

const got = readdirSync(outdir).sort();
if (JSON.stringify(got) !== JSON.stringify(OUTPUTS)) {
  console.error(`build produced ${got.join(", ")}; expected exactly ${OUTPUTS.join(", ")}`);
  process.exit(1);
}
console.error(`built ${OUTPUTS.map((f) => join(outdir, f)).join(", ")}`);
