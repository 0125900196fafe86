// End-to-end test of the dashboard: a real phasecast (`serve --demo`, 200 Hz), a real
// browser (Debian's chromium through playwright-core; Playwright never downloads one),
// the built page from web/dist.
//
//   npm run e2e                                  # the page from phasecast itself, at /
//   PHASECAST_PAGE_URL_MODE=static npm run e2e   # web/dist from a local static server,
//                                                # pointed at phasecast with ?server=
//
// Env: PHASECAST_BIN (default ../target/release/phasecast), CHROMIUM (default
// /usr/bin/chromium), PHASECAST_SCREENSHOTS (default ../target).
// Screenshots: dashboard.png, dashboard-protobuf.png, dashboard-envelope.png,
// dashboard-whole.png, dashboard-offline.png, dashboard-reconnected.png.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Subscriber } from "@phasecast/client";
import { chromium } from "playwright-core";
import { serveStatic } from "../scripts/serve-static.mjs";

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = resolve(WEB, process.env.PHASECAST_BIN || "../target/release/phasecast");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = resolve(WEB, process.env.PHASECAST_SCREENSHOTS || "../target");
const STATIC = process.env.PHASECAST_PAGE_URL_MODE === "static";
const VIEWPORT = { width: 1280, height: 800 };
/** At 200 Hz a second brings ~200 states; anything above 50 is a live stream. */
const MIN_PROGRESS_PER_SECOND = 50;

// --- the phasecast server -------------------------------------------------------------------

async function freePort() {
  const srv = createServer();
  await new Promise((ok, fail) => {
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", ok);
  });
  const { port } = srv.address();
  await new Promise((ok) => srv.close(ok));
  return port;
}

/** A running `phasecast serve --demo`; `stop()` ends it (TERM, then KILL). */
class Phasecast {
  constructor(port) {
    this.port = port;
    this.log = "";
    this.child = undefined;
    this.exited = undefined;
  }

  async start() {
    const deadline = Date.now() + 20_000;
    for (;;) {
      this.#spawn();
      try {
        await this.#waitHealthy(deadline);
        return;
      } catch (err) {
        await this.stop();
        // The port can stay busy for a moment after the previous server on it ended.
        if (/in use/i.test(this.log) && Date.now() < deadline) {
          await sleep(250);
          continue;
        }
        throw new Error(`${err.message}\n--- phasecast output ---\n${this.log.slice(-4000)}`);
      }
    }
  }

  #spawn() {
    this.log = "";
    const child = spawn(BIN, ["serve", "--demo", "--port", String(this.port), "--host", "127.0.0.1"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
    });
    this.child = child;
    this.exited = new Promise((ok) => child.once("exit", (code, signal) => ok({ code, signal })));
    const keep = (chunk) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.once("error", (err) => keep(`spawn error: ${err.message}\n`));
    live.add(child);
    child.once("exit", () => live.delete(child));
  }

  async #waitHealthy(deadline) {
    const exited = this.exited.then((how) => {
      throw new Error(`phasecast exited during start (${how.code ?? how.signal})`);
    });
    exited.catch(() => {});
    while (Date.now() < deadline) {
      const ok = await Promise.race([
        fetch(`http://127.0.0.1:${this.port}/health`, { signal: AbortSignal.timeout(1000) }).then(
          (r) => r.ok,
          () => false,
        ),
        exited,
      ]);
      if (ok) return;
      await sleep(100);
    }
    throw new Error(`phasecast did not answer /health on port ${this.port} within 20 s`);
  }

  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const done = await Promise.race([this.exited, sleep(8_000).then(() => undefined)]);
    if (!done) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }
}

/** Children still running: killed however the test process ends. */
const live = new Set();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    for (const child of live) child.kill("SIGKILL");
    process.exit(130);
  });
}

// --- the page ---------------------------------------------------------------------------------

/** The hook the page exposes (a copy: its getters read at call time). */
const readHook = (page) => page.evaluate(() => ({ ...window.__phasecast }));

async function waitConnected(page, timeout = 15_000) {
  await page.waitForFunction(() => window.__phasecast?.connected === true && window.__phasecast.seq > 0, null, {
    timeout,
  });
}

/** Reads the hook twice, a second apart; asserts the stream advanced and the phases moved. */
async function assertProgress(page, what) {
  const a = await readHook(page);
  await sleep(1_000);
  const b = await readHook(page);
  assert.ok(
    b.seq - a.seq > MIN_PROGRESS_PER_SECOND,
    `${what}: seq went from ${a.seq} to ${b.seq} in 1 s (expected > ${MIN_PROGRESS_PER_SECOND} at 200 Hz)`,
  );
  assert.notEqual(b.phasesChecksum, a.phasesChecksum, `${what}: the phases shown did not change`);
  assert.ok(b.oscillators > 0, `${what}: no oscillators`);
  return b;
}

/** Whether a socket URL asks for these `fields` (the query's comma is URL-encoded). */
const fieldsOf = (url) => new URL(url).searchParams.get("fields");

/** Polls `read()` until `ok(value)`, or fails with `what` and the last value. */
async function until(read, ok, what, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  let value;
  for (;;) {
    value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(value)} after ${timeout} ms`);
    await sleep(100);
  }
}

async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, name);
  await page.screenshot({ path });
  return path;
}

describe("dashboard", { timeout: 180_000 }, () => {
  let server;
  let staticServer;
  let browser;
  let context;
  const pageErrors = [];
  const sockets = [];

  const pageUrl = (query = "") => {
    if (STATIC) {
      const q = [`server=127.0.0.1:${server.port}`, query].filter(Boolean).join("&");
      return `http://127.0.0.1:${staticServer.port}/?${q}`;
    }
    return `http://127.0.0.1:${server.port}/${query ? `?${query}` : ""}`;
  };

  /** The WebSockets a page opened, oldest first. */
  const socketsOf = (page) => sockets.filter((s) => s.page === page);
  /** The newest socket of a page whose `fields` pass `test` (null: no `fields`). */
  const socketOf = (page, test) => socketsOf(page).findLast((s) => test(fieldsOf(s.url)));
  const isSummary = (fields) => fields?.split(",").includes("summary") === true;
  const isArrays = (fields) => fields === "phases,spins";

  async function open(query, { beforeGoto } = {}) {
    const page = await context.newPage();
    page.on("pageerror", (err) => pageErrors.push(`${page.url()}: ${err.message}`));
    await beforeGoto?.(page);
    page.on("websocket", (ws) => {
      const entry = { page, url: ws.url(), text: 0, binary: 0 };
      sockets.push(entry);
      ws.on("framereceived", ({ payload }) => {
        if (typeof payload === "string") entry.text++;
        else entry.binary++;
      });
    });
    const url = pageUrl(query);
    await page.goto(url, { waitUntil: "load", timeout: 15_000 });
    const app = await page.$("#app[data-connected]");
    assert.ok(
      app,
      STATIC
        ? `${url} is not the dashboard: is web/dist built?`
        : `${url} is not the dashboard: phasecast does not serve web/dist at / (yet?). ` +
            "Run with PHASECAST_PAGE_URL_MODE=static to test the page from a local static server.",
    );
    await waitConnected(page);
    return page;
  }

  before(async () => {
    assert.ok(existsSync(BIN), `no phasecast binary at ${BIN} (set PHASECAST_BIN)`);
    assert.ok(existsSync(CHROMIUM), `no chromium at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM`);
    server = new Phasecast(await freePort());
    await server.start();
    if (STATIC) staticServer = await serveStatic({ server: `127.0.0.1:${server.port}` });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      timeout: 30_000,
    });
    context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
    context.setDefaultTimeout(15_000);
  });

  after(async () => {
    await context?.close().catch(() => {});
    await browser?.close().catch(() => {});
    await staticServer?.close();
    await server?.stop();
  });

  let page;

  it("connects and follows the 200 Hz stream", async () => {
    page = await open("");
    const hook = await assertProgress(page, "default page");
    assert.equal(hook.connected, true);
    assert.equal(hook.stream, "default");
    assert.equal(hook.delta, true);
    assert.equal(hook.format, "json", "the server's default format is json");
    assert.equal(await page.getAttribute("#app", "data-connected"), "true");
    assert.equal(await page.getAttribute("#app", "data-format"), "json");
    assert.ok(Number(await page.getAttribute("#app", "data-seq")) > 0);
    assert.match(await page.textContent("#banner-text"), /^connected/);
    // The stream selector is filled from /health.
    const options = await page.$$eval("#stream option", (os) => os.map((o) => o.value));
    assert.ok(options.includes("default"), `stream options: ${options}`);
    // The stats panel shows live numbers.
    await page.waitForFunction(() => /\d/.test(document.getElementById("stat-fps")?.textContent ?? ""), null, {
      timeout: 5_000,
    });
    assert.match(await page.textContent("#stat-osc"), /^32/);
    assert.match(await page.textContent("#stat-p50"), /ms$/, "the demo's states have timestamps: latency shown");
    assert.match(await page.textContent("#order-r"), /^\d\.\d{3}$/);
    console.log(`screenshot: ${await screenshot(page, "dashboard.png")}`);
  });

  it("switches the format with the control, and keeps following", async () => {
    const before = await readHook(page);
    const target = before.format === "json" ? "protobuf" : "json";
    await page.click(`#format-${target}`);
    await page.waitForFunction((f) => window.__phasecast.format === f, target, { timeout: 10_000 });
    await waitConnected(page);
    await assertProgress(page, `after switching to ${target}`);
    assert.equal(await page.getAttribute("#app", "data-format"), target);
    assert.equal(await page.getAttribute(`#format-${target}`, "aria-checked"), "true");
    assert.match(page.url(), new RegExp(`format=${target}`), "the page URL keeps the choice");
    // Both subscriptions reconnect with the new format.
    for (const ws of [socketOf(page, isSummary), socketOf(page, isArrays)]) {
      assert.match(ws.url, new RegExp(`[?&]format=${target}`));
      assert.ok(target === "protobuf" ? ws.binary > 0 : ws.text > 0, `frames on the new socket: ${JSON.stringify(ws)}`);
    }
    await page.close();
  });

  it("works when opened with ?delta=false", async () => {
    const p = await open("delta=false");
    const hook = await assertProgress(p, "?delta=false");
    assert.equal(hook.delta, false);
    assert.equal(await p.isChecked("#delta"), false, "the delta switch shows off");
    assert.match(socketOf(p, isSummary).url, /[?&]delta=false/);
    assert.match(socketOf(p, isArrays).url, /[?&]delta=false/);
    await p.close();
  });

  it("works when opened with ?format=protobuf", async () => {
    const p = await open("format=protobuf");
    const hook = await assertProgress(p, "?format=protobuf");
    assert.equal(hook.format, "protobuf");
    // The summaries come at the full rate (200 Hz), the arrays at 30 Hz.
    const ws = socketOf(p, isSummary);
    assert.match(ws.url, /[?&]format=protobuf/);
    assert.ok(ws.binary > 50 && ws.text === 0, `protobuf frames are binary: ${JSON.stringify(ws)}`);
    const arrays = socketOf(p, isArrays);
    assert.match(arrays.url, /[?&]format=protobuf/);
    assert.ok(arrays.binary > 0 && arrays.text === 0, `protobuf frames are binary: ${JSON.stringify(arrays)}`);
    console.log(`screenshot: ${await screenshot(p, "dashboard-protobuf.png")}`);
    await p.close();
  });

  it("lists the streams of /health in the selector and follows the one chosen", async () => {
    const p = await open("");
    const res = await fetch(`http://127.0.0.1:${server.port}/streams/lab1/state`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ step: 7, phases: [0.1, 2.0, 4.2], spins: [1, -1, 1], energy: -0.5, timestamp: Date.now() / 1000 }),
      signal: AbortSignal.timeout(5_000),
    });
    assert.equal(res.status, 200, await res.text());
    // The page reads /health every 5 s.
    await p.waitForSelector('#stream option[value="lab1"]', { state: "attached", timeout: 10_000 });
    await p.selectOption("#stream", "lab1");
    await p.waitForFunction(
      () => window.__phasecast.stream === "lab1" && window.__phasecast.step === 7 && window.__phasecast.oscillators === 3,
      null,
      { timeout: 10_000 },
    );
    assert.match(p.url(), /[?&]stream=lab1/);
    assert.match(socketOf(p, isSummary).url, /[?&]stream=lab1/);
    assert.match(socketOf(p, isArrays).url, /[?&]stream=lab1/);
    await p.selectOption("#stream", "default");
    await p.waitForFunction(() => window.__phasecast.stream === "default" && window.__phasecast.oscillators === 32, null, {
      timeout: 10_000,
    });
    await assertProgress(p, "back on the default stream");
    await p.close();
  });

  it("subscribes twice: server summaries at the full rate, phases and spins at 10⁻³ rad and 30 Hz", async () => {
    const p = await open("");
    const health = await (await fetch(`http://127.0.0.1:${server.port}/health`)).json();
    assert.ok(health.precision_classes.includes(0.001), `precision classes: ${health.precision_classes}`);
    // Count frames, not time: after 400 summaries (2 s at 200 Hz) the arrays, at most
    // 30 a second, are far fewer; a slow machine slows both.
    const h = await until(
      () => readHook(p),
      (x) => x.summaryFrames >= 400,
      "summary frames",
      30_000,
    );
    assert.equal(h.mode, "shaped");
    assert.ok(h.arrayFrames > 0, `array frames: ${h.arrayFrames}`);
    assert.ok(
      h.summaryFrames > 2 * h.arrayFrames,
      `summary frames ${h.summaryFrames} should be well above array frames ${h.arrayFrames} (200 Hz vs 30 Hz)`,
    );
    assert.equal(h.epsilon, 0.001);
    assert.equal(h.arraysHz, 30);
    assert.equal(h.chartHz, null);
    const summary = socketOf(p, isSummary);
    const arrays = socketOf(p, isArrays);
    assert.ok(summary && arrays, `two subscriptions: ${JSON.stringify(socketsOf(p).map((s) => s.url))}`);
    const sq = new URL(summary.url).searchParams;
    assert.equal(sq.get("max_hz"), null, `the summaries are at the full rate: ${summary.url}`);
    assert.equal(sq.get("epsilon"), null, summary.url);
    const aq = new URL(arrays.url).searchParams;
    assert.equal(aq.get("epsilon"), "0.001", arrays.url);
    assert.equal(aq.get("max_hz"), "30", arrays.url);
    // The note by the drawings says what they show.
    assert.ok(await p.isVisible("#arrays-note"), "the note is visible");
    const note = await p.textContent("#arrays-note");
    assert.match(note, /10⁻³/);
    assert.match(note, /30 Hz/);
    assert.equal(h.note, note);
    // The readings are the server's summaries.
    assert.ok(Number.isFinite(h.r) && h.r >= 0 && h.r <= 1, `r: ${h.r}`);
    assert.ok(Number.isFinite(h.magnetization) && h.magnetization >= -1 && h.magnetization <= 1, `m: ${h.magnetization}`);
    assert.equal(h.histogramBins, health.summary_bins);
    assert.match(await p.textContent("#order-r"), /^\d\.\d{3}$/);
    await p.close();
  });

  it("shows the r, magnetisation and energy the server computes", async () => {
    const seen = new Map();
    const node = new Subscriber({ url: `ws://127.0.0.1:${server.port}/ws`, format: "json", fields: ["summary"] });
    node.onUpdate((_state, info) => seen.set(info.seq, info.summary));
    try {
      await node.ready();
      const p = await open("");
      // The page shows the newest summary; compare it with the one of the same seq
      // that a subscriber here received (both read the same 32-bit floats).
      const matched = await until(
        async () => {
          const h = await readHook(p);
          return { h, s: seen.get(h.summarySeq) };
        },
        ({ s }) => s !== undefined,
        "a summary seq the node subscriber also saw",
      );
      assert.equal(matched.h.r, matched.s.r, `r at seq ${matched.h.summarySeq}`);
      assert.equal(matched.h.psi, matched.s.psi, `psi at seq ${matched.h.summarySeq}`);
      assert.equal(matched.h.magnetization, matched.s.magnetization, `m at seq ${matched.h.summarySeq}`);
      assert.equal(matched.h.energy, matched.s.energy, `energy at seq ${matched.h.summarySeq}`);
      await p.close();
    } finally {
      node.close();
    }
  });

  it("with ?chart_hz=5 draws the envelope of the states between frames as a band", async () => {
    const p = await open("chart_hz=5");
    await p.waitForFunction(() => window.__phasecast.envelopeSeen === true, null, { timeout: 20_000 });
    // A few more, for a screenshot worth looking at (2 s at 5 Hz).
    await p.waitForFunction(() => window.__phasecast.envelopes >= 10, null, { timeout: 20_000 });
    const h = await readHook(p);
    assert.equal(h.chartHz, 5);
    assert.ok(h.envelopes > 0, `envelopes: ${h.envelopes}`);
    const summary = socketOf(p, isSummary);
    assert.equal(new URL(summary.url).searchParams.get("max_hz"), "5", summary.url);
    assert.equal(await p.inputValue("#chart-hz"), "5");
    assert.match(await p.textContent("#chart-note"), /5 Hz/);
    assert.match(p.url(), /[?&]chart_hz=5/);
    // The arrays keep their own rate.
    assert.equal(new URL(socketOf(p, isArrays).url).searchParams.get("max_hz"), "30");
    console.log(`screenshot: ${await screenshot(p, "dashboard-envelope.png")}`);
    await p.close();
  });

  it("keeps a one-step energy spike between chart frames visible in the band", async () => {
    const post = async (step, energy) => {
      const res = await fetch(`http://127.0.0.1:${server.port}/streams/spike/state`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ step, phases: [0.1, 2.0, 4.2], spins: [1, -1, 1], energy, timestamp: Date.now() / 1000 }),
        signal: AbortSignal.timeout(5_000),
      });
      assert.equal(res.status, 200, await res.text());
    };
    await post(1, -1);
    const p = await open("stream=spike&chart_hz=2");
    await p.waitForFunction(() => window.__phasecast.summaryFrames >= 1, null, { timeout: 10_000 });
    // 40 states, one of them a spike; at 2 Hz most are between two chart frames.
    for (let step = 2; step <= 40; step++) await post(step, step === 20 ? 100 : -1);
    await p.waitForFunction(() => window.__phasecast.step === 40 && window.__phasecast.energyBandMax >= 100, null, {
      timeout: 10_000,
    });
    const h = await readHook(p);
    assert.equal(h.envelopeSeen, true, "the band was drawn");
    assert.ok(h.envelopes > 0, `envelopes: ${h.envelopes}`);
    await p.close();
  });

  it("asks the arrays for the precision class chosen, by URL and by control", async () => {
    const p = await open("epsilon=0.01");
    let h = await readHook(p);
    assert.equal(h.epsilon, 0.01);
    assert.equal(new URL(socketOf(p, isArrays).url).searchParams.get("epsilon"), "0.01");
    assert.match(h.note, /10⁻²/);
    // The options are the server's precision classes (read from /health).
    const health = await (await fetch(`http://127.0.0.1:${server.port}/health`)).json();
    await p.waitForFunction(
      (n) => document.querySelectorAll("#epsilon option").length === n,
      health.precision_classes.length,
      { timeout: 10_000 },
    );
    const options = await p.$$eval("#epsilon option", (os) => os.map((o) => Number(o.value)));
    assert.deepEqual(options, [...health.precision_classes].sort((a, b) => a - b));
    assert.equal(await p.inputValue("#epsilon"), "0.01");

    await p.selectOption("#epsilon", "0");
    await p.waitForFunction(() => window.__phasecast.epsilon === 0 && window.__phasecast.connected, null, { timeout: 10_000 });
    assert.match(p.url(), /[?&]epsilon=0(&|$)/);
    assert.equal(new URL(socketOf(p, isArrays).url).searchParams.get("epsilon"), "0");
    h = await readHook(p);
    assert.match(h.note, /exact/);

    await p.selectOption("#arrays-hz", "10");
    await p.waitForFunction(() => window.__phasecast.arraysHz === 10 && window.__phasecast.connected, null, { timeout: 10_000 });
    assert.match(p.url(), /[?&]arrays_hz=10/);
    assert.equal(new URL(socketOf(p, isArrays).url).searchParams.get("max_hz"), "10");
    assert.match((await readHook(p)).note, /10 Hz/);
    await waitConnected(p);
    await assertProgress(p, "after changing epsilon and the arrays' rate");
    await p.close();
  });

  it("falls back to one whole-frame subscription for a server without precision classes", async () => {
    // An older server: /health without precision_classes (and the rest of shaping).
    const p = await open("", {
      beforeGoto: (page) =>
        page.route("**/health", async (route) => {
          const response = await route.fetch();
          const json = await response.json();
          delete json.precision_classes;
          delete json.default_epsilon;
          delete json.summary_bins;
          await route.fulfill({ response, json });
        }),
    });
    const hook = await assertProgress(p, "whole frames");
    assert.equal(hook.mode, "whole");
    assert.equal(hook.summaryFrames, 0);
    assert.equal(hook.epsilon, null);
    const urls = socketsOf(p).map((s) => s.url);
    assert.equal(urls.length, 1, `one subscription: ${JSON.stringify(urls)}`);
    assert.equal(fieldsOf(urls[0]), null, urls[0]);
    assert.equal(new URL(urls[0]).searchParams.get("epsilon"), null, urls[0]);
    // r and m computed in the page.
    const h = await until(() => readHook(p), (x) => Number.isFinite(x.r), "r computed in the page");
    assert.ok(h.r >= 0 && h.r <= 1, `r: ${h.r}`);
    assert.ok(h.magnetization >= -1 && h.magnetization <= 1, `m: ${h.magnetization}`);
    assert.equal(h.histogramBins, 16);
    assert.match(h.note, /whole frames/);
    assert.match(await p.textContent("#stat-p50"), /ms$/, "whole frames carry timestamps: latency shown");
    console.log(`screenshot: ${await screenshot(p, "dashboard-whole.png")}`);
    await p.close();
  });

  it("shows the server unreachable, then reconnects when it returns", async () => {
    page = await open("");
    await assertProgress(page, "before the restart");

    await server.stop();
    await page.waitForFunction(
      () =>
        document.getElementById("app")?.dataset.connected === "false" &&
        document.getElementById("banner-text")?.textContent === "server unreachable — retrying…",
      null,
      { timeout: 10_000 },
    );
    const down = await readHook(page);
    assert.equal(down.connected, false);
    assert.equal(down.banner, "offline");
    assert.equal(await page.getAttribute("#banner", "data-state"), "offline");
    await sleep(1_500); // a few failed attempts, with the banner counting them
    console.log(`screenshot: ${await screenshot(page, "dashboard-offline.png")}`);
    const stalled = await readHook(page);
    assert.equal(stalled.connected, false, "still offline while the server is down");

    await server.start(); // same port; its seqs start again from 1
    await page.waitForFunction(() => window.__phasecast.connected === true, null, { timeout: 15_000 });
    await page.waitForFunction((f) => window.__phasecast.frames > f + 10, stalled.frames, { timeout: 10_000 });
    const back = await assertProgress(page, "after the server returned");
    assert.ok(back.reconnects >= 1, `reconnects: ${back.reconnects}`);
    assert.match(await page.textContent("#banner-text"), /^connected/);
    assert.equal(await page.getAttribute("#app", "data-connected"), "true");
    console.log(`screenshot: ${await screenshot(page, "dashboard-reconnected.png")}`);
  });

  it("had no uncaught errors in the page", () => {
    assert.deepEqual(pageErrors, []);
  });
});
