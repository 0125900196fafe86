/**
 * The package as users get it, and the React hook in a real browser:
 *
 * - `npm pack` (which runs `prepare`: the build) of a copy of this folder, then the
 *   tarball installed into a scratch project (dependencies from the npm cache that
 *   `npm ci` filled, or the registry) and imported from Node; the README's snippets
 *   type-checked against it;
 * - `npm install <folder>` of a copy without node_modules (a fresh clone) into
 *   another scratch project, and imported;
 * - a page using `@phasecast/client/react` from the installed tarball, bundled with
 *   esbuild, in headless Chromium (playwright-core; never a downloaded browser):
 *   live states from `phasecast serve --demo`, and, against the fake server with
 *   animation frames run by hand, at most one render per animation frame and the
 *   subscriber closed on unmount.
 *
 * Everything happens in a temporary directory, on 127.0.0.1. Chromium comes from
 * CHROMIUM or /usr/bin/chromium; without it the browser tests skip (fail with
 * PHASECAST_REQUIRE_TOOLS=1). The live test also needs PHASECAST_BIN.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { makeState } from "./support/encoder.js";
import { FakeServer } from "./support/fake-server.js";
import { Phasecast, serverSkip, toolSkip } from "./support/phasecast.js";

// build/test/package.test.js -> the package folder
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  devDependencies: Record<string, string>;
};
const CHROMIUM = process.env["CHROMIUM"] || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const noBrowser = toolSkip(
  "chromium",
  existsSync(CHROMIUM) ? undefined : `no chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`,
);
const noServer = serverSkip();
if (noBrowser) console.log(`# browser tests ${noBrowser}`);

/** The environment for npm run from here: none of the outer npm's settings (its prefix is this folder). */
const NPM_ENV = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (killed after `timeoutMs`), collecting its output. */
function run(command: string, args: string[], cwd: string, timeoutMs = 180_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: NPM_ENV, stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function ok(command: string, args: string[], cwd: string): Promise<Ran> {
  const result = await run(command, args, cwd);
  assert.equal(result.code, 0, `${command} ${args.join(" ")} in ${cwd}: exit ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
}

const NPM_FLAGS = ["--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"];

/** A copy of this folder as a fresh clone has it: no node_modules, dist, build. */
function copyPackage(dest: string): void {
  cpSync(ROOT, dest, {
    recursive: true,
    filter: (src) => {
      const rel = relative(ROOT, src);
      const top = rel.split(/[\\/]/)[0] ?? "";
      return !["node_modules", "dist", "build"].includes(top) && !rel.endsWith(".tgz");
    },
  });
}

/** The README's code blocks marked `<!-- snippet: NAME -->`. */
function readmeSnippets(): Map<string, { lang: string; code: string }> {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const out = new Map<string, { lang: string; code: string }>();
  for (const m of readme.matchAll(/<!-- snippet: ([\w-]+) -->\n```(\w+)\n([\s\S]*?)```/g)) {
    out.set(m[1]!, { lang: m[2]!, code: m[3]! });
  }
  return out;
}

const work = mkdtempSync(join(tmpdir(), "phasecast-client-pkg-"));
after(() => rmSync(work, { recursive: true, force: true }));

let tarball = "";
/** The scratch project with the tarball installed (and React, for the hook). */
const app = join(work, "app");

/** Packs a copy of this folder and installs the tarball into `app`, once. */
let installing: Promise<void> | undefined;
function installed(): Promise<void> {
  installing ??= packAndInstall();
  return installing;
}

async function packAndInstall(): Promise<void> {
  const copy = join(work, "pack");
  copyPackage(copy);
  // The build tools of this folder (npm ci put them here); `prepare` finds them.
  symlinkSync(join(ROOT, "node_modules"), join(copy, "node_modules"), "dir");
  await ok("npm", ["pack", "--pack-destination", work, "--loglevel=error"], copy);
  const found = readdirSync(work).filter((f) => f.endsWith(".tgz"));
  assert.equal(found.length, 1, `tarballs: ${found}`);
  tarball = join(work, found[0]!);

  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch-app", private: true, type: "module" }));
  const dev = PKG.devDependencies;
  const extras = ["react", "react-dom", "@types/react", "@types/react-dom", "@types/node"].map((n) => `${n}@${dev[n]}`);
  await ok("npm", ["install", ...NPM_FLAGS, tarball, ...extras], app);
}

describe("the package", { timeout: 300_000 }, () => {
  before(installed);

  test("the tarball holds dist/ with both entry points, LICENSE and README, and no tests", async () => {
    const listing = (await ok("tar", ["-tzf", tarball], work)).stdout.split("\n").filter(Boolean);
    for (const file of [
      "package/package.json",
      "package/LICENSE",
      "package/README.md",
      "package/dist/index.js",
      "package/dist/index.d.ts",
      "package/dist/react.js",
      "package/dist/react.d.ts",
      "package/dist/conformance.js",
    ]) {
      assert.ok(listing.includes(file), `${file} in the tarball`);
    }
    assert.ok(!listing.some((f) => /^package\/(test|build|node_modules)\//.test(f)), "no tests, build output or modules");
    const license = readFileSync(join(app, "node_modules", "@phasecast", "client", "LICENSE"), "utf8");
    assert.match(license, /Apache License\s+Version 2\.0, January 2004/);
    assert.match(license, /END OF TERMS AND CONDITIONS/);
    const manifest = JSON.parse(readFileSync(join(app, "node_modules", "@phasecast", "client", "package.json"), "utf8")) as Record<string, unknown>;
    assert.equal(manifest["license"], "Apache-2.0");
    assert.ok(manifest["repository"], "repository is set");
  });

  test("installed from the tarball, it imports and works in Node", async () => {
    writeFileSync(
      join(app, "check.mjs"),
      `import assert from "node:assert/strict";
import { checksum, checksumHex, ConnectError, decodeFrame, Subscriber, toState } from "@phasecast/client";
import { usePccStream } from "@phasecast/client/react";

const full = decodeFrame('{"seq":41,"epoch":"e1","step":10,"energy":-1.25,"timestamp":1764000000.5,"phases":[0.5,1.0,2.0,3.0],"spins":[1,-1,1,1]}');
assert.equal(full.kind, "full");
assert.equal(full.epoch, "e1");
assert.equal(checksumHex(checksum(toState({ step: 42, phases: [0, 1.5, -3.25], spins: [1, -1, 1], energy: -2 }))), "a4ed18b14dd21c0c");
assert.equal(typeof usePccStream, "function");
const sub = new Subscriber({ url: "ws://127.0.0.1:9/ws", firstConnectTries: 1 });
const error = await sub.ready().catch((e) => e);
assert.ok(error instanceof ConnectError, String(error));
assert.equal(error.kind, "network");
console.log("ok", error.message);
`,
    );
    const result = await ok(process.execPath, ["check.mjs"], app);
    assert.match(result.stdout, /^ok /);
    // The conformance runner is installed as a command; bad arguments exit 1 with the usage.
    const bin = await run(join(app, "node_modules", ".bin", "phasecast-conformance"), ["--format", "xml"], app);
    assert.equal(bin.code, 1);
    assert.match(bin.stderr, /usage: conformance/);
  });

  test("the README's TypeScript snippets type-check against the installed package", async () => {
    const snippets = readmeSnippets();
    for (const name of ["node", "browser", "react", "publish", "errors"]) assert.ok(snippets.has(name), `README snippet ${name}`);
    mkdirSync(join(app, "snippets"), { recursive: true });
    const checked: string[] = [];
    for (const [name, { lang, code }] of snippets) {
      const ext = { ts: ".ts", tsx: ".tsx", js: ".mjs" }[lang];
      assert.ok(ext, `snippet ${name}: language ${lang}`);
      // A module each (the Node one is JavaScript: checked with checkJs).
      writeFileSync(join(app, "snippets", `${name}${ext}`), `${code}\nexport {};\n`);
      checked.push(name);
    }
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          lib: ["ES2022", "DOM"],
          types: ["node"],
          jsx: "react-jsx",
          strict: true,
          exactOptionalPropertyTypes: true,
          noUncheckedIndexedAccess: true,
          allowJs: true,
          checkJs: true,
          noEmit: true,
          skipLibCheck: true,
        },
        include: ["snippets"],
      }),
    );
    const tsc = await run(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], app);
    assert.equal(tsc.code, 0, `tsc on the README snippets (${checked.join(", ")}):\n${tsc.stdout}${tsc.stderr}`);
  });

  test("npm install <folder> works from a fresh clone (no node_modules, no dist)", async () => {
    const fresh = join(work, "fresh");
    copyPackage(fresh);
    assert.ok(!existsSync(join(fresh, "dist")) && !existsSync(join(fresh, "node_modules")));
    const project = join(work, "app-folder");
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "scratch-folder", private: true, type: "module" }));
    await ok("npm", ["install", ...NPM_FLAGS, fresh], project);
    assert.ok(lstatSync(join(project, "node_modules", "@phasecast", "client")).isSymbolicLink(), "npm links the folder");
    assert.ok(existsSync(join(fresh, "dist", "index.js")), "prepare built dist/");
    const result = await ok(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { Subscriber, checksumHex, checksum, toState } from "@phasecast/client";
         if (typeof Subscriber !== "function") throw new Error("no Subscriber");
         console.log(checksumHex(checksum(toState({ step: 42, phases: [0, 1.5, -3.25], spins: [1, -1, 1], energy: -2 }))));`,
      ],
      project,
    );
    assert.equal(result.stdout.trim(), "a4ed18b14dd21c0c");
  });
});

// --- the React hook in Chromium --------------------------------------------------------------

const MIME: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };

/** Serves `dir` on 127.0.0.1. */
async function serveDir(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const file = join(dir, path === "/" ? "index.html" : path.slice(1));
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": MIME[extname(file)] ?? "application/octet-stream" }).end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe("the React hook in a browser", { skip: noBrowser, timeout: 300_000 }, () => {
  const www = join(work, "www");
  let site: { server: Server; url: string } | undefined;
  let context: BrowserContext | undefined;
  const pageErrors: string[] = [];

  before(async () => {
    await installed();
    mkdirSync(www, { recursive: true });
    cpSync(join(ROOT, "test", "browser", "page.jsx"), join(app, "page.jsx"));
    writeFileSync(
      join(www, "index.html"),
      '<!doctype html><meta charset="utf-8"><title>usePccStream</title><div id="root"></div><script type="module" src="bundle.js"></script>\n',
    );
    site = await serveDir(www);
    context = await chromium.launchPersistentContext(mkdtempSync(join(work, "profile-")), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
    });
    context.setDefaultTimeout(20_000);
  });

  after(async () => {
    await context?.close().catch(() => undefined);
    await new Promise((resolve) => (site ? site.server.close(resolve) : resolve(undefined)));
  });

  async function open(query: string): Promise<Page> {
    const page = await context!.newPage();
    page.on("pageerror", (err) => pageErrors.push(`${page.url()}: ${err.message}`));
    await page.goto(`${site!.url}/?${query}`, { waitUntil: "load" });
    return page;
  }

  test("esbuild bundles the page with the hook from the installed tarball, without ws", async () => {
    const result = await build({
      absWorkingDir: app,
      entryPoints: ["page.jsx"],
      bundle: true,
      format: "esm",
      platform: "browser",
      jsx: "automatic",
      define: { "process.env.NODE_ENV": '"production"' },
      outfile: join(www, "bundle.js"),
      metafile: true,
      logLevel: "silent",
    });
    const inputs = Object.keys(result.metafile.inputs);
    assert.ok(inputs.includes("node_modules/@phasecast/client/dist/react.js"), `inputs: ${inputs.filter((i) => i.includes("phasecast"))}`);
    assert.ok(inputs.includes("node_modules/@phasecast/client/dist/subscriber.js"));
    assert.ok(!inputs.some((i) => i.includes("node_modules/ws/")), "the ws package stays out of a browser bundle");
  });

  test("live states from `phasecast serve --demo`: seq increases in the DOM", { skip: noServer }, async () => {
    const server = await Phasecast.start(["--demo"]);
    try {
      const page = await open(`ws=${encodeURIComponent(server.ws)}&format=protobuf`);
      await page.waitForFunction(() => document.querySelector("#stream")?.getAttribute("data-status") === "connected");
      await page.waitForFunction(() => Number(document.querySelector("#stream")?.getAttribute("data-seq")) > 0);
      const first = Number(await page.getAttribute("#stream", "data-seq"));
      // The demo publishes at 200 Hz: wait for the DOM to show 50 seqs more.
      await page.waitForFunction((s) => Number(document.querySelector("#stream")?.getAttribute("data-seq")) > s + 50, first);
      const probe = await page.evaluate(() => {
        const p = (window as unknown as { __probe: { renders: number; updates: number; rafTicks: number } }).__probe;
        return { renders: p.renders, updates: p.updates, rafTicks: p.rafTicks };
      });
      // One render for the mount, then at most one per animation frame.
      assert.ok(probe.renders <= probe.rafTicks + 2, `renders ${probe.renders}, animation frames ${probe.rafTicks}`);
      assert.ok(probe.updates >= 50, `updates ${probe.updates}`);
      assert.match((await page.textContent("#energy")) ?? "", /^-?\d+\.\d{4}$/);
      await page.close();
    } finally {
      await server.stop();
    }
  });

  test("at most one render per animation frame however fast frames arrive; unmount closes the subscriber", async () => {
    const fake = await FakeServer.start();
    try {
      fake.publish(makeState(1, [0.5, 1.5, 2.5], [1, -1, 1], -1));
      const page = await open(`ws=${encodeURIComponent(fake.url)}&raf=manual`);
      type Win = {
        __probe: { renders: number; updates: number; view: { subscriber?: { ended: boolean } } };
        __rafPending(): number;
        __frame(): number;
        __unmount(): void;
      };
      const probe = (): Promise<{ renders: number; updates: number; pending: number }> =>
        page.evaluate(() => {
          const w = window as unknown as Win;
          return { renders: w.__probe.renders, updates: w.__probe.updates, pending: w.__rafPending() };
        });
      const frame = (): Promise<number> => page.evaluate(() => (window as unknown as Win).__frame());
      // waitForFunction polls with the page's requestAnimationFrame by default, which this
      // page runs by hand: poll on a timer instead.
      const POLL = { polling: 10 } as const;
      const seqShown = async (): Promise<string | null> => page.getAttribute("#stream", "data-seq");

      // The first frame arrived: one animation frame is asked for, no render yet.
      await page.waitForFunction(() => (window as unknown as Win).__probe.updates === 1 && (window as unknown as Win).__rafPending() === 1, null, POLL);
      assert.deepEqual(await probe(), { renders: 1, updates: 1, pending: 1 });
      assert.equal(await seqShown(), "");
      assert.equal(await frame(), 1);
      await page.waitForFunction(() => (window as unknown as Win).__probe.renders === 2, null, POLL);
      assert.equal(await seqShown(), "1");
      assert.equal(await page.getAttribute("#stream", "data-status"), "connected");

      // 50 frames at once: still one animation frame asked for, and no render until it runs.
      for (let step = 2; step <= 51; step++) fake.publish(makeState(step, [0.5, 1.5 + step / 100, 2.5], [1, -1, 1], -step));
      await page.waitForFunction(() => (window as unknown as Win).__probe.updates === 51, null, POLL);
      assert.deepEqual(await probe(), { renders: 2, updates: 51, pending: 1 });
      assert.equal(await frame(), 1);
      await page.waitForFunction(() => (window as unknown as Win).__probe.renders === 3, null, POLL);
      assert.equal(await seqShown(), "51");
      assert.equal(await page.getAttribute("#stream", "data-frames"), "51");
      assert.equal((await probe()).pending, 0);

      // A frame waits for an animation frame; unmounting cancels it and closes the subscriber.
      fake.publish(makeState(52, [0.5, 2, 2.5], [1, -1, 1], -52));
      await page.waitForFunction(() => (window as unknown as Win).__probe.updates === 52 && (window as unknown as Win).__rafPending() === 1, null, POLL);
      await page.evaluate(() => (window as unknown as Win).__unmount());
      await page.waitForSelector("#unmounted");
      await fake.until(() => fake.connections.size === 0, 10_000, "the server to see the subscriber close");
      assert.equal(await page.evaluate(() => (window as unknown as Win).__probe.view.subscriber?.ended), true);
      assert.deepEqual(await probe(), { renders: 3, updates: 52, pending: 0 });
      assert.equal(fake.history.length, 1, "one connection for the component's life");
      await page.close();
    } finally {
      await fake.stop();
    }
  });

  test("the pages had no uncaught errors", () => {
    assert.deepEqual(pageErrors, []);
  });
});
