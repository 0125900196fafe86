/**
 * The Producer against a fake HTTP + `/ingest` server on 127.0.0.1.
 */

import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { WebSocketServer } from "ws";
import { pb, Producer, PublishError, type IngestRejection } from "@phasecast/client";

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

const received: Received[] = [];
const ingested: { url: string; key: string | undefined; data: Buffer; binary: boolean }[] = [];
/** What the fake server answers next: status, body, headers. */
let answer: { status: number; body: string; headers?: Record<string, string> } = { status: 200, body: "" };

const http = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks) });
    res.writeHead(answer.status, { "Content-Type": "application/json", ...answer.headers }).end(answer.body);
  });
});
const wss = new WebSocketServer({ server: http, path: "/ingest" });
wss.on("connection", (socket, req) => {
  const key = req.headers["x-api-key"];
  socket.on("message", (data: Buffer, binary: boolean) => {
    ingested.push({ url: req.url ?? "", key: typeof key === "string" ? key : undefined, data, binary });
    // Reject states with step 13, as the server rejects invalid ones.
    const step = binary ? Number(fromBinary(pb.PccStateSchema, data).step) : (JSON.parse(data.toString()) as { step: number }).step;
    if (step === 13) socket.send(JSON.stringify({ ok: false, error: "phases[0]: must be a finite number", field: "phases[0]", step }));
  });
});
let base = "";
before(async () => {
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});
after(async () => {
  for (const client of wss.clients) client.terminate();
  await new Promise((resolve) => wss.close(resolve));
  await new Promise((resolve) => http.close(resolve));
});

const STATE = { step: 1200, phases: [0.12, 3.0, 6.1], spins: [1, -1, 1], energy: -0.82, timestamp: 1764150000.125 };

describe("Producer.publish", () => {
  test("JSON to /pcc_state", async () => {
    answer = { status: 200, body: '{"ok":true,"seq":57,"step":1200,"clients":12,"processing_time_ms":0.04}' };
    const result = await new Producer({ url: base }).publish(STATE);
    assert.deepEqual(result, { ok: true, seq: 57, step: 1200, clients: 12, processing_time_ms: 0.04 });
    const req = received.at(-1)!;
    assert.equal(req.method, "POST");
    assert.equal(req.url, "/pcc_state");
    assert.equal(req.headers["content-type"], "application/json");
    assert.equal(req.headers["x-api-key"], undefined);
    assert.deepEqual(JSON.parse(req.body.toString()), STATE);
  });

  test("protobuf to /streams/{name}/state with the key, under a path prefix", async () => {
    answer = { status: 200, body: '{"ok":true,"seq":1,"step":1200,"clients":0,"processing_time_ms":0.01}' };
    const producer = new Producer({ url: `${base}/phasecast`, stream: "lab 1", format: "protobuf", key: "k3y" });
    assert.equal((await producer.publish(STATE)).seq, 1);
    const req = received.at(-1)!;
    assert.equal(req.url, "/phasecast/streams/lab%201/state");
    assert.equal(req.headers["content-type"], "application/x-protobuf");
    assert.equal(req.headers["x-api-key"], "k3y");
    const msg = fromBinary(pb.PccStateSchema, req.body);
    assert.equal(msg.step, 1200n);
    assert.deepEqual(msg.phases, STATE.phases);
    assert.deepEqual(msg.spins, STATE.spins);
    assert.equal(msg.timestamp, STATE.timestamp);
  });

  test("errors carry status, message, field and Retry-After", async () => {
    answer = { status: 422, body: '{"ok":false,"error":"phases[3]: must be a finite number","field":"phases[3]"}' };
    const producer = new Producer({ url: base });
    await assert.rejects(producer.publish(STATE), (e: unknown) => {
      assert.ok(e instanceof PublishError);
      assert.equal(e.status, 422);
      assert.equal(e.field, "phases[3]");
      assert.equal(e.error, "phases[3]: must be a finite number");
      return true;
    });
    answer = { status: 429, body: '{"ok":false,"error":"rate limited"}', headers: { "Retry-After": "2" } };
    await assert.rejects(producer.publish(STATE), (e: unknown) => e instanceof PublishError && e.status === 429 && e.retryAfter === 2);
    answer = { status: 502, body: "bad gateway" };
    await assert.rejects(producer.publish(STATE), (e: unknown) => e instanceof PublishError && e.error === "bad gateway");
  });
});

describe("Producer.connect (/ingest)", () => {
  for (const format of ["json", "protobuf"] as const) {
    test(`${format}: streams states and surfaces rejections`, async () => {
      ingested.length = 0;
      const producer = new Producer({ url: base, stream: "lab1", format, key: "k3y" });
      assert.equal(producer.ingestUrl, base.replace("http:", "ws:") + "/ingest?stream=lab1");
      const ingest = await producer.connect();
      const rejections: IngestRejection[] = [];
      ingest.onReject((r) => rejections.push(r));
      for (let step = 10; step < 15; step++) ingest.send({ ...STATE, step });
      const end = Date.now() + 15_000;
      while ((ingested.length < 5 || rejections.length < 1) && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      assert.equal(ingested.length, 5);
      assert.ok(ingested.every((m) => m.binary === (format === "protobuf") && m.key === "k3y" && m.url === "/ingest?stream=lab1"));
      assert.deepEqual(rejections, [{ ok: false, error: "phases[0]: must be a finite number", field: "phases[0]", step: 13 }]);
      const closed = new Promise((resolve) => ingest.on("close", resolve));
      ingest.close();
      await closed;
      assert.throws(() => ingest.send(STATE), /not open/);
    });
  }
});
