/**
 * The Subscriber against a fake server (test/support/fake-server.ts) on 127.0.0.1:
 * following a stream, resync on bad frames, reconnect with resume and back-off.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { WebSocket as WsWebSocket } from "ws";
import { backoffDelay, Subscriber, type Format, type ResyncReason, type State, type SubscriberOptions } from "@phasecast/client";
import { FakeServer, type Fault, type FakeServerOptions } from "./support/fake-server.js";
import { sameState } from "./support/encoder.js";

const servers: FakeServer[] = [];
const subscribers: Subscriber[] = [];
after(async () => {
  for (const s of subscribers) s.close();
  await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
});

async function server(options: FakeServerOptions = {}): Promise<FakeServer> {
  const s = await FakeServer.start(options);
  servers.push(s);
  return s;
}

/** A subscriber that records every update and checks it against the server's views. */
function follow(srv: FakeServer, options: Omit<SubscriberOptions, "url"> = {}) {
  const sub = new Subscriber({ url: srv.url, reconnect: { initialMs: 20, maxMs: 200 }, ...options });
  subscribers.push(sub);
  const updates: { seq: number; kind: string; state: State }[] = [];
  const resyncs: { reason: ResyncReason; heldAfter: State | undefined }[] = [];
  sub.onUpdate((state, info) => {
    // Never an unverified state: every state exposed is the server's, bit for bit.
    assert.ok(sameState(state, srv.views[info.seq]!), `update to seq ${info.seq} differs from the server's view`);
    assert.equal(sub.state, state);
    assert.equal(sub.seq, info.seq);
    updates.push({ seq: info.seq, kind: info.kind, state });
  });
  sub.on("resync", (reason) => resyncs.push({ reason, heldAfter: sub.state }));
  return { sub, updates, resyncs, until: (seq: number) => srv.until(() => sub.seq === seq, 15_000, `seq ${seq}`) };
}

/** A state with `n` phases that moves a little each step (so quantised steps are used). */
function state(step: number, n = 6, timestamp = true) {
  return {
    step,
    phases: Array.from({ length: n }, (_, i) => Math.sin(i + step * 0.01) * 3),
    spins: Array.from({ length: n }, (_, i) => ((i * 7 + step) % 5 === 0 ? -1 : 1)),
    energy: -1 - step / 100,
    ...(timestamp ? { timestamp: Date.now() / 1000 } : {}),
  };
}

describe("following a stream", () => {
  for (const format of ["json", "protobuf"] as Format[]) {
    test(`${format}: first a full frame, then deltas, every state exact`, async () => {
      const srv = await server({ epsilon: format === "protobuf" ? 1e-3 : 0 });
      srv.publish(state(0));
      const { sub, updates, until } = follow(srv, { format, WebSocket: WsWebSocket });
      await until(1);
      for (let step = 1; step <= 40; step++) srv.publish(state(step));
      await until(41);
      assert.equal(srv.last.query.get("format"), format);
      assert.equal(srv.last.query.get("resume"), null);
      assert.deepEqual(
        updates.map((u) => u.kind),
        ["full", ...new Array(40).fill("delta")],
      );
      const stats = sub.stats;
      assert.equal(stats.framesReceived, 41);
      assert.equal(stats.fullFrames, 1);
      assert.equal(stats.deltaFrames, 40);
      assert.equal(stats.resyncs, 0);
      assert.ok(stats.bytesReceived > 41 * 20);
      assert.ok(stats.lastLatency !== undefined && stats.lastLatency >= 0 && stats.lastLatency < 5);
      sub.close();
    });
  }

  test("options become query parameters; delta=false gets only full frames", async () => {
    const srv = await server();
    srv.publish(state(0, 3, false));
    const { sub, until } = follow(srv, { format: "protobuf", delta: false, maxHz: 30, stream: "lab-1.a", key: "s3cret" });
    await until(1);
    srv.publish(state(1, 3, false));
    srv.publish(state(2, 3, false));
    await until(3);
    const q = srv.last.query;
    assert.equal(q.get("format"), "protobuf");
    assert.equal(q.get("delta"), "false");
    assert.equal(q.get("max_hz"), "30");
    assert.equal(q.get("stream"), "lab-1.a");
    // Node can send headers: the key goes there, never in the URL.
    assert.equal(q.get("key"), null);
    assert.equal(srv.last.headers["x-api-key"], "s3cret");
    assert.equal(sub.stats.deltaFrames, 0);
    assert.equal(sub.stats.fullFrames, 3);
    assert.equal(sub.stats.lastLatency, undefined);
    sub.close();
  });

  test("async iteration yields the newest state and ends on close()", async () => {
    const srv = await server();
    srv.publish(state(0));
    const { sub } = follow(srv);
    const seen: number[] = [];
    const publisher = setInterval(() => srv.publish(state(srv.seq)), 2);
    for await (const s of sub) {
      seen.push(s.step);
      if (s.step >= 20) break;
    }
    clearInterval(publisher);
    assert.ok(seen.length > 0 && seen[seen.length - 1]! >= 20);
    assert.ok(seen.every((s, i) => i === 0 || s > seen[i - 1]!), "steps increase");
    // A second iterator, waiting, ends when the subscriber is closed.
    const it = sub[Symbol.asyncIterator]();
    await it.next(); // the state held
    const pending = it.next();
    sub.close();
    assert.deepEqual(await pending, { value: undefined, done: true });
  });

  test("with ws, a ping behind a frame is answered only once the frame is handled", async () => {
    const srv = await server();
    srv.publish(state(0));
    const { sub, until } = follow(srv);
    await until(1);
    const conn = srv.last;
    const pongs: string[] = [];
    conn.socket.on("pong", (data) => pongs.push(data.toString()));
    conn.socket.ping("idle");
    await srv.until(() => pongs.length === 1, 15_000, "the pong of a ping with nothing before it");
    // The listener pauses on the next state; a ping written right behind its frame
    // (read in the same chunk, or left in the paused socket) is answered only after
    // resume(), never while the frame waits.
    const off = sub.onUpdate((_, { seq }) => {
      if (seq === 2) sub.pause();
    });
    srv.publish(state(1));
    conn.socket.ping("behind");
    await until(2);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(pongs, ["idle"], "answered while the subscriber was paused");
    off();
    sub.resume();
    await srv.until(() => pongs.length === 2, 15_000, "the pong after resume()");
    assert.deepEqual(pongs, ["idle", "behind"]);
    sub.close();
  });

  test("pause() holds frames back in order; resume() handles them", async () => {
    const srv = await server();
    srv.publish(state(0));
    const { sub, updates, until } = follow(srv);
    await until(1);
    sub.pause();
    for (let step = 1; step <= 5; step++) srv.publish(state(step));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(updates.length, 1);
    sub.resume();
    await until(6);
    assert.deepEqual(
      updates.map((u) => u.seq),
      [1, 2, 3, 4, 5, 6],
    );
    sub.close();
  });
});

describe("resync", () => {
  const expected: Record<Fault, ResyncReason> = { checksum: "checksum", base_seq: "base_seq", truncate: "decode", garbage: "checksum" };
  for (const format of ["json", "protobuf"] as Format[]) {
    for (const fault of Object.keys(expected) as Fault[]) {
      test(`${format}: a ${fault} fault drops the state, sends resync, recovers on the full frame`, async () => {
        const srv = await server();
        srv.publish(state(0));
        const { sub, updates, resyncs, until } = follow(srv, { format });
        await until(1);
        srv.last.faults.push(fault);
        srv.publish(state(1));
        await until(2);
        assert.deepEqual(
          resyncs.map((r) => r.reason),
          [expected[fault]],
        );
        assert.equal(resyncs[0]!.heldAfter, undefined, "state dropped at once");
        const conn = srv.last;
        assert.equal(conn.resyncs.length, 1);
        if (format === "json") assert.equal(conn.resyncs[0], '{"op":"resync"}');
        else assert.deepEqual([...(conn.resyncs[0] as Uint8Array)], [0x0a, 0x00]);
        // seq 2 came as the corrupt delta (not applied), then as the full answer.
        assert.deepEqual(
          updates.map((u) => `${u.kind}:${u.seq}`),
          ["full:1", "full:2"],
        );
        assert.equal(sub.stats.resyncs, 1);
        assert.equal(sub.stats.decodeErrors, fault === "truncate" ? 1 : 0);
        srv.publish(state(2));
        await until(3);
        assert.equal(updates[updates.length - 1]!.kind, "delta");
        sub.close();
      });
    }
  }

  test("resync() drops the state and asks for a full frame", async () => {
    const srv = await server();
    srv.publish(state(0));
    const { sub, updates, resyncs, until } = follow(srv, { format: "protobuf" });
    await until(1);
    srv.publish(state(1));
    await until(2);
    sub.resync();
    assert.equal(sub.state, undefined);
    await until(2);
    assert.deepEqual(
      resyncs.map((r) => r.reason),
      ["manual"],
    );
    assert.deepEqual(
      updates.map((u) => `${u.kind}:${u.seq}`),
      ["full:1", "delta:2", "full:2"],
    );
    sub.close();
  });

  test("deltas are ignored until a full frame, and resync is sent once", async () => {
    const srv = await server({ keyframeInterval: 8 });
    srv.publish(state(0));
    const { sub, updates, until } = follow(srv, { format: "protobuf" });
    await until(1);
    const conn = srv.last;
    conn.deaf = true;
    conn.faults.push("checksum");
    for (let step = 1; step <= 6; step++) srv.publish(state(step));
    await srv.until(() => sub.stats.framesReceived === 7, 15_000, "7 frames");
    assert.equal(sub.state, undefined);
    assert.equal(sub.seq, undefined);
    assert.equal(sub.stats.ignoredDeltas, 5);
    await srv.until(() => conn.resyncs.length > 0, 15_000, "the resync request");
    srv.publish(state(7)); // seq 8: a keyframe
    await until(8);
    assert.equal(conn.resyncs.length, 1, "one resync request for one drop");
    assert.deepEqual(
      updates.map((u) => `${u.kind}:${u.seq}`),
      ["full:1", "full:8"],
    );
    sub.close();
  });
});

describe("reconnect", () => {
  test("after a drop it resumes from the seq held and gets a delta", async () => {
    const srv = await server();
    for (let step = 0; step < 5; step++) srv.publish(state(step));
    const { sub, updates, until } = follow(srv, { format: "protobuf", reconnect: { initialMs: 20, jitter: 0 } });
    await until(5);
    const reconnects: number[] = [];
    sub.on("reconnect", (attempt) => reconnects.push(attempt));
    // Published when the client sees the connection close, so before it reconnects
    // (whatever the delay and the machine's speed).
    sub.on("close", () => {
      for (let step = 5; step < 8; step++) srv.publish(state(step));
    });
    srv.dropAll();
    await until(8);
    assert.equal(srv.history.length, 2);
    assert.equal(srv.last.query.get("resume"), "5");
    assert.deepEqual(srv.last.sent[0], { kind: "delta", seq: 8, baseSeq: 5 });
    assert.deepEqual(
      updates.map((u) => `${u.kind}:${u.seq}`),
      ["full:5", "delta:8"],
    );
    assert.deepEqual(reconnects, [1]);
    assert.equal(sub.stats.connections, 2);
    sub.close();
  });

  test("a resume the server no longer has gets a full frame", async () => {
    const srv = await server({ history: 4 });
    srv.publish(state(0, 4));
    const { sub, updates, until } = follow(srv, { format: "json", reconnect: { initialMs: 20, jitter: 0 } });
    await until(1);
    sub.on("close", () => {
      for (let step = 1; step < 10; step++) srv.publish(state(step, 4));
    });
    srv.dropAll();
    await until(10);
    assert.equal(srv.last.query.get("resume"), "1");
    assert.deepEqual(
      updates.map((u) => `${u.kind}:${u.seq}`),
      ["full:1", "full:10"],
    );
    sub.close();
  });

  test("while the server is down the delays back off to the cap; it comes back", async () => {
    let srv = await server();
    srv.publish(state(0));
    const sub = new Subscriber({ url: srv.url, reconnect: { initialMs: 20, maxMs: 80, jitter: 0 } });
    subscribers.push(sub);
    await srv.until(() => sub.seq === 1, 15_000, "seq 1");
    const delays: number[] = [];
    sub.on("reconnect", (_attempt, delay) => delays.push(delay));
    const port = srv.port;
    await srv.stop();
    await srv.until(() => delays.length >= 5, 15_000, "5 reconnects");
    assert.deepEqual(delays.slice(0, 5), [20, 40, 80, 80, 80]);
    assert.equal(sub.seq, 1, "the verified state is kept while disconnected");
    srv = await server({ port });
    srv.publish(state(10));
    await srv.until(() => sub.seq === 1 && sub.state?.step === 10, 15_000, "the new server's state");
    // It resumed from seq 1, which the new server also has, with another state: the
    // first frame is then either a full frame or a delta whose checksum fails
    // (dropped, resync, full frame). Either way it holds the new state exactly.
    assert.equal(srv.last.query.get("resume"), "1");
    assert.ok(sameState(sub.state!, srv.views[1]!));
    sub.close();
  });

  test("backoffDelay: min(cap, base * 2^n) * (0.5 + 0.5 * random())", () => {
    assert.deepEqual(
      [0, 1, 2, 3, 10].map((a) => backoffDelay(a, { initialMs: 100, maxMs: 500, jitter: 0 })),
      [100, 200, 400, 500, 500],
    );
    assert.equal(backoffDelay(1, { initialMs: 100, jitter: 0.5 }, () => 0.999999), 200 * (0.5 + 0.5 * 0.999999));
    assert.equal(backoffDelay(1, { initialMs: 100 }, () => 0), 100);
    // The defaults of docs/clients.md: base 250 ms, cap 10 s.
    assert.deepEqual(
      [0, 1, 2, 5, 6, 20].map((a) => backoffDelay(a, {}, () => 1)),
      [250, 500, 1000, 8000, 10_000, 10_000],
    );
    assert.deepEqual(
      [0, 6].map((a) => backoffDelay(a, {}, () => 0)),
      [125, 5000],
    );
  });

  test("a WebSocket implementation that cannot connect ends the subscriber with an error", async () => {
    const Broken = class {
      constructor() {
        throw new Error("no sockets here");
      }
    } as unknown as SubscriberOptions["WebSocket"];
    const sub = new Subscriber({ url: "ws://127.0.0.1:9/ws", ...(Broken ? { WebSocket: Broken } : {}) });
    const errors: string[] = [];
    sub.on("error", (e) => errors.push(e.message));
    await assert.rejects(async () => {
      for await (const _ of sub) assert.fail("no state expected");
    }, /no sockets here/);
    assert.deepEqual(errors, ["no sockets here"]);
    assert.ok(sub.ended);
  });
});
