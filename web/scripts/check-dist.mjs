#!/usr/bin/env node
// Drift check: rebuilds the page into a temporary directory and fails, with a diff,
// when the result differs from the committed web/dist (which the Rust server embeds,
// so that `cargo run` needs no Node). Fix: `npm run build` in web/ and commit web/dist.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const committed = join(root, "dist");
const tmp = mkdtempSync(join(tmpdir(), "phasecast-web-"));
let failed = false;
try {
  const built = spawnSync(process.execPath, [join(root, "scripts/build.mjs"), "--outdir", tmp], { stdio: "inherit" });
  if (built.status !== 0) {
    console.error("check-dist: the build failed");
    process.exit(built.status ?? 1);
  }
  const list = (dir) => (existsSync(dir) ? readdirSync(dir).sort() : []);
  const names = [...new Set([...list(committed), ...list(tmp)])].sort();
  for (const name of names) {
    const a = join(committed, name);
    const b = join(tmp, name);
    if (!existsSync(a)) {
      console.error(`dist/${name}: missing from the committed web/dist`);
      failed = true;
      continue;
    }
    if (!existsSync(b)) {
      console.error(`dist/${name}: committed but no longer built`);
      failed = true;
      continue;
    }
    const x = readFileSync(a);
    const y = readFileSync(b);
    if (x.equals(y)) continue;
    failed = true;
    const sha = (buf) => createHash("sha256").update(buf).digest("hex").slice(0, 16);
    let i = 0;
    while (i < x.length && i < y.length && x[i] === y[i]) i++;
    const around = (buf) => JSON.stringify(buf.subarray(Math.max(0, i - 60), i + 60).toString("utf8"));
    console.error(`dist/${name} differs: committed ${x.length} bytes (sha256 ${sha(x)}), rebuilt ${y.length} bytes (sha256 ${sha(y)})`);
    console.error(`  first difference at byte ${i}:`);
    console.error(`  - committed: ${around(x)}`);
    console.error(`  + rebuilt:   ${around(y)}`);
    // A line diff too, when diff(1) exists (minified JS is one long line: capped).
    const d = spawnSync("diff", ["-u", "--label", `committed/${name}`, "--label", `rebuilt/${name}`, a, b], { encoding: "utf8" });
    if (d.stdout) {
      const lines = d.stdout.split("\n").map((l) => (l.length > 400 ? `${l.slice(0, 400)}… (${l.length} chars)` : l));
      console.error(lines.slice(0, 80).join("\n") + (lines.length > 80 ? `\n… ${lines.length - 80} more lines` : ""));
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
if (failed) {
  console.error("check-dist: web/dist is stale. Run `npm run build` in web/ and commit web/dist.");
  process.exit(1);
}
console.error("check-dist: web/dist matches a fresh build");
