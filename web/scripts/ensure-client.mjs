#!/usr/bin/env node
// Makes sure the TypeScript client the page imports (`@phasecast/client`, linked from
// ../clients/typescript) is built: its dist/ is not committed, so on a fresh clone
// where only `npm ci` ran in web/ this installs the client's pinned packages
// (`npm ci` there) and builds it (`npm run build`, tsc). It also rebuilds when a
// source file is newer than the build, so the bundle never uses a stale client.
// Nothing happens when the client is installed and up to date.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const clientDir = resolve(dirname(fileURLToPath(import.meta.url)), "../../clients/typescript");

function run(args) {
  console.error(`[ensure-client] npm ${args.join(" ")} (in ${clientDir})`);
  const r = spawnSync("npm", args, { cwd: clientDir, stdio: "inherit" });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    console.error(`[ensure-client] npm ${args.join(" ")} failed with status ${r.status}`);
    process.exit(r.status ?? 1);
  }
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const t = entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs;
    if (t > newest) newest = t;
  }
  return newest;
}

if (!existsSync(join(clientDir, "package.json"))) {
  console.error(`[ensure-client] no client at ${clientDir}`);
  process.exit(1);
}

const installed =
  existsSync(join(clientDir, "node_modules/@bufbuild/protobuf/package.json")) &&
  existsSync(join(clientDir, "node_modules/typescript/package.json"));
if (!installed) run(["ci", "--no-audit", "--no-fund"]);

const built = join(clientDir, "dist/index.js");
const sourceFiles = [join(clientDir, "src"), join(clientDir, "tsconfig.json"), join(clientDir, "package-lock.json")];
const stale =
  !existsSync(built) ||
  sourceFiles.some((p) => (statSync(p).isDirectory() ? newestMtime(p) : statSync(p).mtimeMs) > statSync(built).mtimeMs);
if (stale) run(["run", "build"]);
