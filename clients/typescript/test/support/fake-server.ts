/**
 * A small stand-in for the phasecast server's `/ws` endpoint, on 127.0.0.1 and a
 * free port: it sequences published states, keeps their views (the states
 * subscribers hold, within ε), and sends each subscriber full and delta frames as
 * docs/protocol.md describes — first frame, resume (with epoch), resync, keyframes,
 * `delta=false`, skipping frames for slow readers, `fields` (projected states,
 * summaries, frames without a body), envelopes with `max_hz` and `summary`, and the
 * one precision class it has (`epsilon`). Faults can be injected into the next
 * frame; upgrades can be refused with any HTTP answer, like the real server's
 * 401/404/429, and bad `fields` / `epsilon` get its 400.
 */

import { createServer, STATUS_CODES, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { toState, type Field, type State, type StateInput, type Summary } from "@phasecast/client";
import {
  advance,
  diff,
  EnvelopeFold,
  hasBody,
  jsonDelta,
  jsonFull,
  pbDelta,
  pbFull,
  project,
  quantumExpFor,
  readFields,
  summarize,
  type Parts,
} from "./encoder.js";

/** A fault to put into the next frame a subscriber gets. */
export type Fault = "checksum" | "base_seq" | "truncate" | "garbage";

/** One subscriber connection, as the server sees it. */
export interface FakeConnection {
  readonly socket: WebSocket;
  readonly query: URLSearchParams;
  /** The upgrade request's headers. */
  readonly headers: IncomingHttpHeaders;
  readonly format: "json" | "protobuf";
  readonly delta: boolean;
  /** The fields it takes (`?fields=`, in the server's order). */
  readonly fields: readonly Field[];
  /** Envelopes of the states since its last frame (with `max_hz` and `summary`). */
  readonly fold: EnvelopeFold | undefined;
  /** Seq of the state the subscriber holds if it applied everything sent (0: none). */
  heldSeq: number;
  /** Send a full frame next. */
  needFull: boolean;
  /** Resync requests received, as their raw form. */
  readonly resyncs: (string | Uint8Array)[];
  /** Frames sent: their kind and seq (and the states their envelope covers). */
  readonly sent: { kind: "full" | "delta"; seq: number; baseSeq?: number; envelopeStates?: number }[];
  /** Faults to inject, first the next frame. */
  readonly faults: Fault[];
  /** Frames skipped because the socket was backed up. */
  skipped: number;
  /** Ignore resync requests (to see the client ignore deltas meanwhile). */
  deaf: boolean;
}

export interface FakeServerOptions {
  /** Tolerance ε (default 0: lossless). */
  epsilon?: number;
  /** A full frame every this many seqs (default 200). */
  keyframeInterval?: number;
  /** States kept for resume (default 1024). */
  history?: number;
  /** Skip a subscriber whose socket has more than this many bytes queued (default 256 KiB). */
  slowBytes?: number;
  /** Listen on this port (default: any free one). */
  port?: number;
  /** The stream's epoch, sent on full frames (default: none, like servers before it). */
  epoch?: string;
  /** Histogram bins of the summaries (default 16). */
  bins?: number;
  /**
   * Decides when a subscriber is too far behind and must skip (instead of its socket's
   * `bufferedAmount` passing `slowBytes`): a test that knows what the subscriber has
   * handled makes skipping depend on events, not on kernel buffers and timing.
   */
  isBehind?: (conn: FakeConnection) => boolean;
}

/** An HTTP answer to an upgrade, instead of 101. */
export interface Refusal {
  status: number;
  /** JSON body (an object is serialised), e.g. `{ ok: false, error: "…" }`. */
  body?: unknown;
  headers?: Record<string, string>;
}

/** One upgrade request, accepted or not. */
export interface UpgradeRequest {
  readonly url: URL;
  readonly headers: IncomingHttpHeaders;
  readonly refused: Refusal | undefined;
}

export class FakeServer {
  readonly http: Server;
  readonly wss: WebSocketServer;
  readonly connections = new Set<FakeConnection>();
  /** Every connection ever made (for asserting on query strings). */
  readonly history: FakeConnection[] = [];
  /** `views[seq]`: the state a subscriber holds at seq (index 0 unused). */
  readonly views: State[] = [];
  /** `summaries[seq]`: the summary of the producer's state at seq. */
  readonly summaries: Summary[] = [];
  readonly #bins: number;
  readonly #epsilon: number;
  readonly #keyframe: number;
  readonly #keep: number;
  readonly #slowBytes: number;
  readonly #isBehind: ((conn: FakeConnection) => boolean) | undefined;
  #seq = 0;
  /** The stream's epoch on full frames; change it to play a restarted server. */
  epoch: string | undefined;
  /** Answers for the next upgrades, first the next one. */
  readonly refusals: Refusal[] = [];
  /** Answer every upgrade with this (after `refusals`), while set. */
  refuseAll: Refusal | undefined;
  /** Every upgrade request. */
  readonly upgrades: UpgradeRequest[] = [];
  readonly #raw = new Set<Socket>();

  private constructor(options: FakeServerOptions) {
    this.#epsilon = options.epsilon ?? 0;
    this.#keyframe = options.keyframeInterval ?? 200;
    this.#keep = options.history ?? 1024;
    this.#slowBytes = options.slowBytes ?? 256 * 1024;
    this.#isBehind = options.isBehind;
    this.#bins = options.bins ?? 16;
    this.epoch = options.epoch;
    this.http = createServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><p>a page, not the WebSocket</p>");
    });
    this.http.on("connection", (socket: Socket) => {
      this.#raw.add(socket);
      socket.on("close", () => this.#raw.delete(socket));
    });
    this.wss = new WebSocketServer({ noServer: true });
    this.http.on("upgrade", (request, socket: Socket, head: Buffer) => {
      const url = new URL(request.url ?? "/", "http://x");
      const notFound: Refusal | undefined =
        url.pathname === "/ws" ? undefined : { status: 404, body: { ok: false, error: "no such endpoint; see GET / for the list" } };
      const refused = this.refusals.shift() ?? this.refuseAll ?? notFound ?? this.#badQuery(url.searchParams);
      this.upgrades.push({ url, headers: request.headers, refused });
      if (refused) {
        const body = refused.body === undefined ? "" : typeof refused.body === "string" ? refused.body : JSON.stringify(refused.body);
        const headers = { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(body)), Connection: "close", ...refused.headers };
        const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
        socket.end(`HTTP/1.1 ${refused.status} ${STATUS_CODES[refused.status] ?? "Status"}\r\n${lines}\r\n${body}`);
        return;
      }
      this.wss.handleUpgrade(request, socket, head, (ws) => this.#accept(ws, url.searchParams, request.headers));
    });
  }

  /** Starts a server on 127.0.0.1. */
  static async start(options: FakeServerOptions = {}): Promise<FakeServer> {
    const server = new FakeServer(options);
    await new Promise<void>((resolve, reject) => {
      server.http.once("error", reject);
      server.http.listen(options.port ?? 0, "127.0.0.1", () => resolve());
    });
    return server;
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port;
  }

  /** The `/ws` URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Seq of the newest state. */
  get seq(): number {
    return this.#seq;
  }

  /** Sequences a state and sends it to every subscriber; returns its seq. */
  publish(input: StateInput): number {
    const truth = toState(input);
    const prev = this.views[this.#seq];
    const sameShape = prev !== undefined && prev.phases.length === truth.phases.length && prev.spins.length === truth.spins.length;
    const view = sameShape ? advance(prev, truth, this.#epsilon) : truth;
    this.#seq++;
    this.views[this.#seq] = view;
    const summary = summarize(truth, this.#bins);
    this.summaries[this.#seq] = summary;
    const old = this.#seq - this.#keep;
    if (old > 0) {
      delete this.views[old];
      delete this.summaries[old];
    }
    for (const conn of this.connections) {
      conn.fold?.add(summary);
      this.#sendLatest(conn);
    }
    return this.#seq;
  }

  /** The state a subscriber taking `fields` holds at `seq`. */
  held(seq: number, fields: readonly Field[]): State {
    return project(this.views[seq]!, fields);
  }

  /** The real server's 400 for a `fields` or `epsilon` it does not take. */
  #badQuery(q: URLSearchParams): Refusal | undefined {
    if (readFields(q.get("fields")) === undefined) {
      return { status: 400, body: { ok: false, error: `fields: unknown field in ${JSON.stringify(q.get("fields"))}`, field: "fields" } };
    }
    const epsilon = q.get("epsilon");
    if (epsilon !== null && Number(epsilon) !== this.#epsilon) {
      const error = `epsilon: ${JSON.stringify(epsilon)} is not a precision class of this server: use one of ${this.#epsilon}`;
      return { status: 400, body: { ok: false, error, field: "epsilon" } };
    }
    return undefined;
  }

  /** The connection opened most recently. */
  get last(): FakeConnection {
    const conn = this.history[this.history.length - 1];
    if (!conn) throw new Error("no connection yet");
    return conn;
  }

  /** Closes every subscriber connection abruptly (no close handshake). */
  dropAll(): void {
    for (const conn of this.connections) conn.socket.terminate();
  }

  /** Closes every subscriber connection with a close frame. */
  closeAll(code: number, reason = ""): void {
    for (const conn of this.connections) conn.socket.close(code, reason);
  }

  /** Waits until `predicate` holds (polling), or fails after `ms`. */
  async until(predicate: () => boolean, ms = 15_000, what = "condition"): Promise<void> {
    const end = Date.now() + ms;
    while (!predicate()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Stops the server and closes every connection. */
  async stop(): Promise<void> {
    for (const conn of this.connections) conn.socket.terminate();
    for (const socket of this.#raw) socket.destroy();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  #accept(socket: WebSocket, query: URLSearchParams, headers: IncomingHttpHeaders): void {
    const format = query.get("format") === "protobuf" || query.get("format") === "proto" ? "protobuf" : "json";
    const fields = readFields(query.get("fields")) ?? [];
    const conn: FakeConnection = {
      socket,
      query,
      headers,
      format,
      delta: query.get("delta") !== "false",
      fields,
      fold: query.has("max_hz") && fields.includes("summary") ? new EnvelopeFold() : undefined,
      heldSeq: 0,
      needFull: true,
      resyncs: [],
      sent: [],
      faults: [],
      skipped: 0,
      deaf: false,
    };
    const resume = Number(query.get("resume") ?? NaN);
    // A resume from another epoch (a restarted server) gets a full frame.
    const sameEpoch = !query.has("epoch") || query.get("epoch") === this.epoch;
    if (conn.delta && sameEpoch && Number.isSafeInteger(resume) && this.views[resume] !== undefined) {
      conn.heldSeq = resume;
      conn.needFull = false;
    }
    this.connections.add(conn);
    this.history.push(conn);
    socket.on("close", () => this.connections.delete(conn));
    socket.on("message", (data: RawData, isBinary: boolean) => {
      const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
      const isResync = isBinary ? bytes.equals(Buffer.from([0x0a, 0x00])) : bytes.toString() === '{"op":"resync"}';
      if (!isResync) return;
      conn.resyncs.push(isBinary ? new Uint8Array(bytes) : bytes.toString());
      if (conn.deaf) return;
      conn.needFull = true;
      this.#sendLatest(conn);
    });
    if (this.#seq > 0) {
      conn.fold?.add(this.summaries[this.#seq]!);
      this.#sendLatest(conn);
    }
  }

  /** Brings one subscriber to the newest state: a full frame or a delta from what it holds. */
  #sendLatest(conn: FakeConnection): void {
    const seq = this.#seq;
    const target = this.views[seq]!;
    if (conn.socket.readyState !== conn.socket.OPEN) return;
    // A subscriber that resumed from the newest state gets it again, as a full frame.
    if (conn.heldSeq === seq) conn.needFull = true;
    const behind = this.#isBehind ? this.#isBehind(conn) : conn.socket.bufferedAmount > this.#slowBytes;
    if (!conn.needFull && behind) {
      conn.skipped++;
      return;
    }
    const fields = conn.fields;
    const parts: Parts = {
      fields,
      summary: fields.includes("summary") ? this.summaries[seq] : undefined,
      envelope: conn.fold?.take(),
    };
    const envelopeStates = parts.envelope?.states;
    const projected = (state: State | undefined): State | undefined => (state === undefined ? undefined : project(state, fields));
    if (!hasBody(fields)) {
      // No body: every frame stands alone.
      const fault = conn.faults.shift();
      let frame = conn.format === "json" ? jsonFull(seq, this.held(seq, fields), this.epoch, parts) : pbFull(seq, target, this.epoch, parts);
      if (fault === "truncate") frame = frame.slice(0, frame.length >> 1);
      conn.socket.send(frame, { binary: typeof frame !== "string" });
      conn.sent.push({ kind: "full", seq, ...(envelopeStates === undefined ? {} : { envelopeStates }) });
      conn.heldSeq = seq;
      conn.needFull = false;
      return;
    }
    const base = projected(this.views[conn.heldSeq]);
    const projectedTarget = projected(target)!;
    const full =
      conn.needFull ||
      !conn.delta ||
      base === undefined ||
      seq % this.#keyframe === 0 ||
      base.phases.length !== target.phases.length ||
      base.spins.length !== target.spins.length;
    const fault = conn.faults.shift();
    let frame: string | Uint8Array;
    const extra = envelopeStates === undefined ? {} : { envelopeStates };
    if (full) {
      frame = conn.format === "json" ? jsonFull(seq, projectedTarget, this.epoch, parts) : pbFull(seq, target, this.epoch, parts);
      conn.sent.push({ kind: "full", seq, ...extra });
    } else {
      const d = diff(base, conn.heldSeq, projectedTarget, seq, quantumExpFor(this.#epsilon));
      if (fault === "checksum") d.checksum ^= 1n;
      if (fault === "base_seq") d.baseSeq -= 1;
      let sentTarget = projectedTarget;
      if (fault === "garbage") {
        // A wrong value for phase 0, with the checksum of the true state.
        const phases = projectedTarget.phases.slice();
        phases[0] = phases[0]! + 1;
        sentTarget = { ...projectedTarget, phases };
        d.phases = [[0, { kind: "set", value: phases[0] }], ...d.phases.filter(([i]) => i !== 0)];
      }
      frame = conn.format === "json" ? jsonDelta(d, sentTarget, parts) : pbDelta(d, sentTarget, undefined, parts);
      conn.sent.push({ kind: "delta", seq, baseSeq: d.baseSeq, ...extra });
    }
    if (fault === "truncate") frame = typeof frame === "string" ? frame.slice(0, frame.length >> 1) : frame.slice(0, frame.length >> 1);
    conn.socket.send(frame, { binary: typeof frame !== "string" });
    conn.heldSeq = seq;
    conn.needFull = false;
  }
}
