/**
 * The connection rules of docs/clients.md, against the fake server on 127.0.0.1:
 * URL and options, keys, connection states and their events, permanent and transient
 * outcomes, bounded first connect, back-off, resume with epoch, producer refusals.
 *
 * Every wait is for an event (a status change, a rejection, a frame); no test
 * depends on how fast the machine is.
 */

import assert from "node:assert/strict";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { after, describe, test } from "node:test";
import {
  ConnectError,
  parseRetryAfter,
  Producer,
  Subscriber,
  subscriptionUrl,
  type StatusChange,
  type SubscriberEvent,
  type SubscriberOptions,
} from "@phasecast/client";
import { FakeServer, type FakeServerOptions } from "./support/fake-server.js";
import { makeState } from "./support/encoder.js";

const servers: FakeServer[] = [];
const subscribers: Subscriber[] = [];
after(async () => {
  for (const s of subscribers) s.close();
  await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
});

async function server(options: FakeServerOptions = {}): Promise<FakeServer> {
  const s = await FakeServer.start(options);
  servers.push(s);
  s.publish(makeState(1, [0.5, 1.5, 2.5], [1, -1, 1], -1, 1_764_000_000));
  return s;
}

/** Fast retries, so that tests of the rules do not wait for the default delays. */
const FAST = { reconnect: { initialMs: 10, maxMs: 40 } } as const;

function subscribe(options: SubscriberOptions): { sub: Subscriber; changes: StatusChange[]; events: SubscriberEvent[] } {
  const changes: StatusChange[] = [];
  const events: SubscriberEvent[] = [];
  const sub = new Subscriber({ ...options, onEvent: (e) => events.push(e) });
  subscribers.push(sub);
  sub.on("status", (c) => changes.push(c));
  return { sub, changes, events };
}

/** Resolves with the arguments of the next `event`. */
function next<K extends "connected" | "reconnecting" | "closed">(sub: Subscriber, event: K): Promise<StatusChange> {
  return new Promise((resolve) => {
    const stop = sub.on(event, (change) => {
      stop();
      resolve(change);
    });
  });
}

/** A port nothing listens on (taken, then released). */
async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

const transitions = (changes: StatusChange[]): string[] => changes.map((c) => `${c.previous}->${c.status}`);

describe("URL and options", () => {
  test("an empty path or / gets /ws; any other path is kept; http(s) becomes ws(s)", () => {
    assert.equal(subscriptionUrl("ws://127.0.0.1:8787").href, "ws://127.0.0.1:8787/ws");
    assert.equal(subscriptionUrl("ws://127.0.0.1:8787/").href, "ws://127.0.0.1:8787/ws");
    assert.equal(subscriptionUrl("http://127.0.0.1:8787/?stream=a").href, "ws://127.0.0.1:8787/ws?stream=a");
    assert.equal(subscriptionUrl("https://example.test/pcc/ws").href, "wss://example.test/pcc/ws");
    assert.equal(subscriptionUrl("ws://127.0.0.1:8787/nope").pathname, "/nope");
    assert.throws(() => subscriptionUrl("ftp://127.0.0.1/ws"), TypeError);
    assert.throws(() => subscriptionUrl("not a url"), TypeError);
  });

  test("URL parameters are kept, explicit options replace them, values are URL-encoded", () => {
    const url = subscriptionUrl("ws://h/ws?stream=a&format=json&custom=1&delta=false", {
      stream: "lab 1&x=y",
      format: "protobuf",
      delta: true,
      maxHz: 30,
      params: { extra: "é/?", custom: 2 },
    });
    const q = url.searchParams;
    assert.equal(q.get("stream"), "lab 1&x=y");
    assert.equal(q.get("format"), "protobuf");
    assert.equal(q.get("delta"), "true");
    assert.equal(q.get("max_hz"), "30");
    assert.equal(q.get("custom"), "2");
    assert.equal(q.get("extra"), "é/?");
    assert.match(url.search, /stream=lab\+1%26x%3Dy/);
    assert.doesNotMatch(url.search, /&x=y/);
    // Options left out leave the URL's parameters alone.
    assert.equal(subscriptionUrl("ws://h/ws?format=protobuf&delta=false").search, "?format=protobuf&delta=false");
  });

  test("resume and epoch are the client's own: in the URL they are refused, not dropped", () => {
    assert.throws(() => new Subscriber({ url: "ws://127.0.0.1:1/ws?resume=5" }), /resume and epoch/);
    assert.throws(() => new Subscriber({ url: "ws://127.0.0.1:1/ws?epoch=x" }), /resume and epoch/);
    assert.throws(() => subscriptionUrl("ws://h/ws", { params: { resume: 1 } }), TypeError);
  });

  test("the key goes in the X-API-Key header in Node; ?key= only when asked (browsers)", async () => {
    const srv = await server();
    const { sub } = subscribe({ url: `${srv.url}?key=from-url`, key: "k1", ...FAST });
    await sub.ready();
    assert.equal(srv.last.headers["x-api-key"], "k1");
    assert.equal(srv.last.query.get("key"), null, "the key option replaces the URL's key");
    assert.doesNotMatch(sub.connectUrl(), /key=/);
    sub.close();

    const query = subscribe({ url: srv.url, key: "k 2", keyIn: "query", ...FAST }).sub;
    await query.ready();
    assert.equal(srv.last.query.get("key"), "k 2");
    assert.equal(srv.last.headers["x-api-key"], undefined);
    query.close();

    // A key the user put in the URL is kept (no parameter is dropped).
    const inUrl = subscribe({ url: `${srv.url}?key=k3`, ...FAST }).sub;
    await inUrl.ready();
    assert.equal(srv.last.query.get("key"), "k3");
    inUrl.close();
  });
});

describe("connection states and events", () => {
  test("connecting -> connected -> reconnecting -> connected -> closed, each with its reason", async () => {
    const srv = await server();
    const { sub, changes, events } = subscribe({ url: srv.url, ...FAST });
    assert.equal(sub.status, "connecting");
    await sub.ready();
    assert.equal(sub.status, "connected");
    await srv.until(() => sub.seq === 1, 15_000, "seq 1");

    const reconnecting = next(sub, "reconnecting");
    srv.closeAll(1012, "service restart");
    const lost = await reconnecting;
    assert.ok(lost.error instanceof ConnectError);
    assert.equal(lost.error.code, 1012);
    assert.equal(lost.error.reason, "service restart");
    assert.equal(lost.error.permanent, false);
    await next(sub, "connected");
    assert.equal(srv.history.length, 2);
    assert.equal(srv.last.query.get("resume"), "1");

    sub.close();
    assert.equal(sub.status, "closed");
    assert.equal(await sub.closed(), undefined);
    assert.deepEqual(transitions(changes), [
      "connecting->connected",
      "connected->reconnecting",
      "reconnecting->connected",
      "connected->closed",
    ]);
    assert.equal(changes.at(-1)!.error, undefined, "close() is no error");
    assert.ok(changes.every((c) => c.url.startsWith(srv.url)));
    const types = events.map((e) => e.type);
    for (const t of ["status", "connected", "reconnecting", "closed", "open", "close", "reconnect", "update", "end"]) {
      assert.ok(types.includes(t as SubscriberEvent["type"]), `onEvent saw ${t}`);
    }
    assert.equal(sub.stats.connections, 2);
    assert.equal(sub.stats.reconnects, 1);
  });

  test("close() before the first connection: ready() rejects, closed() resolves", async () => {
    const sub = new Subscriber({ url: `ws://127.0.0.1:${await freePort()}/ws`, ...FAST });
    sub.close();
    await assert.rejects(sub.ready(), /closed before it connected/);
    assert.equal(await sub.closed(), undefined);
    assert.equal(sub.status, "closed");
  });

  test("an AbortSignal closes the subscriber", async () => {
    const srv = await server();
    const controller = new AbortController();
    const { sub } = subscribe({ url: srv.url, signal: controller.signal, ...FAST });
    await sub.ready();
    controller.abort();
    assert.equal(sub.status, "closed");
    await srv.until(() => srv.connections.size === 0, 15_000, "the server to see the close");
  });

  test("logger: connects at info, retries at warn, frames at debug", async () => {
    const srv = await server();
    const logged: Record<string, string[]> = { debug: [], info: [], warn: [], error: [] };
    const logger = {
      debug: (m: string) => logged["debug"]!.push(m),
      info: (m: string) => logged["info"]!.push(m),
      warn: (m: string) => logged["warn"]!.push(m),
      error: (m: string) => logged["error"]!.push(m),
    };
    const { sub } = subscribe({ url: srv.url, logger, ...FAST });
    await srv.until(() => sub.seq === 1, 15_000, "seq 1");
    const back = next(sub, "connected");
    srv.dropAll();
    await back;
    sub.close();
    assert.ok(logged["info"]!.some((m) => /connected to ws:/.test(m)));
    assert.ok(logged["warn"]!.some((m) => /retry #1/.test(m)));
    assert.ok(logged["debug"]!.some((m) => /full frame, seq 1/.test(m)));
  });
});

describe("permanent outcomes: raised at once", () => {
  const cases = [
    { status: 400, body: { ok: false, error: 'format: "xml" is not json or protobuf', field: "format" } },
    { status: 401, body: { ok: false, error: "missing or invalid API key (send it as X-API-Key)" } },
    { status: 403, body: { ok: false, error: 'origin "http://evil.test" is not allowed (ALLOWED_ORIGINS)' } },
    { status: 404, body: { ok: false, error: "unknown stream lab9", field: "stream" } },
  ];
  for (const refusal of cases) {
    test(`HTTP ${refusal.status}: status, the server's error and field, one try`, async () => {
      const srv = await server();
      srv.refuseAll = refusal;
      const { sub, changes } = subscribe({ url: srv.url, ...FAST });
      const error = await sub.ready().then(
        () => assert.fail("connected"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ConnectError, String(error));
      assert.equal(error.kind, "refused");
      assert.equal(error.permanent, true);
      assert.equal(error.status, refusal.status);
      assert.equal(error.error, refusal.body.error);
      assert.equal(error.field, refusal.body.field);
      assert.ok(error.message.includes(refusal.body.error), error.message);
      assert.equal(srv.upgrades.length, 1, "not retried");
      assert.equal(sub.status, "closed");
      assert.equal(sub.error, error);
      assert.equal(await sub.closed(), error);
      assert.deepEqual(transitions(changes), ["connecting->closed"]);
      assert.equal(changes[0]!.error, error);
      await assert.rejects(async () => {
        for await (const _ of sub) assert.fail("no state");
      }, error);
    });
  }

  test("a wrong path fails at once with 404 and the server's reason", async () => {
    const srv = await server();
    const url = srv.url.replace("/ws", "/nope");
    await assert.rejects(Subscriber.connect({ url, ...FAST }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 404);
      assert.equal(e.error, "no such endpoint; see GET / for the list");
      return true;
    });
    assert.equal(srv.upgrades.length, 1);
  });

  test("an answer that is not a WebSocket (200: a page) is permanent", async () => {
    const srv = await server();
    srv.refuseAll = { status: 200, body: "<!doctype html><title>dashboard</title>", headers: { "Content-Type": "text/html" } };
    await assert.rejects(Subscriber.connect({ url: srv.url, ...FAST }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 200);
      assert.equal(e.permanent, true);
      assert.equal(e.error, undefined);
      assert.match(e.message, /not a phasecast WebSocket endpoint/);
      return true;
    });
    assert.equal(srv.upgrades.length, 1);
  });

  for (const code of [1002, 1003, 1007, 1009, 1010]) {
    test(`close ${code} closes the subscriber with the code and reason`, async () => {
      const srv = await server();
      const { sub } = subscribe({ url: srv.url, ...FAST });
      await srv.until(() => sub.seq === 1, 15_000, "seq 1");
      const closed = next(sub, "closed");
      srv.closeAll(code, "you did something wrong");
      const change = await closed;
      assert.ok(change.error instanceof ConnectError);
      assert.equal(change.error.code, code);
      assert.equal(change.error.reason, "you did something wrong");
      assert.equal(change.error.permanent, true);
      assert.equal(srv.history.length, 1, "no reconnect");
      assert.equal(sub.stats.reconnects, 0);
    });
  }
});

describe("transient outcomes: retried with back-off", () => {
  for (const code of [1001, 1006, 1008, 1011, 1013]) {
    test(`close ${code} reconnects and resumes`, async () => {
      const srv = await server();
      const { sub } = subscribe({ url: srv.url, ...FAST });
      await srv.until(() => sub.seq === 1, 15_000, "seq 1");
      const reconnecting = next(sub, "reconnecting");
      if (code === 1006) srv.dropAll();
      else srv.closeAll(code, "bye");
      assert.equal((await reconnecting).error instanceof ConnectError, true);
      await next(sub, "connected");
      assert.equal(srv.last.query.get("resume"), "1");
      sub.close();
    });
  }

  test("429 is retried no sooner than Retry-After, which the error carries", async () => {
    const srv = await server();
    srv.refusals.push({ status: 429, body: { ok: false, error: "too many connections" }, headers: { "Retry-After": "1" } });
    const { sub } = subscribe({ url: srv.url, ...FAST });
    const retry = new Promise<[number, Error]>((resolve) => sub.on("reconnect", (_n, delay, error) => resolve([delay, error])));
    const [delay, error] = await retry;
    assert.ok(error instanceof ConnectError);
    assert.equal(error.status, 429);
    assert.equal(error.retryAfter, 1);
    assert.equal(error.error, "too many connections");
    assert.equal(error.permanent, false);
    assert.ok(delay >= 1000, `retry in ${delay} ms`);
    await sub.ready();
    assert.equal(srv.upgrades.length, 2);
    sub.close();
  });

  test("5xx: bounded first connect, then the last error with the number of tries", async () => {
    const srv = await server();
    srv.refuseAll = { status: 503, body: { ok: false, error: "subscriber limit reached" } };
    const { sub } = subscribe({ url: srv.url, firstConnectTries: 3, ...FAST });
    const retries: number[] = [];
    sub.on("reconnect", (attempt) => retries.push(attempt));
    await assert.rejects(sub.ready(), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 503);
      assert.equal(e.error, "subscriber limit reached");
      assert.equal(e.tries, 3);
      assert.match(e.message, /gave up after 3 tries/);
      return true;
    });
    assert.equal(srv.upgrades.length, 3);
    assert.deepEqual(retries, [1, 2]);
  });

  test("a wrong port: the first connect fails after the configured tries", async () => {
    const port = await freePort();
    const { sub } = subscribe({ url: `ws://127.0.0.1:${port}/ws`, firstConnectTries: 4, ...FAST });
    await assert.rejects(sub.ready(), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.kind, "network");
      assert.equal(e.tries, 4);
      assert.match(e.message, /ECONNREFUSED/);
      return true;
    });
    assert.equal(sub.stats.reconnects, 3);
  });

  test("a handshake that never completes times out (connectTimeoutMs), and counts as a try", async () => {
    const held: Socket[] = [];
    const silent = createNetServer((socket) => held.push(socket)); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      const { sub } = subscribe({ url: `ws://127.0.0.1:${port}/ws`, connectTimeoutMs: 150, firstConnectTries: 2, ...FAST });
      await assert.rejects(sub.ready(), (e: unknown) => {
        assert.ok(e instanceof ConnectError);
        assert.equal(e.kind, "timeout");
        assert.equal(e.tries, 2);
        assert.match(e.message, /no WebSocket handshake within 150 ms/);
        return true;
      });
      // (The accepts are handled on this process's event loop: wait for them.)
      const end = Date.now() + 15_000;
      while (held.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      assert.equal(held.length, 2, "two connection attempts");
    } finally {
      for (const s of held) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test("once connected, retries go on (maxReconnects bounds them); a frame restarts the back-off", async () => {
    const srv = await server();
    const { sub } = subscribe({ url: srv.url, reconnect: { initialMs: 15, maxMs: 1000, jitter: 0 }, maxReconnects: 3 });
    await srv.until(() => sub.seq === 1, 15_000, "seq 1");
    const delays: number[] = [];
    sub.on("reconnect", (_attempt, delay) => delays.push(delay));
    // A connection that delivers a frame restarts the count: the same first delay.
    for (let round = 0; round < 2; round++) {
      const back = next(sub, "connected");
      srv.dropAll();
      await back;
      await srv.until(() => sub.stats.framesReceived === round + 2, 15_000, "the first frame");
    }
    assert.deepEqual(delays, [15, 15]);
    // With the server gone, 3 retries in a row (15, 30, 60 ms), then closed.
    const closed = next(sub, "closed");
    await srv.stop();
    const change = await closed;
    assert.ok(change.error instanceof ConnectError);
    assert.equal(change.error.tries, 3);
    assert.deepEqual(delays.slice(2), [15, 30, 60]);
  });
});

describe("what each state reports: seq, kind, epoch", () => {
  for (const format of ["json", "protobuf"] as const) {
    test(`${format}: the epoch of full frames, kept by deltas, sent back on resume`, async () => {
      const srv = await server({ epoch: "e-1" });
      const infos: { seq: number; kind: string; epoch: string | undefined }[] = [];
      const { sub } = subscribe({ url: srv.url, format, ...FAST });
      sub.onUpdate((_s, { seq, kind, epoch }) => infos.push({ seq, kind, epoch }));
      await srv.until(() => sub.seq === 1, 15_000, "seq 1");
      srv.publish(makeState(2, [0.5, 1.6, 2.5], [1, -1, -1], -2));
      await srv.until(() => sub.seq === 2, 15_000, "seq 2");
      assert.deepEqual(infos, [
        { seq: 1, kind: "full", epoch: "e-1" },
        { seq: 2, kind: "delta", epoch: "e-1" },
      ]);
      assert.equal(sub.epoch, "e-1");
      const back = next(sub, "connected");
      srv.dropAll();
      await back;
      assert.equal(srv.last.query.get("resume"), "2");
      assert.equal(srv.last.query.get("epoch"), "e-1");
      // A restarted server: a new epoch, the resume gets a full frame that replaces the state.
      srv.epoch = "e-2";
      const again = next(sub, "connected");
      srv.dropAll();
      await again;
      await srv.until(() => sub.epoch === "e-2", 15_000, "the new epoch");
      assert.equal(infos.at(-1)!.kind, "full");
      assert.equal(infos.at(-1)!.seq, 2);
      sub.close();
    });
  }

  test("without an epoch from the server: resume=SEQ only", async () => {
    const srv = await server();
    const { sub } = subscribe({ url: srv.url, ...FAST });
    await srv.until(() => sub.seq === 1, 15_000, "seq 1");
    assert.equal(sub.epoch, undefined);
    const back = next(sub, "connected");
    srv.dropAll();
    await back;
    assert.equal(srv.last.query.get("resume"), "1");
    assert.equal(srv.last.query.has("epoch"), false);
    sub.close();
  });
});

describe("producer WebSocket refusals", () => {
  const cases = [
    { status: 401, body: { ok: false, error: "missing or invalid API key (send it as X-API-Key)" } },
    { status: 429, body: { ok: false, error: "rate limited" }, headers: { "Retry-After": "2" } },
    { status: 503, body: { ok: false, error: "producer limit of 64 reached (PCC_MAX_PRODUCERS)" } },
  ];
  for (const refusal of cases) {
    test(`HTTP ${refusal.status} at the upgrade: raised with the server's reason`, async () => {
      const srv = await server();
      srv.refuseAll = refusal;
      const producer = new Producer({ url: `http://127.0.0.1:${srv.port}`, key: "wrong" });
      await assert.rejects(producer.connect(), (e: unknown) => {
        assert.ok(e instanceof ConnectError);
        assert.equal(e.status, refusal.status);
        assert.equal(e.error, refusal.body.error);
        assert.equal(e.retryAfter, refusal.status === 429 ? 2 : undefined);
        return true;
      });
      assert.equal(srv.upgrades.at(-1)!.url.pathname, "/ingest");
      assert.equal(srv.upgrades.at(-1)!.headers["x-api-key"], "wrong");
    });
  }
});

test("parseRetryAfter: seconds or an HTTP date", () => {
  assert.equal(parseRetryAfter("3"), 3);
  assert.equal(parseRetryAfter(" 1.5 "), 1.5);
  assert.equal(parseRetryAfter(undefined), undefined);
  assert.equal(parseRetryAfter("soon"), undefined);
  const now = Date.parse("2030-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("Tue, 01 Jan 2030 00:00:10 GMT", now), 10);
});
