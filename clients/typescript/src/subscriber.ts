/**
 * `Subscriber`: follows one phasecast stream over `/ws` and always holds either a
 * verified state or none.
 *
 * ```ts
 * const sub = new Subscriber({ url: "ws://localhost:8080/ws", format: "protobuf" });
 * sub.onUpdate((state, { seq }) => draw(state));
 * // or: for await (const state of sub) draw(state);
 * ```
 *
 * What it does, per docs/protocol.md:
 *
 * - A full frame replaces the state held. A delta is applied to a copy of it when its
 *   `base_seq` is the seq held, and kept only when the checksum matches.
 * - On a delta for another base, a checksum mismatch or an undecodable frame it drops
 *   the state (`state` becomes `undefined`), sends a resync request once, and ignores
 *   deltas until the next full frame. No unverified state is ever exposed.
 * - When the connection drops it reconnects with exponential back-off and jitter,
 *   asking `?resume=SEQ` for the state it holds, so the first frame can be a delta.
 *
 * @module
 */

import { backoffDelay, type BackoffOptions } from "./backoff.js";
import {
  applyDelta,
  ApplyError,
  decodeFrame,
  encodeResync,
  messageFormat,
  messageSize,
  type MessageData,
} from "./codec.js";
import { Emitter } from "./events.js";
import type { Format, Frame, State } from "./model.js";
import {
  OPEN,
  resolveWebSocket,
  toWebSocketUrl,
  type WebSocketConstructor,
  type WebSocketEventLike,
  type WebSocketLike,
} from "./websocket.js";

/** Options of a {@link Subscriber}. Only `url` is required. */
export interface SubscriberOptions {
  /** The server's `/ws` endpoint, e.g. `ws://localhost:8080/ws` (`http(s)` is accepted). */
  readonly url: string | URL;
  /** Frame encoding (`?format=`). Default: the server's (`PCC_WIRE_FORMAT`). */
  readonly format?: Format;
  /** `false` asks for full frames only (`?delta=false`). Default `true`. */
  readonly delta?: boolean;
  /** At most this many frames a second (`?max_hz=`). */
  readonly maxHz?: number;
  /** The stream to follow (`?stream=`). Default: the server's `default`. */
  readonly stream?: string;
  /** Subscriber key (`?key=`; browsers cannot set WebSocket headers). */
  readonly key?: string;
  /** WebSocket implementation. Default: global `WebSocket`, else the `ws` package. */
  readonly WebSocket?: WebSocketConstructor;
  /** Reconnect delays, or `false` not to reconnect. */
  readonly reconnect?: BackoffOptions | false;
  /** Ask to resume from the state held on reconnect (`?resume=SEQ`). Default `true`. */
  readonly resume?: boolean;
  /** Load the `ws` package even where a global WebSocket exists (Node tools). */
  readonly preferWsPackage?: boolean;
}

/** What `onUpdate` listeners get besides the state. */
export interface UpdateInfo {
  /** Seq of the state. */
  readonly seq: number;
  /** The kind of frame that produced it. */
  readonly kind: Frame["kind"];
  /** `Date.now()/1000 - state.timestamp` on arrival, when the state has a timestamp. */
  readonly latency: number | undefined;
}

/** Why a state was dropped. */
export type ResyncReason =
  /** A frame that could not be decoded. */
  | "decode"
  /** A delta while no state is held (and no resync pending). */
  | "no_state"
  /** `resync()` was called. */
  | "manual"
  /** A delta for another base than the seq held. */
  | "base_seq"
  /** A delta naming an index the state does not have. */
  | "index"
  /** A dense list whose length is not the number of phases. */
  | "shape"
  /** A JSON spin value that is not +1 or -1. */
  | "spin"
  /** The checksum after applying did not match. */
  | "checksum";

/** Counters for a dashboard. A snapshot: read `subscriber.stats` again for new values. */
export interface SubscriberStats {
  /** Messages received (every frame, also those ignored). */
  readonly framesReceived: number;
  /** Their size: binary length, or text length (JSON frames are ASCII). */
  readonly bytesReceived: number;
  /** Full frames decoded. */
  readonly fullFrames: number;
  /** Delta frames decoded (applied or not). */
  readonly deltaFrames: number;
  /** Deltas ignored while waiting for a full frame. */
  readonly ignoredDeltas: number;
  /** Messages that could not be decoded. */
  readonly decodeErrors: number;
  /** Times the state was dropped and a resync requested. */
  readonly resyncs: number;
  /** Connections opened (the first one included). */
  readonly connections: number;
  /** Reconnects scheduled. */
  readonly reconnects: number;
  /** `Date.now()` when the last frame arrived. */
  readonly lastFrameAt: number | undefined;
  /**
   * Latency of the last state accepted, in seconds (`Date.now()/1000 - timestamp` on
   * arrival); `undefined` when that state has no timestamp.
   */
  readonly lastLatency: number | undefined;
}

/** Events of a {@link Subscriber}, with their listener arguments. */
export interface SubscriberEvents {
  /** A new verified state. */
  update: [state: State, info: UpdateInfo];
  /** The state was dropped and a full frame requested. */
  resync: [reason: ResyncReason, error: Error | undefined];
  /** A connection opened. */
  open: [];
  /** A connection closed (a reconnect follows unless closed by `close()`). */
  close: [code: number, reason: string];
  /** A reconnect is scheduled in `delayMs`. */
  reconnect: [attempt: number, delayMs: number];
  /** A transport error (the connection closes after it) or a fatal setup error. */
  error: [error: Error];
  /** `close()` was called, or a fatal error ended the subscriber. */
  end: [];
}

type MutableStats = { -readonly [K in keyof SubscriberStats]: SubscriberStats[K] };

/**
 * Follows a stream. Connects on construction; call {@link Subscriber.close} to stop.
 */
export class Subscriber implements AsyncIterable<State> {
  readonly #options: SubscriberOptions;
  readonly #baseUrl: URL;
  readonly #events = new Emitter<SubscriberEvents>();
  readonly #stats: MutableStats = {
    framesReceived: 0,
    bytesReceived: 0,
    fullFrames: 0,
    deltaFrames: 0,
    ignoredDeltas: 0,
    decodeErrors: 0,
    resyncs: 0,
    connections: 0,
    reconnects: 0,
    lastFrameAt: undefined,
    lastLatency: undefined,
  };

  #state: State | undefined;
  #seq: number | undefined;
  /** A resync was sent on this connection; deltas are ignored until a full frame. */
  #resyncPending = false;
  /** The encoding of the last frame, for the resync message. */
  #wireFormat: Format;

  #socket: WebSocketLike | undefined;
  #queue: { socket: WebSocketLike; data: MessageData }[] = [];
  #paused = false;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ended = false;
  #fatal: Error | undefined;

  constructor(options: SubscriberOptions) {
    this.#options = options;
    this.#baseUrl = toWebSocketUrl(new URL(options.url));
    this.#wireFormat = options.format ?? "json";
    void this.#connect();
  }

  /** The verified state held, or `undefined` (before the first frame, after a drop). */
  get state(): State | undefined {
    return this.#state;
  }

  /** Seq of the state held, or `undefined` when none is held. */
  get seq(): number | undefined {
    return this.#seq;
  }

  /** A snapshot of the counters. */
  get stats(): SubscriberStats {
    return { ...this.#stats };
  }

  /** Whether a connection is open now. */
  get connected(): boolean {
    return this.#socket?.readyState === OPEN;
  }

  /** Whether `close()` was called (or a fatal error ended the subscriber). */
  get ended(): boolean {
    return this.#ended;
  }

  /** The URL the next connection will open (with `resume` when a state is held). */
  connectUrl(): string {
    const url = new URL(this.#baseUrl.href);
    const q = url.searchParams;
    const o = this.#options;
    if (o.format !== undefined) q.set("format", o.format);
    if (o.delta === false) q.set("delta", "false");
    if (o.maxHz !== undefined) q.set("max_hz", String(o.maxHz));
    if (o.stream !== undefined) q.set("stream", o.stream);
    if (o.key !== undefined) q.set("key", o.key);
    q.delete("resume");
    if (o.resume !== false && this.#seq !== undefined) q.set("resume", String(this.#seq));
    return url.href;
  }

  /** Listens to an event; returns a function that stops listening. */
  on<K extends keyof SubscriberEvents>(
    event: K,
    listener: (...args: SubscriberEvents[K]) => void,
  ): () => void {
    return this.#events.on(event, listener);
  }

  /** Calls `listener` with every new verified state; returns a function that stops it. */
  onUpdate(listener: (state: State, info: UpdateInfo) => void): () => void {
    return this.#events.on("update", listener);
  }

  /**
   * Stops handling frames until {@link resume}: frames that arrive meanwhile wait in
   * order. With the `ws` package the socket itself stops being read, so the server
   * sees a slow reader and skips frames for it (it then sends one delta from the
   * state held to the newest). Browsers cannot pause a socket: frames just wait.
   */
  pause(): void {
    this.#paused = true;
    this.#socket?.pause?.();
  }

  /** Handles the frames that waited, then reads the socket again. */
  resume(): void {
    this.#paused = false;
    this.#drain();
    if (!this.#paused) this.#socket?.resume?.();
  }

  /** Drops the state held and asks the server for a full frame. */
  resync(): void {
    this.#drop("manual", undefined, true);
  }

  /** Closes the connection for good. Async iterators end. */
  close(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const socket = this.#socket;
    this.#socket = undefined;
    this.#queue = [];
    if (socket) {
      try {
        socket.resume?.();
        socket.close(1000, "client closed");
      } catch {
        // already closing
      }
    }
    this.#events.emit("end");
  }

  /**
   * Iterates over the states: the state held first (if any), then each new one. A
   * consumer slower than the stream gets the newest state each time, not a backlog.
   * Ends when the subscriber is closed; throws when it ended on a fatal error.
   */
  [Symbol.asyncIterator](): AsyncIterator<State> {
    let pending: State | undefined = this.#state;
    let waiter: ((result: IteratorResult<State>) => void) | undefined;
    let failer: ((error: Error) => void) | undefined;
    let done = false;
    const stopUpdate = this.on("update", (state) => {
      if (waiter) {
        const w = waiter;
        waiter = failer = undefined;
        w({ value: state, done: false });
      } else {
        pending = state;
      }
    });
    const finish = (): void => {
      done = true;
      stopUpdate();
      stopEnd();
      if (waiter) {
        const w = waiter;
        const f = failer;
        waiter = failer = undefined;
        if (this.#fatal && f) f(this.#fatal);
        else w({ value: undefined, done: true });
      }
    };
    const stopEnd = this.on("end", finish);
    if (this.#ended) finish();
    return {
      next: (): Promise<IteratorResult<State>> => {
        if (pending !== undefined) {
          const value = pending;
          pending = undefined;
          return Promise.resolve({ value, done: false });
        }
        if (done) {
          return this.#fatal ? Promise.reject(this.#fatal) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          waiter = resolve;
          failer = reject;
        });
      },
      return: (): Promise<IteratorResult<State>> => {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  // --- connection -------------------------------------------------------------

  async #connect(): Promise<void> {
    let Impl: WebSocketConstructor;
    try {
      Impl = await resolveWebSocket(this.#options.WebSocket, this.#options.preferWsPackage);
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    if (this.#ended) return;
    let socket: WebSocketLike;
    try {
      socket = new Impl(this.connectUrl());
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    this.#resyncPending = false;
    socket.addEventListener("open", () => {
      if (socket !== this.#socket) return;
      this.#stats.connections++;
      if (this.#paused) socket.pause?.();
      this.#events.emit("open");
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.#socket) return;
      const data = event.data as MessageData;
      if (this.#paused || this.#queue.length > 0) this.#queue.push({ socket, data });
      else this.#handle(data);
    });
    socket.addEventListener("error", (event) => {
      if (socket !== this.#socket) return;
      this.#events.emit("error", toError(event));
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.#socket) return;
      this.#socket = undefined;
      // Frames still waiting are from a connection that is gone: the reconnect
      // resumes from the state held, so they would only be stale.
      this.#queue = this.#queue.filter((m) => m.socket !== socket);
      this.#events.emit("close", event.code ?? 1006, event.reason ?? "");
      this.#scheduleReconnect();
    });
  }

  #scheduleReconnect(): void {
    const options = this.#options.reconnect;
    if (this.#ended || options === false) {
      if (!this.#ended && options === false) this.close();
      return;
    }
    const delay = backoffDelay(this.#attempt, options);
    this.#attempt++;
    this.#stats.reconnects++;
    this.#events.emit("reconnect", this.#attempt, delay);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#connect();
    }, delay);
  }

  #fail(error: Error): void {
    this.#fatal = error;
    this.#events.emit("error", error);
    this.close();
  }

  #drain(): void {
    while (!this.#paused && this.#queue.length > 0) {
      const { data } = this.#queue.shift()!;
      this.#handle(data);
    }
  }

  // --- frames -----------------------------------------------------------------

  #handle(data: MessageData): void {
    const stats = this.#stats;
    stats.framesReceived++;
    stats.bytesReceived += messageSize(data);
    stats.lastFrameAt = Date.now();
    this.#wireFormat = messageFormat(data);
    let frame: Frame;
    try {
      frame = decodeFrame(data);
    } catch (err) {
      stats.decodeErrors++;
      this.#drop("decode", err as Error);
      return;
    }
    if (frame.kind === "full") {
      stats.fullFrames++;
      this.#accept(frame.state, frame.seq, "full");
      return;
    }
    stats.deltaFrames++;
    const held = this.#state;
    if (held === undefined || this.#seq === undefined) {
      if (this.#resyncPending) stats.ignoredDeltas++;
      else this.#drop("no_state", undefined);
      return;
    }
    let next: State;
    try {
      next = applyDelta(held, this.#seq, frame);
    } catch (err) {
      const reason = err instanceof ApplyError ? err.reason : "decode";
      this.#drop(reason, err as Error);
      return;
    }
    this.#accept(next, frame.seq, "delta");
  }

  #accept(state: State, seq: number, kind: Frame["kind"]): void {
    this.#state = state;
    this.#seq = seq;
    this.#resyncPending = false;
    this.#attempt = 0;
    const latency = state.timestamp === undefined ? undefined : Date.now() / 1000 - state.timestamp;
    this.#stats.lastLatency = latency;
    this.#events.emit("update", state, { seq, kind, latency });
  }

  /**
   * Drops the state and asks for a full frame, once per wait: frames that fail while
   * a resync is pending are only counted.
   */
  #drop(reason: ResyncReason, error: Error | undefined, force = false): void {
    this.#state = undefined;
    this.#seq = undefined;
    if (this.#resyncPending && !force) {
      if (reason !== "decode") this.#stats.ignoredDeltas++;
      return;
    }
    this.#resyncPending = true;
    this.#stats.resyncs++;
    const socket = this.#socket;
    if (socket && socket.readyState === OPEN) {
      try {
        socket.send(encodeResync(this.#wireFormat));
      } catch {
        // The connection is going; the reconnect brings a full frame.
      }
    }
    this.#events.emit("resync", reason, error);
  }
}

function toError(event: WebSocketEventLike): Error {
  if (event.error instanceof Error) return event.error;
  return new Error(event.message ?? "WebSocket error");
}
