/**
 * The client against a real `phasecast serve` ($PHASECAST_BIN), on 127.0.0.1:
 * the connection rules of docs/clients.md that need the real server's answers.
 * Skips with a message when PHASECAST_BIN is unset (fails with PHASECAST_REQUIRE_TOOLS=1).
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  ConnectError,
  Producer,
  PublishError,
  Subscriber,
  type StatusChange,
  type SubscriberOptions,
  type UpdateInfo,
} from "@phasecast/client";
import { freePort, Phasecast, serverSkip } from "./support/phasecast.js";

const skip = serverSkip();
if (skip) console.log(`# real-server tests ${skip}`);

const SUBSCRIBE_KEY = "sub-key-1";
const API_KEY = "prod-key-1";
const UNAUTHORIZED = "missing or invalid API key (send it as X-API-Key)";

const subscribers: Subscriber[] = [];
function subscriber(options: SubscriberOptions): Subscriber {
  const sub = new Subscriber(options);
  subscribers.push(sub);
  return sub;
}

/** Resolves with the next `event`'s change. */
function next(sub: Subscriber, event: "connected" | "reconnecting" | "closed"): Promise<StatusChange> {
  return new Promise((resolve) => {
    const stop = sub.on(event, (change) => {
      stop();
      resolve(change);
    });
  });
}

/** Resolves with the first update for which `predicate` holds. */
function updateWhere(sub: Subscriber, predicate: (info: UpdateInfo) => boolean): Promise<UpdateInfo> {
  return new Promise((resolve) => {
    const stop = sub.onUpdate((_state, info) => {
      if (predicate(info)) {
        stop();
        resolve(info);
      }
    });
  });
}

describe("against a real phasecast server", { skip, timeout: 120_000 }, () => {
  let demo: Phasecast;
  let keyed: Phasecast;
  let limited: Phasecast;

  before(async () => {
    [demo, keyed, limited] = await Promise.all([
      Phasecast.start(["--demo"]),
      Phasecast.start(["--subscribe-key", SUBSCRIBE_KEY, "--api-key", API_KEY]),
      Phasecast.start(["--producer-rate-limit", "1"]),
    ]);
  });

  after(async () => {
    for (const s of subscribers) s.close();
    await Promise.all([demo?.stop(), keyed?.stop(), limited?.stop()]);
  });

  for (const format of ["json", "protobuf"] as const) {
    test(`${format}: follows the demo stream; each state with its seq, kind and epoch`, async () => {
      const sub = subscriber({ url: demo.ws, format });
      const infos: UpdateInfo[] = [];
      sub.onUpdate((_s, info) => infos.push(info));
      await sub.ready();
      const last = await updateWhere(sub, () => infos.length >= 20);
      assert.equal(infos[0]!.kind, "full");
      // (The demo moves every phase each step, so the server mostly sends full frames.)
      assert.ok(infos.every((i) => i.kind === "full" || i.kind === "delta"));
      assert.ok(infos.every((i, k) => k === 0 || i.seq > infos[k - 1]!.seq), "seqs increase");
      assert.equal(sub.state!.phases.length, 32);
      // Today's server sends no epoch; a newer one does. Either way the client says so.
      assert.equal(last.epoch, sub.epoch);
      if (sub.epoch !== undefined) assert.match(sub.connectUrl(), /[?&]epoch=/);
      const stats = sub.stats;
      assert.equal(stats.framesReceived, stats.fullFrames + stats.deltaFrames);
      assert.ok(stats.bytesReceived > 0);
      assert.equal(stats.resyncs, 0);
      sub.close();
    });
  }

  test("the README's Node snippet works as pasted (pointed at this server's port)", async () => {
    const readme = readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");
    const snippet = /<!-- snippet: node -->\n```js\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(snippet !== undefined && snippet.includes("localhost:8787"), "the Node snippet uses the default port");
    // In build/, inside the package: `import "@phasecast/client"` resolves to this package.
    const file = fileURLToPath(new URL("../readme-node.mjs", import.meta.url));
    writeFileSync(file, snippet.replaceAll("localhost:8787", `127.0.0.1:${demo.port}`));
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [file], { timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      child.stdin?.end();
    });
    assert.equal(code, 0, stderr);
    const lines = stdout.trim().split("\n");
    assert.equal(lines.length, 5, stdout);
    for (const line of lines) assert.match(line, /^seq \d+: step \d+, energy -?[\d.e+-]+, 32 phases$/);
  });

  test("an empty path gets /ws", async () => {
    const sub = await Subscriber.connect({ url: `http://127.0.0.1:${demo.port}` });
    subscribers.push(sub);
    assert.match(sub.connectUrl(), /^ws:\/\/127\.0\.0\.1:\d+\/ws/);
    await updateWhere(sub, () => true);
    sub.close();
  });

  test("a wrong port fails the first connect within the configured tries (within 30 s at the defaults)", async () => {
    const port = await freePort();
    const started = Date.now();
    const sub = subscriber({ url: `ws://127.0.0.1:${port}/ws` });
    const retries: number[] = [];
    sub.on("reconnect", (attempt) => retries.push(attempt));
    const error = await sub.ready().then(
      () => assert.fail("connected to a port nothing listens on"),
      (e: unknown) => e,
    );
    const elapsed = Date.now() - started;
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(error.kind, "network");
    assert.equal(error.tries, 5, "the default first_connect_tries");
    assert.deepEqual(retries, [1, 2, 3, 4]);
    assert.ok(elapsed < 30_000, `failed after ${elapsed} ms`);
    assert.equal(sub.status, "closed");
  });

  test("a wrong key fails at once with 401 and the server's reason; the right one connects", async () => {
    for (const options of [{ key: "wrong" }, {}, { key: "wrong", keyIn: "query" as const }]) {
      const sub = subscriber({ url: keyed.ws, ...options });
      const retries: unknown[] = [];
      sub.on("reconnect", (...args) => retries.push(args));
      await assert.rejects(sub.ready(), (e: unknown) => {
        assert.ok(e instanceof ConnectError, String(e));
        assert.equal(e.status, 401);
        assert.equal(e.error, UNAUTHORIZED);
        assert.equal(e.permanent, true);
        assert.match(e.message, /401: missing or invalid API key/);
        assert.doesNotMatch(e.message, /wrong/, "the key is not in the message");
        return true;
      });
      assert.deepEqual(retries, [], "not retried");
    }
    // In the X-API-Key header (Node's default), and as ?key= (what browsers do).
    for (const keyIn of ["header", "query"] as const) {
      const sub = await Subscriber.connect({ url: keyed.ws, key: SUBSCRIBE_KEY, keyIn });
      subscribers.push(sub);
      assert.equal(sub.status, "connected");
      assert.equal(/[?&]key=/.test(sub.connectUrl()), keyIn === "query");
      sub.close();
    }
  });

  test("a wrong path fails at once with 404; a page that is not the WebSocket too; a bad parameter with 400 and its field", async () => {
    await assert.rejects(Subscriber.connect({ url: `ws://127.0.0.1:${demo.port}/nope` }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 404);
      assert.equal(e.error, "no such endpoint; see GET / for the list");
      assert.equal(e.tries, undefined, "one try");
      return true;
    });
    await assert.rejects(Subscriber.connect({ url: `ws://127.0.0.1:${demo.port}/health` }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 200);
      assert.equal(e.permanent, true);
      assert.match(e.message, /not a phasecast WebSocket endpoint/);
      return true;
    });
    await assert.rejects(Subscriber.connect({ url: demo.ws, params: { max_hz: 0 } }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 400);
      assert.equal(e.field, "max_hz");
      assert.match(e.error ?? "", /max_hz/);
      return true;
    });
  });

  test("a server restart mid-stream is survived with a resume", async () => {
    const server = await Phasecast.start(["--demo"]);
    try {
      const sub = subscriber({ url: server.ws, format: "protobuf" });
      await updateWhere(sub, (i) => i.seq >= 20);
      const reconnecting = next(sub, "reconnecting");
      await server.stop();
      const lost = await reconnecting;
      assert.ok(lost.error instanceof ConnectError, String(lost.error));
      // SIGTERM: the server closes its subscribers with 1001 "server shutting down".
      assert.equal(lost.error.permanent, false);
      const held = sub.seq;
      assert.ok(held !== undefined && held >= 20, "the state is kept while disconnected");
      const reconnected = next(sub, "connected");
      const after = updateWhere(sub, () => true);
      await server.start();
      const change = await reconnected;
      assert.equal(change.previous, "reconnecting");
      assert.match(change.url, new RegExp(`[?&]resume=${held}(&|$)`), `reconnected with ${change.url}`);
      // The new server's seqs start again. Without an epoch (today's server) a resume it
      // can serve brings a delta from its own state at that seq: applied only if the
      // checksum matches, else dropped and resynced. Either way states flow again.
      const first = await after;
      await updateWhere(sub, (i) => i.seq > first.seq);
      assert.ok(sub.stats.reconnects >= 1);
      assert.equal(sub.stats.connections, 2);
      sub.close();
    } finally {
      await server.stop();
    }
  });

  test("429 surfaces Retry-After (POST over the producer rate limit)", async () => {
    const producer = new Producer({ url: limited.http });
    const state = { step: 1, phases: [0.1, 0.2], spins: [1, -1], energy: -1 };
    let refusal: unknown;
    // --producer-rate-limit 1: one state a second (one second of burst); the next ones are refused.
    for (let k = 0; k < 100 && refusal === undefined; k++) {
      await producer.publish({ ...state, step: k }).catch((e: unknown) => {
        refusal = e;
      });
    }
    assert.ok(refusal instanceof PublishError, `refused: ${String(refusal)}`);
    assert.equal(refusal.status, 429);
    assert.match(refusal.error, /rate limited/);
    assert.ok(refusal.retryAfter !== undefined && refusal.retryAfter >= 1, `Retry-After: ${refusal.retryAfter}`);
    assert.match(refusal.message, /retry after/);
  });

  test("ingest: a wrong key fails at once with 401 and the server's reason; the right one streams", async () => {
    await assert.rejects(new Producer({ url: keyed.http, key: "wrong" }).connect(), (e: unknown) => {
      assert.ok(e instanceof ConnectError, String(e));
      assert.equal(e.status, 401);
      assert.equal(e.error, UNAUTHORIZED);
      return true;
    });
    const http = new Producer({ url: keyed.http, key: "wrong" });
    await assert.rejects(http.publish({ step: 1, phases: [1], energy: 0 }), (e: unknown) => {
      assert.ok(e instanceof PublishError);
      assert.equal(e.status, 401);
      assert.equal(e.error, UNAUTHORIZED);
      assert.equal(e.step, 1);
      return true;
    });

    const sub = await Subscriber.connect({ url: keyed.ws, key: SUBSCRIBE_KEY, stream: "ingest-test", format: "protobuf" }).catch(
      (e: unknown) => e,
    );
    // The stream does not exist yet: 404 with field "stream" is the server's answer.
    assert.ok(sub instanceof ConnectError);
    assert.equal(sub.status, 404);
    assert.equal(sub.field, "stream");

    const ingest = await new Producer({ url: keyed.http, key: API_KEY, stream: "ingest-test", format: "protobuf" }).connect();
    ingest.send({ step: 7, phases: [0.5, 1.5], spins: [1, -1], energy: -0.5 });
    // The server answers only rejections: /health tells when the stream has the state.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const health = (await (await fetch(`${keyed.http}/health`)).json()) as { streams: { name: string; seq: number }[] };
      if (health.streams.some((st) => st.name === "ingest-test" && st.seq >= 1)) break;
      assert.ok(Date.now() < deadline, "the ingested state did not arrive within 10 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    const follower = subscriber({ url: keyed.ws, key: SUBSCRIBE_KEY, stream: "ingest-test" });
    const first = await updateWhere(follower, () => true);
    assert.equal(follower.state!.step, 7);
    assert.equal(first.kind, "full");
    // A rejected state: the server names the field; the socket stays open.
    const rejected = new Promise<string>((resolve) => ingest.onReject((r) => resolve(`${r.field}:${r.step}`)));
    ingest.send({ step: 8, phases: [0.5, 1.5], spins: [1, 1, 1], energy: -0.5 });
    assert.match(await rejected, /spins.*:8/);
    assert.ok(ingest.open);
    ingest.close();
    follower.close();
  });
});
