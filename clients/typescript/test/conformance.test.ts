/**
 * The conformance runner (dist/conformance.js) as a process, against the fake server.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "node:test";
import { FakeServer } from "./support/fake-server.js";
import { makeState, rng, sameState } from "./support/encoder.js";

// build/test/conformance.test.js -> dist/conformance.js
const RUNNER = fileURLToPath(new URL("../../dist/conformance.js", import.meta.url));

interface Run {
  code: number | null;
  lines: { seq: number; step: number; energy: number; timestamp: number | null; phases: number[]; spins: number[] }[];
  stderr: string;
}

/**
 * Runs the conformance runner to its end, or until `stopWhen(lines)` holds (checked
 * after each line; the process is then killed). `onLine` sees each line as it comes.
 */
function run(
  args: string[],
  stopWhen?: (lines: Run["lines"]) => boolean,
  onLine?: (line: Run["lines"][number]) => void,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUNNER, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const lines: Run["lines"] = [];
    let partial = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      partial += chunk;
      let end: number;
      while ((end = partial.indexOf("\n")) >= 0) {
        const line = JSON.parse(partial.slice(0, end)) as Run["lines"][number];
        lines.push(line);
        partial = partial.slice(end + 1);
        onLine?.(line);
        if (stopWhen?.(lines)) child.kill();
      }
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, lines, stderr }));
  });
}

const servers: FakeServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

/** Publishes a state of `n` random phases every `ms` until stopped. */
function publishing(srv: FakeServer, n: number, ms: number, seed: number): () => void {
  const r = rng(seed);
  let step = srv.seq;
  const timer = setInterval(() => {
    step++;
    const phases = Array.from({ length: n }, (_, i) => (i % 4 === 0 ? -0 : r() * 6));
    const spins = Array.from({ length: n }, () => (r() < 0.5 ? 1 : -1));
    srv.publish(makeState(step, phases, spins, -step / 7, step % 3 === 0 ? undefined : 1_764_000_000 + step / 100));
  }, ms);
  return () => clearInterval(timer);
}

function checkLines(srv: FakeServer, lines: Run["lines"]): void {
  let last = 0;
  for (const line of lines) {
    assert.ok(line.seq > last, "seqs increase");
    last = line.seq;
    const state = makeState(line.step, line.phases, line.spins, line.energy, line.timestamp ?? undefined);
    assert.ok(sameState(state, srv.views[line.seq]!), `line for seq ${line.seq} is the server's state`);
  }
}

describe("conformance runner", () => {
  for (const format of ["json", "protobuf"] as const) {
    test(`${format}: prints every state it holds and exits 0 at --until-seq`, async () => {
      const srv = await FakeServer.start();
      servers.push(srv);
      srv.publish(makeState(0, [0.5, -0, 2], [1, -1, 1], -1.25, 1764000000.5));
      const stop = publishing(srv, 16, 3, 7);
      const until = srv.seq + 150;
      const result = await run(["--url", srv.url, "--format", format, "--delta", "true", "--until-seq", String(until), "--timeout", "60"]);
      stop();
      assert.equal(result.code, 0, result.stderr);
      // In step: one line per seq from the one it joined at.
      const first = result.lines[0]!.seq;
      assert.deepEqual(
        result.lines.map((l) => l.seq),
        Array.from({ length: result.lines.length }, (_, k) => first + k),
      );
      assert.ok(result.lines.at(-1)!.seq >= until);
      checkLines(srv, result.lines);
      assert.equal(srv.history[0]!.query.get("format"), format);
      assert.ok(srv.history[0]!.sent.some((f) => f.kind === "delta"));
    });
  }

  test("--delta false and --stream are passed on", async () => {
    const srv = await FakeServer.start();
    servers.push(srv);
    srv.publish(makeState(0, [1], [], 0));
    const stop = publishing(srv, 4, 3, 8);
    const result = await run(["--url", srv.url, "--format", "json", "--delta", "false", "--stream", "s1", "--until-seq", String(srv.seq + 5)]);
    stop();
    assert.equal(result.code, 0, result.stderr);
    assert.equal(srv.history[0]!.query.get("delta"), "false");
    assert.equal(srv.history[0]!.query.get("stream"), "s1");
    assert.ok(srv.history[0]!.sent.every((f) => f.kind === "full"));
    checkLines(srv, result.lines);
  });

  test("--slow-ms makes a slow reader: the server skips frames, the states stay exact", async () => {
    // Deterministic by events: the fake server skips a frame whenever the runner has
    // not yet printed the last frame sent to it (it is "behind"), and each line the
    // runner prints makes the test publish three states. So every frame after the
    // second is a delta over two skipped seqs, whatever the machine's speed or the
    // kernel's socket buffers. A runner that printed too early (did not pause) or
    // never caught up would show in the lines and the pause lower bound below.
    let printed = 0;
    const srv = await FakeServer.start({
      history: 10_000,
      isBehind: (conn) => printed < (conn.sent.at(-1)?.seq ?? 0),
    });
    servers.push(srv);
    const r = rng(9);
    const publish = (): void => {
      const step = srv.seq + 1;
      const phases = Array.from({ length: 64 }, (_, i) => (i % 4 === 0 ? -0 : r() * 6));
      const spins = Array.from({ length: 64 }, () => (r() < 0.5 ? 1 : -1));
      srv.publish(makeState(step, phases, spins, -step / 7, step % 3 === 0 ? undefined : 1_764_000_000 + step / 100));
    };
    publish();
    const slowMs = 40;
    const until = 61;
    const arrivals: number[] = [];
    const result = await run(
      ["--url", srv.url, "--format", "protobuf", "--delta", "true", "--until-seq", String(until), "--slow-ms", String(slowMs), "--timeout", "60"],
      undefined,
      (line) => {
        arrivals.push(performance.now());
        printed = line.seq;
        if (line.seq < until) for (let k = 0; k < 3; k++) publish();
      },
    );
    assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`);
    const conn = srv.history[0]!;
    const seqs = result.lines.map((l) => l.seq);
    // Every frame the server sent became a line, in order, and nothing else did.
    assert.deepEqual(seqs, conn.sent.map((f) => f.seq));
    assert.equal(seqs[0], 1);
    assert.ok(seqs.at(-1)! >= until);
    // After the first delta, each frame skips two seqs: the base is three behind.
    const skips = conn.sent.filter((f) => f.kind === "delta" && f.baseSeq! < f.seq - 1);
    assert.ok(skips.length >= 15, `skip deltas: ${skips.length}`);
    assert.ok(conn.skipped >= 2 * skips.length, `frames skipped: ${conn.skipped}`);
    for (const f of skips) assert.equal(f.baseSeq, f.seq - 3, `delta to ${f.seq} from ${f.baseSeq}`);
    assert.ok(seqs.some((seq, k) => k > 0 && seq > seqs[k - 1]! + 1), "gaps in the seqs printed");
    checkLines(srv, result.lines);
    // The runner paused --slow-ms after each frame before it took the next: a lower
    // bound (halved for pipe delays), which a loaded machine can only exceed.
    const span = arrivals.at(-1)! - arrivals[0]!;
    assert.ok(span >= ((seqs.length - 1) * slowMs) / 2, `${seqs.length} lines in ${Math.round(span)} ms`);
  });

  test("exits 2 on timeout, 1 on bad arguments", async () => {
    const srv = await FakeServer.start();
    servers.push(srv);
    srv.publish(makeState(0, [1], [], 0));
    const timeout = await run(["--url", srv.url, "--format", "json", "--delta", "true", "--until-seq", "99", "--timeout", "1"]);
    assert.equal(timeout.code, 2);
    // Seq 1 is all there is (printed if it arrived within the second).
    assert.ok(timeout.lines.every((l) => l.seq === 1) && timeout.lines.length <= 1);
    assert.match(timeout.stderr, /timeout/);
    const bad = await run(["--url", srv.url, "--format", "xml", "--until-seq", "1"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /usage/);
  });
});
