// Regenerates the protobuf code into a temporary directory and fails, printing a
// diff, when it differs from the committed src/gen. Run with `npm run regen:check`.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const committed = join(root, "src", "gen");
const env = { ...process.env, PATH: join(root, "node_modules", ".bin") + delimiter + process.env.PATH };

/** Every file under `dir`, as paths relative to it. */
function files(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)))
    .sort();
}

const out = mkdtempSync(join(tmpdir(), "phasecast-regen-"));
let status = 0;
try {
  const gen = spawnSync("buf", ["generate", "--output", out], {
    cwd: root,
    env,
    stdio: "inherit",
    shell: process.platform === "win32",
  });
  if (gen.status !== 0) {
    console.error(`regen:check: buf generate failed (${gen.error?.message ?? `exit ${gen.status}`})`);
    process.exit(1);
  }
  const fresh = join(out, "src", "gen");
  const names = [...new Set([...files(committed), ...files(fresh)])].sort();
  const differing = names.filter((name) => {
    const a = join(committed, name);
    const b = join(fresh, name);
    return !existsSync(a) || !existsSync(b) || !readFileSync(a).equals(readFileSync(b));
  });
  if (differing.length === 0) {
    console.log(`regen:check: src/gen is up to date (${names.length} file(s))`);
  } else {
    status = 1;
    console.error("regen:check: src/gen differs from what `npm run regen` generates:");
    const diff = spawnSync("diff", ["-ruN", committed, fresh], { encoding: "utf8" });
    if (diff.error) console.error(differing.map((n) => `  ${n}`).join("\n"));
    else console.error(diff.stdout);
    console.error("run `npm run regen` and commit src/gen.");
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
process.exit(status);
