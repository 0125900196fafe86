/**
 * The conformance runner (dist/conformance.js) as a process, against the fake server.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "node:test";
import { FakeServer, type FakeConnection } from "./support/fake-server.js";
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
 * after each line; the process is then killed).
 */
function run(args: string[], stopWhen?: (lines: Run["lines"]) => boolean): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUNNER, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const lines: Run["lines"] = [];
    let partial = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      partial += chunk;
      let end: number;
      while ((end = partial.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(partial.slice(0, end)) as Run["lines"][number]);
        partial = partial.slice(end + 1);
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
      const result = await run(["--url", srv.url, "--format", format, "--delta", "true", "--until-seq", String(until), "--timeout", "10"]);
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
    const srv = await FakeServer.start({ slowBytes: 32 * 1024, history: 100_000 });
    servers.push(srv);
    // Frames of 8000 phases (64 KB) published every 2 ms, read one per 10 ms: once
    // the socket buffers are full (Linux grows them to many MB) the server skips.
    srv.publish(makeState(0, new Array(8000).fill(1), [], 0));
    const stop = publishing(srv, 8000, 2, 9);
    const conn = (): FakeConnection | undefined => srv.history[0];
    /** The first delta the server sent from an older base (it skipped frames before it). */
    const skipDelta = (): FakeConnection["sent"][number] | undefined =>
      conn()?.sent.find((f) => f.kind === "delta" && f.baseSeq! < f.seq - 1);
    const result = await run(
      ["--url", srv.url, "--format", "protobuf", "--delta", "true", "--until-seq", "1000000", "--slow-ms", "10", "--timeout", "15"],
      (lines) => {
        const skip = skipDelta();
        return skip !== undefined && lines[lines.length - 1]!.seq >= skip.seq;
      },
    );
    stop();
    assert.notEqual(result.code, 2, `timed out: ${result.stderr}`);
    assert.ok(conn()!.skipped > 0, "the server saw back-pressure");
    const skip = skipDelta()!;
    const seqs = result.lines.map((l) => l.seq);
    assert.ok(seqs.includes(skip.seq) && !seqs.includes(skip.seq - 1), `a gap before seq ${skip.seq}`);
    checkLines(srv, result.lines);
  });

  test("exits 2 on timeout, 1 on bad arguments", async () => {
    const srv = await FakeServer.start();
    servers.push(srv);
    srv.publish(makeState(0, [1], [], 0));
    const timeout = await run(["--url", srv.url, "--format", "json", "--delta", "true", "--until-seq", "99", "--timeout", "0.5"]);
    assert.equal(timeout.code, 2);
    assert.equal(timeout.lines.length, 1);
    assert.match(timeout.stderr, /timeout/);
    const bad = await run(["--url", srv.url, "--format", "xml", "--until-seq", "1"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /usage/);
  });
});
