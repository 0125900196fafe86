// `npm run prepare`: builds dist/. npm runs it after `npm ci` / `npm install` here,
// before `npm pack` / `npm publish`, and when another project installs this folder
// (`npm install ./clients/typescript`) or a git checkout of it.
//
// In that last case this folder may have no node_modules (a fresh clone): npm does
// not install a linked folder's dependencies. Then this installs them here first,
// exactly as package-lock.json pins them (without install scripts and the optional
// platform binaries of the code generator, which the build does not need), so that
// the build finds TypeScript and the linked package finds its runtime dependencies.
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

function run(command, args, env = process.env) {
  const result = spawnSync(command, args, { cwd: root, stdio: "inherit", env, shell: process.platform === "win32" });
  if (result.status !== 0) {
    console.error(`prepare: ${command} ${args.join(" ")} failed (${result.error?.message ?? `exit ${result.status}`})`);
    process.exit(1);
  }
}

const needed = ["typescript", "@bufbuild/protobuf", "@types/node", "@types/react"];
const missing = needed.filter((name) => !existsSync(join(root, "node_modules", name, "package.json")));
if (missing.length > 0) {
  console.error(`prepare: installing the build dependencies into ${join(root, "node_modules")} (missing: ${missing.join(", ")})`);
  // The outer npm (installing this folder into another project) says where *it*
  // works; the inner one must work here.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^npm_config_(local_prefix|prefix|global|omit|include|production|dev|only|save.*|workspaces?|install_links)$/i.test(name)),
  );
  const lock = existsSync(join(root, "package-lock.json"));
  run(npm, [lock ? "ci" : "install", "--ignore-scripts", "--include=dev", "--omit=optional", "--no-audit", "--no-fund"], env);
}
rmSync(join(root, "dist"), { recursive: true, force: true });
run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(root, "tsconfig.json")]);
